"""Server memory: RSS after start, peak under mixed load, and after an embedding burst.

Starts the real server as `make serve` does (``polyseek serve`` on the default models:
multilingual-e5-small and SmolLM2-135M-Instruct, cache already built) as a subprocess and reads
its resident set from /proc:

1. start: VmRSS once /health answers 200 (every model ready), after a short idle;
2. load: the peak (VmHWM, reset through /proc/PID/clear_refs first) while C clients (8) each
   loop over mixed requests for a while: /v1/embeddings (8 sentences), /v1/rerank (a query
   and 16 documents) and a short chat completion (greedy, 16 tokens);
3. burst: R requests (64) of N inputs (512) each sent to /v1/embeddings at once, once each
   (the queue holds 16,384 sequences, so about half get 429: retrying them every second makes
   the server validate and refuse thousands of 512-input bodies); the peak during it, VmRSS
   right after, and after SETTLE seconds idle; with ``--trim``, also after the server's
   allocator is asked to give free memory back (glibc ``malloc_trim(0)``, through SIGUSR1 on
   a small wrapper around the CLI).

``--env KEY=VALUE`` sets the server's environment (e.g. ``MALLOC_ARENA_MAX=2``), to compare
allocator settings. Memory figures depend little on CPU load; the timings printed beside them do.

    .venv/bin/python benchmarks/memory.py [--clients 8] [--load-seconds 60]
        [--burst-requests 64] [--burst-inputs 512] [--settle 10] [--trim] [--env K=V ...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from serving import free_port, polyseek_server, wait_healthy

EMBED_MODEL = "multilingual-e5-small"
CHAT_MODEL = "smollm2-135m-instruct"
WORDS = ("river", "stone", "light", "winter", "market", "engine", "garden", "letter", "window",
         "music", "city", "forest", "paper", "bridge", "number", "morning", "signal", "harbour",
         "table", "voice", "system", "cloud", "road", "street", "question", "answer", "summer",
         "village", "planet", "circle", "museum", "kitchen", "doctor", "teacher")
# the CLI with a SIGUSR1 handler that calls glibc's malloc_trim(0) (for --trim only)
TRIM_WRAPPER = (
    "import ctypes, signal, sys\n"
    "libc = ctypes.CDLL('libc.so.6')\n"
    "signal.signal(signal.SIGUSR1, lambda *_: libc.malloc_trim(0))\n"
    "sys.argv[0] = 'polyseek'\n"
    "from polyseek.cli import app\n"
    "app()\n"
)


def status(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon and RssFile of a live process, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def reset_peak(pid: int) -> None:
    """Start a new VmHWM window (Linux: writing 5 to clear_refs resets the peak RSS)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


@contextmanager
def server(port: int, log_path: Path, env: dict[str, str], trim: bool) -> Iterator[int]:
    """`polyseek serve` on the default models in a subprocess; yields its pid."""
    launcher = ("-c", TRIM_WRAPPER) if trim else ("-m", "polyseek")
    data = tempfile.mkdtemp(prefix="polyseek-memory-")
    with polyseek_server(port, log_path, "--data", data, env=env, launcher=launcher) as proc:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield proc.pid


async def post(client: httpx.AsyncClient, path: str, body: dict, retry: bool = True) -> int:
    """POST until it is not a 429 (waiting Retry-After), or once; the final status.

    A pooled connection the server closed while we waited (keep-alive expiry) is retried too.
    """
    while True:
        try:
            response = await client.post(path, json=body)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            continue
        if response.status_code != 429 or not retry:
            return response.status_code
        await asyncio.sleep(float(response.headers.get("retry-after", "1")))


