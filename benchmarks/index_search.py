"""Index and search: the store at scale, the model on real text, search during ingestion.

One run prints three parts, then a block of ratios. Timings are noisy on a shared machine,
so every headline figure is a ratio against a baseline measured in the same run; latencies
are reported as p50/p95 (ratios of medians where not said otherwise).

1. Store (synthetic, ``--chunks`` points, 100k by default). Clustered 384-d unit vectors
   (topics -> sub-topics -> points around a shared mean, variance decaying along the
   dimensions as in a Matryoshka model; nearest neighbours at cosine ~0.6, random pairs
   ~0.2), their re-normalised 128-d prefix as ``short``, BM25 vectors of Zipfian pseudo-text
   with topic words, and the payload `index_paths` writes (path, page, chunk, text, mime,
   hash, extension, size, time). The same points and queries go to `EdgeStore` (Qdrant Edge,
   the embedded default) and to qdrant-client's local mode (`ServerStore(QdrantClient(
   path=...))`, the previous embedded store, brute force). Each store is built in a fresh
   subprocess and reopened in another, so peak RSS (getrusage maxrss) does not mix.
   Measured: upsert and index build (`optimize`) time; query p50/p95 of the dense pipeline
   (short HNSW prefetch -> full rescoring), a BM25 query and a filtered dense pipeline on
   both stores, plus a short-vector HNSW query and an exact full-vector query on Edge;
   recall@10 against exact search in numpy; open time (open + first query); then
   ``--grow`` more points on Edge, optimized while another thread queries.
   Local mode takes seconds per query at 100k, so it times the first ``--local-queries`` of
   the same queries; its data goes to tmpfs (``--local-dir``), as it commits each point to
   SQLite, which takes minutes on a disk.
2. Model (real text: Python's reference topics, then the READMEs of installed packages,
   about ``--model-chunks`` chunks): `index_paths` chunks/s with the bundled default model,
   query encoding p50/p95, `search()` p50/p95 in dense and hybrid mode.
3. Search during ingestion: the real server in process (default model, embedded store), one
   client timing /v1/search (hybrid) while idle, then while another client streams
   /v1/index requests of ``--ingest-batch`` documents back to back; the server-side time of
   each search is split into query encoding, waiting for the store and store calls.

torch runs one intra-op thread by default (``--torch-threads``): on a busy shared machine
two threads on two cores stall each other many times over (a query encoding measured at
~600 ms instead of ~70 ms); 0 keeps torch's default.

Run (from the repository root; tests/ for `support`), about 15 minutes at the defaults:

    PYTHONPATH=src:tests HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/index_search.py \
        [--parts store,model,server] [--chunks 100000] [--queries 200] [--skip-local] \
        [--local-chunks N] [--local-queries 10] [--grow 10000] [--model-chunks 400] \
        [--model-queries 100] [--server-queries 40] [--ingest-batch 32] [--torch-threads 1]
        [--bulk-threads 0]

A quick run: ``--chunks 20000 --queries 50 --local-queries 3 --model-chunks 100
--model-queries 20 --server-queries 20 --seed-docs 64``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import hashlib
import importlib
import importlib.metadata
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

COLLECTION = "bench"
TOP_K = 10
WARMUP = 10
SEED = 2024
RESULT = "RESULT "  # prefix of a worker's JSON line on stdout

# -- synthetic collection ---------------------------------------------------------------------

DIM, SHORT_DIM = 384, 128
TOPICS, SUBTOPICS = 100, 50  # sub-topics per topic
SPREAD = (0.8, 0.6, 1.2)  # weights of the shared mean, sub-topic offset and point noise
VOCABULARY = 20_000
TOPIC_WORDS = 150
WORDS_PER_CHUNK = (35, 80)
TOPIC_SHARE = 0.3  # share of a chunk's words drawn from its topic's words
CHUNKS_PER_FILE = (1, 40)
EXTENSIONS = {".md": 0.35, ".txt": 0.25, ".pdf": 0.2, ".html": 0.12, ".docx": 0.08}
MIMES = {".md": "text/markdown", ".txt": "text/plain", ".pdf": "application/pdf",
         ".html": "text/html",
         ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}
EPOCH = 1_600_000_000.0  # file times spread over the ~5 years after this
RECENT = EPOCH + 3.0 * 365 * 86400  # the filtered query: .pdf files modified since then
UPSERT_BATCH = 256
FUNCTION_WORDS = tuple(re.findall(r"\w+", """
    the of and to a in is that for it as with was on be by this are or from at an which have
    not but has can its were their also more one all these other been may such into than when
    only some most"""))
SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]


def synthetic_spec():
    from polyseek.retrieval.store import CollectionSpec

    return CollectionSpec(model="synthetic-384", source="synthetic", family="synthetic",
                          dim=DIM, short_dim=SHORT_DIM, multivector_dim=None)


class Mixture:
    """Clustered unit vectors: a shared mean (embeddings are anisotropic), topics, sub-topics
    around them and points around those; per-dimension scale ~ 1/sqrt(1 + i/32), so the
    leading dims carry most of the variance, as in a Matryoshka-trained model."""

    def __init__(self, seed: int = SEED):
        rng = np.random.default_rng(seed)
        self.scale = (1.0 / np.sqrt(1.0 + np.arange(DIM) / 32.0)).astype(np.float32)
        w_mean, w_sub, self.noise = SPREAD
        self.mean = w_mean * self._normal(rng, 1)[0]
        topics = self._normal(rng, TOPICS)
        self.centres = topics.repeat(SUBTOPICS, 0) + w_sub * self._normal(rng, TOPICS * SUBTOPICS)

    def _normal(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.standard_normal((n, DIM), dtype=np.float32) * self.scale

    def sample(self, subtopics: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = self.mean + self.centres[subtopics] + self.noise * self._normal(rng, len(subtopics))
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def prefix(full: np.ndarray) -> np.ndarray:
    """The re-normalised SHORT_DIM prefix, as `named_vectors` makes the short vector."""
    head = full[:, :SHORT_DIM]
    return head / np.linalg.norm(head, axis=1, keepdims=True)


class Vocabulary:
    """Pseudo-words with Zipfian frequencies (function words first), and each topic's words."""

    def __init__(self, seed: int = SEED):
        rng = np.random.default_rng(seed)
        words, seen = list(FUNCTION_WORDS), set(FUNCTION_WORDS)
        while len(words) < VOCABULARY:
            word = "".join(rng.choice(SYLLABLES, size=rng.integers(2, 5)))
            if word not in seen:
                seen.add(word)
                words.append(word)
        self.words = np.array(words)
        weights = 1.0 / (np.arange(VOCABULARY) + 2.7) ** 1.07
        self.cdf = np.cumsum(weights / weights.sum())
        content = np.arange(len(FUNCTION_WORDS) + 500, VOCABULARY)
        self.topic_words = np.stack([rng.choice(content, TOPIC_WORDS, replace=False)
                                     for _ in range(TOPICS)])

    def texts(self, topics: np.ndarray, lengths: np.ndarray,
              rng: np.random.Generator) -> list[str]:
        """One text per (topic, length): Zipfian background words mixed with topic words."""
        total = int(lengths.sum())
        background = np.minimum(np.searchsorted(self.cdf, rng.random(total)), VOCABULARY - 1)
        own = self.topic_words[np.repeat(topics, lengths), rng.integers(0, TOPIC_WORDS, total)]
        words = self.words[np.where(rng.random(total) < TOPIC_SHARE, own, background)].tolist()
        ends = np.cumsum(lengths).tolist()
        return [" ".join(words[a:b]) for a, b in zip([0, *ends[:-1]], ends, strict=True)]


