"""One served chat model: generations run one at a time, first come first served, on a
worker thread; their text deltas stream back to the event loop. A consumer that stops
listening (a client that disconnects) stops its generation at the next token.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from polyseek.errors import Overloaded
from polyseek.models.base import Capabilities, ChatMessage, Generator, TextDelta
from polyseek.models.sampling import SamplingParams
from polyseek.runtime.metrics import Metrics

_DONE = object()


@dataclass
class _Generation:
    messages: Sequence[ChatMessage]
    sampling: SamplingParams
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False

    def emit(self, item) -> None:
        self.loop.call_soon_threadsafe(self.out.put_nowait, item)


class ChatEngine:
    def __init__(self, name: str, model: Generator, metrics: Metrics, max_queue: int = 64):
        self.name = name
        self.model = model
        self.metrics = metrics
        self.max_queue = max_queue
        self._jobs: queue.Queue[_Generation | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name=f"chat-{name}", daemon=True)
        self._thread.start()

    @property
    def capabilities(self) -> Capabilities:
        return self.model.capabilities

    async def stream(self, messages: Sequence[ChatMessage],
                     sampling: SamplingParams) -> AsyncIterator[TextDelta]:
        """Text deltas of one generation, the last with its finish reason and token counts."""
        if self._jobs.qsize() >= self.max_queue:
            raise Overloaded(f"{self.name!r} has {self._jobs.qsize()} generations queued")
        job = _Generation(messages, sampling, asyncio.get_running_loop())
        self._jobs.put(job)
        self.metrics.queue_depth.labels(self.name).set(self._jobs.qsize())
        try:
            while (item := await job.out.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            job.cancelled = True  # finished, failed or abandoned: the worker stops either way

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=10)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            self.metrics.queue_depth.labels(self.name).set(self._jobs.qsize())
            if job.cancelled:
                continue
            try:
                self._run(job)
            except Exception as exc:  # bad input or a failed step ends this request only
                job.emit(exc)
            job.emit(_DONE)

    def _run(self, job: _Generation) -> None:
        counted = None  # completion tokens already counted; None until the prompt is
        for delta in self.model.generate(job.messages, job.sampling):
            if job.cancelled:
                return
            job.emit(delta)
            if counted is None:
                self.metrics.tokens.labels(self.name).inc(delta.prompt_tokens)
                counted = 0
            new = delta.completion_tokens - counted
            self.metrics.tokens.labels(self.name).inc(new)
            self.metrics.generated.labels(self.name).inc(new)
            counted = delta.completion_tokens
