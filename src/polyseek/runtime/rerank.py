"""Reranking on the runtime: cross-encoders through the batcher, bi-encoders by cosine.

A model of kind "rerank" gets a RerankEngine; an embedding model that declares
`reranker="bi-encoder"` reranks through its own EmbeddingEngine (query and documents embedded
in one request, scored by cosine similarity).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from polyseek.inputs.items import Item
from polyseek.models.base import Capabilities, Reranker
from polyseek.runtime.batcher import Batcher
from polyseek.runtime.engine import EmbeddingEngine


@dataclass
class RerankOutput:
    scores: list[float]  # per document, in request order
    n_tokens: int


class RerankEngine:
    """Scores (query, document) pairs: batched across requests when the model exposes
    pair jobs (`prepare_pairs` + `embed_jobs`), else one `score_pairs` call at a time."""

    def __init__(self, name: str, model: Reranker, batcher: Batcher | None):
        self.name = name
        self.model = model
        self.batcher = batcher
        self._lock = asyncio.Lock()

    @property
    def capabilities(self) -> Capabilities:
        return self.model.capabilities

    async def score(self, query: Item, documents: Sequence[Item]) -> RerankOutput:
        if self.batcher is None:
            async with self._lock:
                scores, n_tokens = await asyncio.to_thread(self.model.score_pairs, query,
                                                           documents)
            return RerankOutput(list(scores), n_tokens)
        jobs = await asyncio.to_thread(self.model.prepare_pairs, query, documents)
        logits = np.array([out[0] for out in await self.batcher.run(jobs)], dtype=np.float64)
        return RerankOutput((1 / (1 + np.exp(-logits))).tolist(), sum(j.n_tokens for j in jobs))

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()


async def rerank(engine: RerankEngine | EmbeddingEngine, query: Item,
                 documents: Sequence[Item]) -> RerankOutput:
    if isinstance(engine, RerankEngine):
        return await engine.score(query, documents)
    out = await engine.embed([query, *documents], truncate=True)  # bi-encoder: cosine
    scores = np.stack(out.vectors[1:]) @ out.vectors[0]
    return RerankOutput(scores.tolist(), out.n_tokens)