@dataclass
class Corpus:
    """Points as index_paths would write them for a set of files, with vectors as arrays."""

    ids: list[str]
    full: np.ndarray
    short: np.ndarray
    texts: list[str]
    payloads: list[dict]
    recent_pdf: np.ndarray  # which points the filtered query's condition selects

    def __len__(self) -> int:
        return len(self.ids)

    def points(self, start: int, stop: int) -> list:
        """Points `start:stop` with their named vectors (BM25 weights computed here)."""
        from polyseek.retrieval.bm25 import document_vector
        from polyseek.retrieval.store import FULL, SHORT, SPARSE, Point

        points = []
        for i in range(start, min(stop, len(self))):
            vectors = {FULL: self.full[i].tolist(), SHORT: self.short[i].tolist()}
            if sparse := document_vector(self.texts[i], "english"):
                vectors[SPARSE] = sparse
            points.append(Point(self.ids[i], vectors, self.payloads[i]))
        return points


def file_sizes(n: int, rng: np.random.Generator) -> list[int]:
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(min(int(rng.integers(*CHUNKS_PER_FILE, endpoint=True)), n - sum(sizes)))
    return sizes


def make_corpus(n: int, mixture: Mixture, vocabulary: Vocabulary, seed: int = SEED,
                root: str = "/srv/docs") -> Corpus:
    """`n` chunks in files of 1 to 40 chunks under `root`; a file keeps to one topic."""
    rng = np.random.default_rng(seed + 1)
    sizes = file_sizes(n, rng)
    file_topics = rng.integers(0, TOPICS, size=len(sizes))
    topics = np.repeat(file_topics, sizes)
    texts = vocabulary.texts(topics, rng.integers(*WORDS_PER_CHUNK, size=n), rng)
    ids, payloads, recent = [], [], []
    for number, (size, topic) in enumerate(zip(sizes, file_topics, strict=True)):
        ext = str(rng.choice(list(EXTENSIONS), p=list(EXTENSIONS.values())))
        path = f"{root}/topic{topic:03d}/file{number:05d}{ext}"
        modified = EPOCH + float(rng.random()) * 5 * 365 * 86400
        fields = {"mime": MIMES[ext], "file_hash": hashlib.sha256(path.encode()).hexdigest(),
                  "n_chunks": size, "thumbnail": None, "extension": ext,
                  "size": int(rng.integers(2_000, 2_000_000)), "modified": modified}
        for chunk in range(size):
            ids.append(str(uuid.uuid5(uuid.NAMESPACE_URL, f"{path}#{chunk}")))
            payloads.append({"path": path, "page": chunk // 3 + 1 if ext == ".pdf" else None,
                             "chunk": chunk, "text": texts[len(payloads)], **fields})
            recent.append(ext == ".pdf" and modified >= RECENT)
    full = mixture.sample(topics * SUBTOPICS + rng.integers(0, SUBTOPICS, size=n), rng)
    return Corpus(ids, full, prefix(full), texts, payloads, np.asarray(recent))


def query_text(vocabulary: Vocabulary, topic: int, rng: np.random.Generator) -> str:
    """2 to 6 words, one at least from the topic (so that BM25 has a term to match)."""
    (words,) = vocabulary.texts(np.array([topic]), np.array([rng.integers(1, 6)]), rng)
    return f"{rng.choice(vocabulary.words[vocabulary.topic_words[topic]])} {words}"


@dataclass
class Queries:
    """Query vectors from the same mixture (new points), BM25 terms, and one filter."""

    full: np.ndarray
    short: np.ndarray
    terms: list
    where: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.full)


def make_queries(n: int, mixture: Mixture, vocabulary: Vocabulary | None,
                 seed: int = SEED) -> Queries:
    from polyseek.retrieval.bm25 import query_vector
    from polyseek.retrieval.filters import Condition, Range

    rng = np.random.default_rng(seed + 2)
    topics = rng.integers(0, TOPICS, size=n)
    full = mixture.sample(topics * SUBTOPICS + rng.integers(0, SUBTOPICS, size=n), rng)
    terms = [] if vocabulary is None else [
        query_vector(query_text(vocabulary, int(t), rng), "english") for t in topics]
    where = [Condition("extension", match=".pdf"), Condition("modified", range=Range(gte=RECENT))]
    return Queries(full, prefix(full), terms, where)


# -- store part: workers, each in a fresh subprocess ------------------------------------------


