"""Reranking on the runtime: cross-encoders through the batcher, bi-encoders by cosine.

A model of kind "rerank" is a `PairScorer` and gets a RerankEngine; an embedding model that
declares `reranker="bi-encoder"` reranks through its own EmbeddingEngine (the query embedded
with the model's query task, the documents with its document task, scored by cosine).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from polyseek.models.base import Input, relevance
from polyseek.runtime.engine import BatchedEngine, EmbeddingEngine


@dataclass
class RerankOutput:
    scores: list[float]  # per document, in request order
    n_tokens: int


class RerankEngine(BatchedEngine):
    """Scores (query, document) pairs: one pair job each, batched with concurrent requests."""

    async def score(self, query: Input, documents: Sequence[Input]) -> RerankOutput:
        jobs = await asyncio.to_thread(self.model.prepare_pairs, query, documents)
        logits = [out[0] for out in await self.batcher.run(jobs)]
        return RerankOutput(relevance(self.capabilities, logits), sum(j.n_tokens for j in jobs))


async def rerank(engine: RerankEngine | EmbeddingEngine, query: Input,
                 documents: Sequence[Input]) -> RerankOutput:
    if isinstance(engine, RerankEngine):
        return await engine.score(query, documents)
    # bi-encoder: cosine of the query (embedded as a query) and each document (as a passage)
    caps = engine.capabilities
    asked, found = await asyncio.gather(
        engine.embed([query], task=caps.role_task("query"), truncate=True),
        engine.embed(documents, task=caps.role_task("document"), truncate=True))
    scores = np.stack(found.vectors) @ asked.vectors[0]
    return RerankOutput(scores.tolist(), asked.n_tokens + found.n_tokens)
