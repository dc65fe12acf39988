"""Dynamic batching: concurrent requests share token-budget forward passes on one worker.

Requests enqueue their jobs and await futures. Jobs wait in one of two first-come-first-served
lanes: interactive (queries, /v1/embeddings, /v1/rerank) and bulk (indexing). The worker thread
takes a window of about `window_tokens` tokens of interactive jobs plus at most
`bulk_window_tokens` of bulk jobs, groups it by task (groups with interactive jobs first), sorts
each group by length and cuts batches whose padded size (members x longest) stays within
`max_batch_tokens`, so long and short inputs rarely pad each other. Windows keep requests
flowing: the first requests are answered while later ones are computed, and an interactive
request waits for at most the window in flight, which holds little bulk work, never behind
queued bulk work. Bulk callers submit moderate groups of jobs, one after another.

Both lanes share `max_queue`: a request that would exceed it gets Overloaded (HTTP 429).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from itertools import groupby

import numpy as np

from polyseek.errors import Overloaded
from polyseek.models.base import Embedder, EncodeJob, PairScorer, plan_batches
from polyseek.runtime.metrics import Metrics


@dataclass
class BatchLimits:
    max_batch_tokens: int = 2048  # padded tokens per forward pass (CPU: small is faster)
    max_batch_size: int = 128  # sequences per forward pass
    window_tokens: int = 8192  # tokens taken from the queue per scheduling round
    bulk_window_tokens: int = 512  # of which bulk (indexing): what a query may wait behind
    max_queue: int = 16384  # sequences waiting; beyond it new requests get Overloaded


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
        self._thread = threading.Thread(target=self._work, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    async def run(self, jobs: list[EncodeJob], bulk: bool = False) -> list[np.ndarray]:
        """Outputs of `jobs`, in order, computed alongside whatever else is queued.

        bulk: queue behind every interactive job (indexing); False for requests a user waits on.
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
            self._wakeup.notify()
        return list(await asyncio.gather(*(p.future for p in pending)))

    @property
    def _queued(self) -> int:
        return len(self._interactive) + len(self._bulk)

    def close(self) -> None:
        with self._wakeup:
            self._closed = True
            self._wakeup.notify()
        self._thread.join(timeout=10)

    def _work(self) -> None:
        while True:
            with self._wakeup:
                while not self._queued and not self._closed:
                    self._wakeup.wait()
                if self._closed:
                    return
                lanes = self._take_window()
                self.metrics.queue_depth.labels(self.name).set(self._queued)
            for taken in lanes:  # interactive, then bulk
                taken = [p for p in taken if not p.future.done()]  # drop cancelled requests
                by_task = sorted(taken, key=lambda p: p.job.task or "")
                for _, group in groupby(by_task, key=lambda p: p.job.task or ""):
                    self._run_group(list(group))

    def _take_window(self) -> tuple[list[_Pending], list[_Pending]]:
        """Pop about `window_tokens` tokens of interactive jobs and `bulk_window_tokens` of
        bulk jobs (at least one job of a non-empty lane)."""
        budgets = (self.limits.window_tokens, self.limits.bulk_window_tokens)
        window = []
        for lane, budget in zip((self._interactive, self._bulk), budgets, strict=True):
            count, tokens = 0, 0
            while count < len(lane) and tokens < budget:
                tokens += lane[count].job.n_tokens
                count += 1
            window.append(lane[:count])
            del lane[:count]
        return window[0], window[1]

    def _run_group(self, group: list[_Pending]) -> None:
        lengths = [p.job.n_tokens for p in group]
        for batch in plan_batches(lengths, self.limits.max_batch_tokens,
                                  self.limits.max_batch_size):
            members = [group[i] for i in batch]
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