def quiet_local_mode() -> None:
    """qdrant-client warns that local mode is not meant for over 20k points and ignores
    search params (it is brute force): both known, and said in the report."""
    warnings.filterwarnings("ignore", message="Local mode", category=UserWarning)


def open_bench_store(kind: str, directory: Path):
    """EdgeStore, or qdrant-client's local mode (path=...) behind ServerStore."""
    if kind == "edge":
        from polyseek.retrieval.edge_store import EdgeStore

        return EdgeStore(directory)
    from qdrant_client import QdrantClient

    from polyseek.retrieval.server_store import ServerStore

    return ServerStore(QdrantClient(path=str(directory / "local")), directory)


def query_kinds(queries: Queries) -> dict[str, Callable[[int], tuple]]:
    """Each measured query, as (Nearest, filter) for query number i."""
    from polyseek.retrieval.search import dense_stages
    from polyseek.retrieval.store import FULL, SHORT, SPARSE, Nearest

    def dense(i: int) -> Nearest:
        return dense_stages({SHORT: queries.short[i].tolist(), FULL: queries.full[i].tolist()},
                            TOP_K)[-1]

    return {
        "dense": lambda i: (dense(i), None),
        "hnsw": lambda i: (Nearest(SHORT, queries.short[i].tolist(), TOP_K), None),
        "exact": lambda i: (Nearest(FULL, queries.full[i].tolist(), TOP_K, exact=True), None),
        "sparse": lambda i: (Nearest(SPARSE, queries.terms[i], TOP_K), None),
        "filtered": lambda i: (dense(i), queries.where),
    }


def time_queries(store, queries: Queries, kinds: list[str], warmup: int,
                 timed: int) -> tuple[dict, dict]:
    """Per kind: latencies (ms) and result ids of queries WARMUP to WARMUP + timed, after
    `warmup` untimed ones; kinds interleave per query, in turns, so that load drifts and
    position hit them alike."""
    makers = query_kinds(queries)
    latency: dict[str, list[float]] = {k: [] for k in kinds}
    found: dict[str, list[list[str]]] = {k: [] for k in kinds}
    for i in range(WARMUP - warmup, WARMUP + timed):
        for kind in rotated(kinds, i):
            nearest, where = makers[kind](i)
            start = time.perf_counter()
            points = store.query(COLLECTION, nearest, where)
            seconds = time.perf_counter() - start
            if i >= WARMUP:
                latency[kind].append(seconds * 1000)
                found[kind].append([p.id for p in points])
    return latency, found


def rotated(items: list, i: int) -> list:
    """`items` starting at number i (mod their count): each goes first in turn."""
    k = i % len(items)
    return items[k:] + items[:k]


def top(scores: np.ndarray, k: int) -> np.ndarray:
    best = np.argpartition(-scores, k)[:k]
    return best[np.argsort(-scores[best])]


def exact_answers(corpus: Corpus, queries: Queries, timed: int) -> dict[str, list[set[str]]]:
    """Numpy top-10 per query: short vector; full vector; the pipeline with an exact
    prefetch; the full vector among the points the filter selects."""
    from polyseek.retrieval.search import MIN_CANDIDATES, PREFETCH_FACTOR

    depth = max(TOP_K * PREFETCH_FACTOR, MIN_CANDIDATES * 5)
    allowed = np.flatnonzero(corpus.recent_pdf)
    answers: dict[str, list[set[str]]] = {"short": [], "full": [], "pipeline": [],
                                          "filtered": []}
    for i in range(WARMUP, WARMUP + timed):
        full = corpus.full @ queries.full[i]
        short = corpus.short @ queries.short[i]
        candidates = top(short, depth)
        allowed_candidates = allowed[top(short[allowed], depth)]
        picks = {"short": top(short, TOP_K), "full": top(full, TOP_K),
                 "pipeline": candidates[top(full[candidates], TOP_K)],
                 "filtered": allowed_candidates[top(full[allowed_candidates], TOP_K)]}
        for name, rows in picks.items():
            answers[name].append({corpus.ids[r] for r in rows})
    return answers


def recall(found: list[list[str]], truth: list[set[str]]) -> float:
    hits = sum(len(set(f) & t) for f, t in zip(found, truth, strict=True))
    return hits / sum(len(t) for t in truth)


def recalls(found: dict, answers: dict) -> dict[str, float]:
    pairs = {"hnsw_vs_exact_short": ("hnsw", "short"),
             "dense_vs_exact_pipeline": ("dense", "pipeline"),
             "dense_vs_exact_full": ("dense", "full"),
             "filtered_vs_exact_filtered": ("filtered", "filtered")}
    return {name: recall(found[kind], answers[truth])
            for name, (kind, truth) in pairs.items() if kind in found}


def filesystem(path: Path) -> str:
    """`path`'s mount point and file system type, from /proc/mounts."""
    mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    found = [(m, kind) for m, kind in mounts if path.resolve().is_relative_to(m)]
    point, kind = max(found, key=lambda f: len(f[0]), default=("?", "?"))
    return f"{point} ({kind})"


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load(store, corpus: Corpus) -> tuple[float, float]:
    """Upsert `corpus` in batches; (seconds in upsert, seconds making the points: their
    vector lists and BM25 weights, not the store's time)."""
    upsert_s = points_s = 0.0
    for begin in range(0, len(corpus), UPSERT_BATCH):
        start = time.perf_counter()
        points = corpus.points(begin, begin + UPSERT_BATCH)
        made = time.perf_counter()
        store.upsert(COLLECTION, points)
        points_s += made - start
        upsert_s += time.perf_counter() - made
    return upsert_s, points_s