async def mixed_client(client: httpx.AsyncClient, seed: int, until: float,
                       statuses: Counter) -> None:
    """Embeddings, rerank and a short chat in turn, until the deadline."""
    rng = random.Random(seed)
    while time.monotonic() < until:
        kind = rng.choice(("embeddings", "rerank", "chat"))
        if kind == "embeddings":
            body = {"model": EMBED_MODEL, "task": "retrieval.passage",
                    "input": [sentence(rng, rng.randint(5, 30)) for _ in range(8)]}
            statuses[kind, await post(client, "/v1/embeddings", body)] += 1
        elif kind == "rerank":
            body = {"model": EMBED_MODEL, "query": sentence(rng, 6),
                    "documents": [sentence(rng, rng.randint(10, 40)) for _ in range(16)]}
            statuses[kind, await post(client, "/v1/rerank", body)] += 1
        else:
            body = {"model": CHAT_MODEL, "temperature": 0, "max_tokens": 16,
                    "messages": [{"role": "user", "content": sentence(rng, 8)}]}
            statuses[kind, await post(client, "/v1/chat/completions", body)] += 1


async def run_load(base_url: str, clients: int, seconds: float) -> Counter:
    statuses: Counter = Counter()
    until = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as client:
        await asyncio.gather(*(mixed_client(client, i, until, statuses)
                               for i in range(clients)))
    return statuses


async def run_burst(base_url: str, requests: int, inputs: int, words: int) -> Counter:
    rng = random.Random(1)
    bodies = [{"model": EMBED_MODEL, "input": [sentence(rng, words) for _ in range(inputs)]}
              for _ in range(requests)]
    limits = httpx.Limits(max_connections=requests)
    async with httpx.AsyncClient(base_url=base_url, timeout=1800, limits=limits) as client:
        codes = await asyncio.gather(*(post(client, "/v1/embeddings", b, retry=False)
                                       for b in bodies))
    return Counter(codes)


def show(label: str, figures: dict[str, float], seconds: float | None = None) -> None:
    took = f"  ({seconds:.0f} s)" if seconds is not None else ""
    print(f"{label:<34} " + "  ".join(f"{k} {v:7.0f} MiB" for k, v in figures.items()) + took,
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--load-seconds", type=float, default=60.0)
    parser.add_argument("--burst-requests", type=int, default=64)
    parser.add_argument("--burst-inputs", type=int, default=512)
    parser.add_argument("--burst-words", type=int, default=8, help="words per burst input")
    parser.add_argument("--settle", type=float, default=10.0, help="idle seconds after the burst")
    parser.add_argument("--trim", action="store_true", help="also measure after malloc_trim(0)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="server environment variable (repeatable)")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.gettempdir()) / f"polyseek-memory-{port}.log"
    print(f"server env {env or '(unchanged)'}; log {log_path}", flush=True)
    started = time.monotonic()
    with server(port, log_path, env, args.trim) as pid:
        ready = time.monotonic() - started
        time.sleep(2)
        show("after start (models ready)", {"RSS": status(pid)["VmRSS"],
                                            "peak": status(pid)["VmHWM"]}, ready)

        reset_peak(pid)
        t = time.monotonic()
        statuses = asyncio.run(run_load(base_url, args.clients, args.load_seconds))
        now = status(pid)
        show(f"{args.clients} clients, mixed (peak)", {"peak": now["VmHWM"], "RSS": now["VmRSS"]},
             time.monotonic() - t)
        print("  requests:", dict(sorted(statuses.items())), flush=True)

        reset_peak(pid)
        t = time.monotonic()
        codes = asyncio.run(run_burst(base_url, args.burst_requests, args.burst_inputs,
                                      args.burst_words))
        now = status(pid)
        show(f"burst {args.burst_requests} x {args.burst_inputs} (peak)",
             {"peak": now["VmHWM"], "RSS": now["VmRSS"]}, time.monotonic() - t)
        print("  statuses:", dict(codes), flush=True)
        time.sleep(args.settle)
        show(f"burst, then {args.settle:.0f} s idle", {"RSS": status(pid)["VmRSS"]})
        if args.trim:
            os.kill(pid, signal.SIGUSR1)
            time.sleep(2)
            show("after malloc_trim(0)", {"RSS": status(pid)["VmRSS"]})


if __name__ == "__main__":
    main()
