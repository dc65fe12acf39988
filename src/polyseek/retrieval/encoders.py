"""How retrieval reaches models: an `Encoder` embeds, a `Scorer` reranks.

Retrieval never calls a model's forward pass itself; it awaits one of two implementations:

- `LocalModel`: a model loaded in this process, run in the calling thread (the CLI, Ray actors);
- `EngineEncoder` / `EngineScorer`: a served model through the runtime's engines, so indexing
  and search are batched with every other request, counted in /metrics and refused with
  Overloaded (HTTP 429) when the queue is full. Indexing uses the batcher's bulk lane.

With `multivector`, an embedding's pooled vector and token vectors come from one forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from polyseek.errors import InvalidInput
from polyseek.models.base import Capabilities, Input, run_jobs, truncate_and_normalize
from polyseek.runtime.engine import EmbeddingEngine
from polyseek.runtime.rerank import RerankEngine, rerank

LOCAL_BATCH_SIZE = 8  # sequences per forward pass of a LocalModel (images can be long)


@dataclass
class Embedding:
    vector: np.ndarray  # [dim], L2-normalised
    tokens: np.ndarray | None = None  # [T, P] per-token vectors (multi-vector models), or None


class Encoder(Protocol):
    name: str
    capabilities: Capabilities
    tokenizer: Any  # for token-window chunking; None splits on whitespace

    async def embed(self, items: Sequence[Input], task: str | None,
                    multivector: bool) -> list[Embedding]:
        """One embedding per item; token vectors too when `multivector` is set."""
        ...


class Scorer(Protocol):
    name: str

    async def rerank(self, query: Input, documents: Sequence[str]) -> list[float]:
        """Relevance of each document to `query`, in document order."""
        ...


class LocalModel:
    """A model loaded in this process, as an Encoder and (if it can rerank) a Scorer."""

    def __init__(self, model, batch_size: int = LOCAL_BATCH_SIZE):
        self.model = model
        self.name: str = getattr(model, "name", "")
        self.capabilities: Capabilities = model.capabilities
        self.tokenizer = getattr(model, "tokenizer", None)
        self.batch_size = batch_size

    async def embed(self, items: Sequence[Input], task: str | None,
                    multivector: bool) -> list[Embedding]:
        jobs = self.model.prepare(items, task, True, False, multivector)
        for job in jobs:
            job.with_pooled = multivector
        outputs = run_jobs(self.model, jobs, self.batch_size)
        if multivector:
            return [Embedding(_unit(vector), _unit(tokens)) for vector, tokens in outputs]
        return [Embedding(_unit(vector)) for vector in outputs]

    async def rerank(self, query: Input, documents: Sequence[str]) -> list[float]:
        kind = self.capabilities.reranker
        if kind == "bi-encoder":
            (asked,) = await self.embed([query], self.capabilities.role_task("query"), False)
            found = await self.embed(documents, self.capabilities.role_task("document"), False)
            return [float(e.vector @ asked.vector) for e in found]
        if kind is None:
            raise InvalidInput(f"model {self.name or '?'!r} cannot rerank")
        return [float(s) for s in self.model.score(query, documents)]


class EngineEncoder:
    """A served embedding model, as an Encoder: its engine's batcher (bulk lane with `bulk`)."""

    def __init__(self, engine: EmbeddingEngine, bulk: bool = False):
        self.engine = engine
        self.bulk = bulk
        self.name = engine.name
        self.capabilities = engine.capabilities
        self.tokenizer = getattr(engine.model, "tokenizer", None)

    async def embed(self, items: Sequence[Input], task: str | None,
                    multivector: bool) -> list[Embedding]:
        out = await self.engine.embed(items, task=task, truncate=True, multivector=multivector,
                                      with_pooled=multivector, bulk=self.bulk)
        if multivector:
            return [Embedding(v, t) for v, t in zip(out.pooled, out.vectors, strict=True)]
        return [Embedding(v) for v in out.vectors]


class EngineScorer:
    """A served model that can rerank, as a Scorer (runtime.rerank: batched like /v1/rerank)."""

    def __init__(self, engine: RerankEngine | EmbeddingEngine):
        self.engine = engine
        self.name = engine.name

    async def rerank(self, query: Input, documents: Sequence[str]) -> list[float]:
        return (await rerank(self.engine, query, documents)).scores


def _unit(vectors: np.ndarray) -> np.ndarray:
    return truncate_and_normalize(vectors, None, True)