def worker_build(kind: str, directory: Path, n: int, n_queries: int, timed: int) -> dict:
    """Create the collection, upsert `n` points, optimize, query, score recall. `timed`: how
    many of the `n_queries` to time (local mode: a few, brute force takes seconds)."""
    quiet_local_mode()
    mixture, vocabulary = Mixture(), Vocabulary()
    start = time.perf_counter()
    corpus = make_corpus(n, mixture, vocabulary)
    queries = make_queries(n_queries + WARMUP, mixture, vocabulary)
    generate_s = time.perf_counter() - start
    store = open_bench_store(kind, directory)
    store.create(COLLECTION, synthetic_spec())
    upsert_s, points_s = load(store, corpus)
    start = time.perf_counter()
    store.optimize(COLLECTION)
    optimize_s = time.perf_counter() - start
    assert store.count(COLLECTION) == n
    kinds, warmup = (list(QUERY_LABELS), WARMUP) if kind == "edge" else (LOCAL_KINDS, 2)
    latency, found = time_queries(store, queries, kinds, warmup, timed)
    store.close()
    return {"n": n, "generate_s": generate_s, "points_s": points_s, "upsert_s": upsert_s,
            "optimize_s": optimize_s, "latency": latency,
            "recall": recalls(found, exact_answers(corpus, queries, timed)),
            "filter_share": float(corpus.recent_pdf.mean()), "rss_mib": max_rss_mib(),
            "where": filesystem(directory)}


def worker_open(kind: str, directory: Path, n_queries: int, timed: int) -> dict:
    """Reopen a built store: open time, first query, then dense pipeline queries."""
    quiet_local_mode()
    queries = make_queries(n_queries + WARMUP, Mixture(), None)
    idle_rss = max_rss_mib()
    first, _ = query_kinds(queries)["dense"](0)
    start = time.perf_counter()
    store = open_bench_store(kind, directory)
    opened = time.perf_counter()
    store.query(COLLECTION, first)
    first_s = time.perf_counter() - opened
    latency, _ = time_queries(store, queries, ["dense"], 0, timed)
    store.close()
    return {"open_s": opened - start, "first_query_s": first_s, "latency": latency,
            "rss_mib": max_rss_mib(), "idle_rss_mib": idle_rss}


def worker_grow(directory: Path, extra: int) -> dict:
    """On the built Edge store: upsert `extra` new points, then optimize on this thread while
    another one runs dense queries back to back (as a server would serve searches)."""
    mixture, vocabulary = Mixture(), Vocabulary()
    corpus = make_corpus(extra, mixture, vocabulary, seed=SEED + 7, root="/srv/new")
    queries = make_queries(WARMUP, mixture, None)
    dense = query_kinds(queries)["dense"]
    store = open_bench_store("edge", directory)
    store.query(COLLECTION, dense(0)[0])
    segments = [store._shard(COLLECTION).info().segments_count]
    upsert_s, _ = load(store, corpus)
    latency: list[float] = []
    ticks: list[float] = []
    done = threading.Event()

    def search() -> None:
        i = 0
        while not done.is_set():
            start = time.perf_counter()
            store.query(COLLECTION, dense(i % len(queries))[0])
            latency.append((time.perf_counter() - start) * 1000)
            i += 1

    def tick() -> None:  # pure Python: stalls only if the GIL is held
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    threads = [threading.Thread(target=search), threading.Thread(target=tick)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    start = time.perf_counter()
    store.optimize(COLLECTION)
    optimize_s = time.perf_counter() - start
    time.sleep(0.2)
    done.set()
    for thread in threads:
        thread.join()
    total = store.count(COLLECTION)
    segments.append(store._shard(COLLECTION).info().segments_count)
    store.close()
    return {"extra": extra, "total": total, "segments": segments, "upsert_s": upsert_s,
            "optimize_s": optimize_s,
            "queries": len(latency), "max_ms": max(latency), "p50_ms": pct(latency)[0],
            "python_pause_ms": float(np.diff(ticks).max() * 1000)}


def run_worker(*args: str) -> dict:
    """This script as a subprocess worker; its RESULT line, parsed."""
    done = subprocess.run([sys.executable, __file__, "--worker", *args], check=True,
                          stdout=subprocess.PIPE, text=True)
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith(RESULT))
    return json.loads(line[len(RESULT):])


def store_part(args: argparse.Namespace, tmp: Path) -> dict[str, dict]:
    """Build and reopen each store in its own subprocesses."""
    results: dict[str, dict] = {}
    plans = {"edge": (args.chunks, args.queries, tmp)}
    if not args.skip_local:
        local_tmp = Path(tempfile.mkdtemp(prefix="polyseek-bench-", dir=args.local_dir))
        plans["local"] = (args.local_chunks or args.chunks, min(args.local_queries, args.queries),
                          local_tmp)
    for kind, (n, timed, parent) in plans.items():
        directory = parent / f"store-{kind}"
        common = ["--store", kind, "--dir", str(directory), "--queries", str(args.queries)]
        log(f"store: building {kind} with {n} points in {directory}")
        built = run_worker("build", *common, "--chunks", str(n), "--timed", str(timed))
        log(f"store: reopening {kind}")
        reopened = run_worker("open", *common, "--timed",
                              str(timed if kind == "edge" else min(timed, LOCAL_REOPEN_QUERIES)))
        results[kind] = {"build": built, "open": reopened}
        if kind == "edge" and args.grow:
            log(f"store: adding {args.grow} points to edge, optimizing while searching")
            results[kind]["grow"] = run_worker("grow", "--store", kind, "--dir", str(directory),
                                               "--chunks", str(args.grow))
        if parent != tmp:
            shutil.rmtree(parent)
    return results


# -- model part: real text, the bundled default model ----------------------------------------


def real_texts() -> Iterator[tuple[str, str]]:
    """(file name, text): Python's language reference topics, then the READMEs (package
    metadata descriptions) of the installed distributions; the same on every run here."""
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield f"python-{name}.txt", topics[name]
    seen: set[str] = set()
    for dist in sorted(importlib.metadata.distributions(),
                       key=lambda d: (d.metadata["Name"] or "").lower()):
        name, body = (dist.metadata["Name"] or "").lower(), dist.metadata.get_payload()
        if name and name not in seen and isinstance(body, str) and len(body) > 1000:
            seen.add(name)
            yield f"{re.sub(r'[^a-z0-9_.-]', '_', name)}.md", body


def write_real_corpus(root: Path, target: int, model) -> int:
    """Files under `root` holding at least `target` chunks as `index_paths` cuts them by
    default; how many."""
    from polyseek.retrieval.documents import offsets_for, token_windows
    from polyseek.retrieval.ingest import DEFAULT_OVERLAP, default_chunk_tokens

    size, offsets = default_chunk_tokens(model.capabilities), offsets_for(model)
    root.mkdir(parents=True)
    chunks = 0
    for name, text in real_texts():
        if chunks >= target:
            break
        (root / name).write_text(text, encoding="utf-8")
        chunks += len(token_windows(text, offsets, size, DEFAULT_OVERLAP))
    return chunks


def sentences(n: int) -> list[str]:
    """`n` prose sentences of 6 to 16 words drawn from the real texts: queries that look
    real (some from indexed texts, some not)."""
    found = [s.strip() for _, text in real_texts() for s in re.split(r"(?<=[.?!])\s+", text)]
    prose = sorted({s for s in found if 6 <= len(s.split()) <= 16
                    and re.fullmatch(r"[A-Z][\w ,'()-]+[.?!]", s)})
    return random.Random(SEED).sample(prose, n)


class TimedModel:
    """`model` with the time spent in its forward passes (`embed_jobs`) summed up (everything
    else delegated)."""

    def __init__(self, model):
        self.model = model
        self.encode_s = 0.0

    def embed_jobs(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.model.embed_jobs(*args, **kwargs)
        finally:
            self.encode_s += time.perf_counter() - start

    def __getattr__(self, name: str):
        return getattr(self.model, name)


def model_part(args: argparse.Namespace, tmp: Path) -> dict:
    """index_paths on real text, then query encoding and search() latency, interleaved."""
    from polyseek.models import DEFAULT_MODEL_NAME, DEFAULT_MODEL_SOURCE, load_model
    from polyseek.retrieval import index_paths
    from polyseek.retrieval.edge_store import EdgeStore
    from polyseek.retrieval.encoders import LocalModel
    from polyseek.retrieval.search import encode_query, search

    log("model: loading the default model")
    model = load_model(DEFAULT_MODEL_SOURCE, name=DEFAULT_MODEL_NAME)
    model.encode(["warm up"])
    chunks = write_real_corpus(tmp / "corpus", args.model_chunks, model)
    queries = sentences(WARMUP + args.model_queries)
    with EdgeStore(tmp / "model-store") as store:
        optimize_s = timed_calls(store, "optimize")
        timed = TimedModel(model)
        log(f"model: indexing about {chunks} chunks")
        start = time.perf_counter()
        summary = index_paths([tmp / "corpus"], COLLECTION, timed, store=store)
        index_s = time.perf_counter() - start
        spec = store.spec(COLLECTION)
        log("model: timing queries")
        latency: dict[str, list[float]] = {"encode": [], "dense": [], "hybrid": []}
        for i, query in enumerate(queries):
            steps = {"encode": lambda q=query: asyncio.run(encode_query(LocalModel(model), q,
                                                                        spec)),
                     "dense": lambda q=query: search(q, COLLECTION, model, store=store,
                                                     mode="dense"),
                     "hybrid": lambda q=query: search(q, COLLECTION, model, store=store,
                                                      mode="hybrid")}
            for name in rotated(list(steps), i):
                start = time.perf_counter()
                steps[name]()
                if i >= WARMUP:
                    latency[name].append((time.perf_counter() - start) * 1000)
    return {"model": spec.model, "dim": spec.dim, "short_dim": spec.short_dim,
            "files": summary.files, "chunks": summary.embedded, "points": summary.points,
            "index_s": index_s, "encode_s": timed.encode_s, "optimize_s": sum(optimize_s),
            "latency": latency, "threads": torch_threads()}


def timed_calls(obj, method: str) -> list[float]:
    """Wrap `obj.method` to record each call's seconds in the returned list."""
    seconds: list[float] = []
    original = getattr(obj, method)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    setattr(obj, method, timed)
    return seconds


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


# -- server part: /v1/search while /v1/index streams ------------------------------------------


def documents(texts: list[str]) -> list[str]:
    """Paragraphs of `texts` merged into documents of 300 to 1500 characters (1-2 chunks)."""
    docs, current = [], ""
    for paragraph in (p.strip() for text in texts for p in re.split(r"\n\s*\n", text)):
        current = f"{current}\n\n{paragraph}" if current else paragraph
        if len(current) >= 300:
            docs.append(current[:1500])
            current = ""
    return docs


class Ingestor(threading.Thread):
    """A client posting /v1/index requests of `batch` new documents back to back."""

    def __init__(self, url: str, model: str, texts: list[str], batch: int):
        super().__init__(daemon=True)
        self.url, self.model, self.texts, self.batch = url, model, texts, batch
        self.stop = threading.Event()
        self.started = threading.Event()
        self.requests: list[float] = []  # seconds per request
        self.documents = 0

    def run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=600) as client:
            n = 0
            while not self.stop.is_set():
                docs = [{"id": f"stream-{n + i}", "text": self.texts[(n + i) % len(self.texts)]}
                        for i in range(self.batch)]
                n += self.batch
                self.started.set()
                start = time.perf_counter()
                client.post("/v1/index", json={"collection": COLLECTION, "model": self.model,
                                               "documents": docs}).raise_for_status()
                self.requests.append(time.perf_counter() - start)
                self.documents += len(docs)


def timed_searches(client, queries: list[str], warmup: int) -> list[float]:
    """/v1/search (hybrid, the default mode) latency of each query in ms, the first `warmup`
    untimed."""
    latency = []
    for i, query in enumerate(queries):
        start = time.perf_counter()
        client.post("/v1/search", json={"collection": COLLECTION, "query": query,
                                        "top_k": TOP_K}).raise_for_status()
        if i >= warmup:
            latency.append((time.perf_counter() - start) * 1000)
    return latency


BUILD_S = 0.1  # an optimize() call this long built an index (shorter ones had nothing to do)


class Probe:
    """Where a /v1/search request spends its time, in the server running in this process:
    query encoding, waiting for the store (`Store.call`: a worker thread, then the store's
    lock) and inside store calls; and the (start, end) of every EdgeStore.optimize call.

    Installed by patching, restored by `remove`; `Store.call` is re-implemented as it is
    (`asyncio.to_thread`, then the lock) so the wait can be told from the work."""

    def __init__(self):
        self.current: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
            "search", default=None)
        self.searches: list[dict] = []
        self.optimize: list[tuple[float, float]] = []
        self._saved: list[tuple[object, str, object]] = []

    def wrap(self, app):
        """`app` with each /v1/search request recorded."""

        async def recorded(scope, receive, send):
            if scope["type"] != "http" or scope["path"] != "/v1/search":
                return await app(scope, receive, send)
            record = {"start": time.perf_counter(), "encode": 0.0, "wait": 0.0, "store": 0.0}
            token = self.current.set(record)
            try:
                await app(scope, receive, send)
            finally:
                self.current.reset(token)
                record["end"] = time.perf_counter()
                self.searches.append(record)

        return recorded

    def install(self) -> None:
        from polyseek.retrieval.edge_store import EdgeStore
        from polyseek.retrieval.store import Store

        # the module (polyseek.retrieval's `search` attribute is the function)
        retrieval_search = importlib.import_module("polyseek.retrieval.search")

        encode_query, optimize, probe = retrieval_search.encode_query, EdgeStore.optimize, self

        async def timed_encode(*args, **kwargs):
            start = time.perf_counter()
            try:
                return await encode_query(*args, **kwargs)
            finally:
                if (record := probe.current.get()) is not None:
                    record["encode"] += time.perf_counter() - start

        async def call(store, fn, *args):
            record, asked = probe.current.get(), time.perf_counter()

            def locked():
                with store._lock:
                    got = time.perf_counter()
                    try:
                        return fn(*args)
                    finally:
                        if record is not None:
                            record["wait"] += got - asked
                            record["store"] += time.perf_counter() - got

            return await asyncio.to_thread(locked)

        def timed_optimize(store, collection: str) -> None:
            start = time.perf_counter()
            try:
                optimize(store, collection)
            finally:
                probe.optimize.append((start, time.perf_counter()))

        for owner, name, replacement in ((retrieval_search, "encode_query", timed_encode),
                                         (Store, "call", call),
                                         (EdgeStore, "optimize", timed_optimize)):
            self._saved.append((owner, name, getattr(owner, name)))
            setattr(owner, name, replacement)

    def remove(self) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()

    def summary(self, searches: list[dict]) -> dict:
        """Per-search ms of each part, and how many searches overlapped an optimize call."""
        builds = [(a, b) for a, b in self.optimize if b - a >= BUILD_S]
        overlapped = [s for s in searches
                      if any(a < s["end"] and s["start"] < b for a, b in builds)]
        parts = {k: [s[k] * 1000 for s in searches] for k in ("encode", "wait", "store")}
        parts["server"] = [(s["end"] - s["start"]) * 1000 for s in searches]
        return {**parts, "overlapped": [(s["end"] - s["start"]) * 1000 for s in overlapped]}


def server_part(args: argparse.Namespace, tmp: Path) -> dict:
    """The server with the default model on a thread; searches idle, then during ingestion."""
    import httpx

    from polyseek.api.app import ServerSettings, create_app
    from polyseek.runtime.batcher import BatchLimits
    from polyseek.runtime.registry import DEFAULT_SPEC

    from support import serve_in_thread

    texts = [text for _, text in real_texts()]
    docs = documents(texts)
    queries = sentences(WARMUP + args.server_queries)
    probe = Probe()
    probe.install()
    limits = BatchLimits(bulk_threads=args.bulk_threads)
    app = create_app(ServerSettings(models=[DEFAULT_SPEC], data_dir=str(tmp / "server"),
                                    batch=limits))
    try:
        with serve_in_thread(probe.wrap(app)) as url, \
                httpx.Client(base_url=url, timeout=600) as client:
            log(f"server: seeding {args.seed_docs} documents")
            for begin in range(0, args.seed_docs, args.ingest_batch):
                batch = [{"id": f"seed-{i}", "text": docs[i % len(docs)]}
                         for i in range(begin, min(begin + args.ingest_batch, args.seed_docs))]
                client.post("/v1/index", json={"collection": COLLECTION, "documents": batch,
                                               "model": DEFAULT_SPEC.name}).raise_for_status()
            log("server: searching, idle")
            probe.searches.clear()
            idle = timed_searches(client, queries, WARMUP)
            idle_probe = probe.summary(probe.searches[WARMUP:])
            probe.searches.clear()
            probe.optimize.clear()
            ingest = Ingestor(url, DEFAULT_SPEC.name, docs[args.seed_docs:] + docs,
                              args.ingest_batch)
            ingest.start()
            ingest.started.wait()
            time.sleep(1.0)  # the first request is being embedded
            log("server: searching during ingestion")
            start = time.perf_counter()
            during = timed_searches(client, queries[WARMUP:], 0)
            seconds = time.perf_counter() - start
            ingest.stop.set()
            ingest.join()
            during_probe = probe.summary(probe.searches)
    finally:
        probe.remove()
    return {"idle": idle, "during": during, "documents": ingest.documents,
            "requests": ingest.requests, "seconds": seconds,
            "optimize": [b - a for a, b in probe.optimize], "probe_idle": idle_probe,
            "limits": f"window {limits.window_tokens} tokens, batch {limits.max_batch_tokens}, "
                      f"bulk threads {limits.bulk_threads or 'half'} of {torch_threads()}",
            "probe_during": during_probe}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- report -----------------------------------------------------------------------------------


def pct(values: list[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(values, [50, 95])
    return float(p50), float(p95)


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    widths[0] = max(widths[0], 34)

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    print(f"\n{title}")
    print(line(header))
    print("-" * len(line(header)))
    for row in rows:
        print(line(row))


LOCAL_REOPEN_QUERIES = 3  # dense queries timed on reopened local mode (seconds each)
LOCAL_KINDS = ["dense", "sparse", "filtered"]  # local mode is brute force: no HNSW to measure
QUERY_LABELS = {"dense": "dense pipeline (short->full)", "hnsw": "short HNSW only (top 10)",
                "exact": "exact full vector", "sparse": "BM25 sparse",
                "filtered": "filtered dense pipeline"}


def report_store(results: dict[str, dict], ratios: list[tuple[str, float, str]]) -> None:
    edge, local = results["edge"], results.get("local")
    kinds = ["edge"] + (["local"] if local else [])
    names = {"edge": "Edge", "local": "local mode"}
    b = edge["build"]
    print(f"\nSTORE: {b['n']} synthetic points ({DIM}-d full, {SHORT_DIM}-d short, BM25, "
          f"payloads); {len(b['latency']['dense'])} queries after {WARMUP} warm-up; "
          f"filter selects {b['filter_share']:.1%}")
    if local:
        print(f"local mode: {local['build']['n']} points, data on {local['build']['where']}; "
              f"timed on the first {len(local['build']['latency']['dense'])} of the queries "
              f"({len(local['open']['latency']['dense'])} after reopening): brute force")
    rows = []
    for kind in kinds:
        r, o = results[kind]["build"], results[kind]["open"]
        rows.append([names[kind], f"{r['n']}", f"{r['upsert_s']:.1f}",
                     f"{r['n'] / r['upsert_s']:.0f}", f"{r['optimize_s']:.1f}",
                     f"{o['open_s'] * 1000:.0f}", f"{o['first_query_s'] * 1000:.0f}",
                     f"{r['rss_mib']:.0f}", f"{o['rss_mib']:.0f}", f"{o['idle_rss_mib']:.0f}"])
    table("build and open (RSS: peak, MiB; imports: the reopening process before opening)",
          ["store", "points", "upsert s", "pts/s", "optimize s", "open ms", "1st query ms",
           "build RSS", "open+query RSS", "imports"], rows)
    if grow := edge.get("grow"):
        print(f"Edge, {grow['extra']} more points (to {grow['total']}; segments "
              f"{grow['segments'][0]} -> {grow['segments'][1]}): upsert "
              f"{grow['upsert_s']:.1f} s, optimize {grow['optimize_s']:.1f} s; meanwhile a "
              f"thread's dense queries: {grow['queries']} done, longest "
              f"{grow['max_ms']:.0f} ms (p50 {grow['p50_ms']:.1f} ms); longest pause of a "
              f"pure-Python thread {grow['python_pause_ms']:.0f} ms")
    rows = []
    for q in QUERY_LABELS:
        row = [QUERY_LABELS[q]]
        for kind in kinds:
            measured = results[kind]["build"]["latency"].get(q)
            row += [f"{v:.2f}" for v in pct(measured)] if measured else ["-", "-"]
        if local and q in LOCAL_KINDS:
            e50, e95 = pct(edge["build"]["latency"][q])
            l50, l95 = pct(local["build"]["latency"][q])
            row += [f"{l50 / e50:.1f}x", f"{l95 / e95:.1f}x"]
        elif local:
            row += ["", ""]
        rows.append(row)
    reopened = ["after reopen: dense pipeline"]
    for kind in kinds:
        reopened += [f"{v:.2f}" for v in pct(results[kind]["open"]["latency"]["dense"])]
    rows.append(reopened + (["", ""] if local else []))
    header = ["store query latency (ms)", "Edge p50", "Edge p95"]
    if local:
        header += ["local p50", "local p95", "local/Edge p50", "p95"]
    table("store queries", header, rows)
    rows = []
    for name, label in (("hnsw_vs_exact_short", "short HNSW vs exact short"),
                        ("dense_vs_exact_pipeline", "dense pipeline vs exact pipeline"),
                        ("dense_vs_exact_full", "dense pipeline vs exact full vector"),
                        ("filtered_vs_exact_filtered", "filtered pipeline vs exact filtered")):
        rows.append([label] + [f"{results[k]['build']['recall'][name]:.4f}"
                               if name in results[k]["build"]["recall"] else "-" for k in kinds])
    table(f"recall@{TOP_K} (numpy exact)", ["recall", *(names[k] for k in kinds)], rows)
    ratios.append(("HNSW recall@10 (short vs exact)",
                   b["recall"]["hnsw_vs_exact_short"], ">= 0.98"))
    if local:
        for q in ("dense", "sparse", "filtered"):
            for p, idx in (("p50", 0), ("p95", 1)):
                ratios.append((f"store {q} local/Edge {p}",
                               pct(local["build"]["latency"][q])[idx]
                               / pct(edge["build"]["latency"][q])[idx],
                               ">= 20" if (q, p) == ("dense", "p95") else ""))
        ratios.append(("open+1st query local/Edge",
                       (local["open"]["open_s"] + local["open"]["first_query_s"])
                       / (edge["open"]["open_s"] + edge["open"]["first_query_s"]), ""))
        ratios.append(("open+query RSS local/Edge",
                       local["open"]["rss_mib"] / edge["open"]["rss_mib"], ""))


def report_model(r: dict, ratios: list[tuple[str, float, str]]) -> None:
    short = f"{r['short_dim']}-d short vector" if r["short_dim"] else \
        "no short vector (no Matryoshka dims): HNSW on the full vector"
    print(f"\nMODEL: {r['model']} ({r['dim']}-d; {short}); {r['files']} files of real text "
          f"(Python reference topics, package READMEs); torch threads {r['threads']}")
    table("indexing (index_paths, default chunking)",
          ["index_paths", "chunks", "points", "wall s", "chunks/s", "encode s", "optimize s"],
          [["cold", f"{r['chunks']}", f"{r['points']}", f"{r['index_s']:.1f}",
            f"{r['chunks'] / r['index_s']:.1f}", f"{r['encode_s']:.1f}",
            f"{r['optimize_s']:.1f}"]])
    lat = r["latency"]
    table("query latency (ms)", ["step", "p50", "p95"],
          [[label, *(f"{v:.2f}" for v in pct(lat[key]))]
           for key, label in (("encode", "query encoding"), ("dense", "search() dense"),
                              ("hybrid", "search() hybrid"))])
    ratios.append(("search() dense / encoding p50", pct(lat["dense"])[0] / pct(lat["encode"])[0],
                   ""))
    ratios.append(("search() hybrid / dense p50", pct(lat["hybrid"])[0] / pct(lat["dense"])[0],
                   ""))


def report_server(r: dict, args: argparse.Namespace,
                  ratios: list[tuple[str, float, str]]) -> None:
    idle, during = pct(r["idle"]), pct(r["during"])
    print(f"\nSERVER: /v1/search (hybrid, top {TOP_K}) from one client: {len(r['idle'])} "
          f"queries idle, then {len(r['during'])} while another client streams /v1/index "
          f"requests of {args.ingest_batch} documents (collection seeded with "
          f"{args.seed_docs}); batcher {r['limits']}")
    rows = []
    for phase, client, probe in (("idle", r["idle"], r["probe_idle"]),
                                 ("during ingestion", r["during"], r["probe_during"])):
        rows.append([phase, *(f"{v:.1f}" for part in (client, probe["server"], probe["encode"],
                                                       probe["wait"], probe["store"])
                              for v in pct(part)), f"{max(client):.0f}"])
    table("/v1/search latency (ms): client, and in the server: query encoding, waiting for "
          "the store (thread + lock), store calls",
          ["phase", "p50", "p95", "server p50", "p95", "encode p50", "p95", "store wait p50",
           "p95", "store p50", "p95", "max"], rows)
    requests, optimize = r["requests"], r["optimize"]
    overlapped = r["probe_during"]["overlapped"]
    stalled = f" (longest {max(overlapped):.0f} ms)" if overlapped else ""
    print(f"ingestion while searching: {r['documents']} documents in {len(requests)} requests "
          f"over {r['seconds']:.1f} s ({r['documents'] / r['seconds']:.1f} docs/s, request "
          f"p50 {pct(requests)[0]:.2f} s)")
    print(f"optimize() calls: {len(optimize)}, total {sum(optimize):.2f} s, longest "
          f"{max(optimize, default=0):.2f} s; searches overlapping a build (>= {BUILD_S} s): "
          f"{len(overlapped)}{stalled}")
    ratios.append(("/v1/search during/idle p50", during[0] / idle[0], "<= 3"))
    ratios.append(("/v1/search during/idle p95", during[1] / idle[1], "<= 3"))


def report_ratios(ratios: list[tuple[str, float, str]]) -> None:
    print("\nratios")
    print("-" * 60)
    for name, value, target in ratios:
        verdict = ""
        if target:
            op, bound = target.split()
            ok = value >= float(bound) if op == ">=" else value <= float(bound)
            verdict = f"target {target}: {'PASS' if ok else 'FAIL'}"
        print(f"{name:<36}{value:>10.3f}   {verdict}")


# -- main -------------------------------------------------------------------------------------


PARTS = ("store", "model", "server")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000, help="store part: points")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per measurement")
    parser.add_argument("--local-chunks", type=int, default=0,
                        help="store part: points for local mode (default: --chunks)")
    parser.add_argument("--local-queries", type=int, default=10,
                        help="store part: timed queries on local mode (seconds each at 100k)")
    parser.add_argument("--local-dir", default="/dev/shm" if Path("/dev/shm").is_dir() else None,
                        help="store part: where local mode keeps its data (default tmpfs: it "
                        "commits each point to SQLite, minutes on a disk at 100k)")
    parser.add_argument("--skip-local", action="store_true",
                        help="store part: skip qdrant-client local mode")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " +
                        ", ".join(PARTS))
    parser.add_argument("--model-chunks", type=int, default=400,
                        help="model part: chunks of real text to index")
    parser.add_argument("--model-queries", type=int, default=100,
                        help="model part: timed queries")
    parser.add_argument("--server-queries", type=int, default=40,
                        help="server part: timed searches, idle and during ingestion each")
    parser.add_argument("--ingest-batch", type=int, default=32,
                        help="server part: documents per /v1/index request")
    parser.add_argument("--seed-docs", type=int, default=256,
                        help="server part: documents indexed before searching")
    parser.add_argument("--bulk-threads", type=int, default=0,
                        help="server part: intra-op threads of the batcher's indexing worker; "
                        "0: the default (half of torch's, at least one)")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="model and server parts: torch intra-op threads (0: torch's "
                        "default; on a busy machine two threads stall each other)")
    parser.add_argument("--grow", type=int, default=10_000,
                        help="store part: points added to the Edge store afterwards, then "
                        "optimized while searching (0: skip)")
    parser.add_argument("--worker", choices=("build", "open", "grow"), help=argparse.SUPPRESS)
    parser.add_argument("--store", choices=("edge", "local"), help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--timed", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before polyseek.models imports transformers
    if args.worker == "build":
        print(RESULT + json.dumps(worker_build(args.store, args.dir, args.chunks, args.queries,
                                               args.timed)))
        return 0
    if args.worker == "grow":
        print(RESULT + json.dumps(worker_grow(args.dir, args.chunks)))
        return 0
    if args.worker == "open":
        print(RESULT + json.dumps(worker_open(args.store, args.dir, args.queries, args.timed)))
        return 0
    parts = args.parts.split(",")
    if args.torch_threads and {"model", "server"} & set(parts):
        import torch

        torch.set_num_threads(args.torch_threads)
    load = os.getloadavg()[0]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="polyseek-bench-") as tmp:
        if "store" in parts:
            results["store"] = store_part(args, Path(tmp))
        if "model" in parts:
            results["model"] = model_part(args, Path(tmp))
        if "server" in parts:
            results["server"] = server_part(args, Path(tmp))
    threads = f"; torch threads {torch_threads()}" if {"model", "server"} & set(parts) else ""
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end{threads}")
    ratios: list[tuple[str, float, str]] = []
    if "store" in results:
        report_store(results["store"], ratios)
    if "model" in results:
        report_model(results["model"], ratios)
    if "server" in results:
        report_server(results["server"], args, ratios)
    report_ratios(ratios)
    return 0


if __name__ == "__main__":
    sys.exit(main())
