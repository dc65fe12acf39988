"""Served models on their batchers: the embedding engine (validation, tokenisation off the
event loop, batching); `runtime.rerank` adds the cross-encoder engine.

It takes decoded inputs (`runtime.inputs` turns request items into them)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from polyseek.models.base import (
    Capabilities,
    Embedder,
    Input,
    PairScorer,
    per_input,
    truncate_and_normalize,
)
from polyseek.runtime.batcher import Batcher


@dataclass
class EmbedOutput:
    vectors: list[np.ndarray]  # per input: [dim], or [tokens, dim] for multi-vector
    n_tokens: int
    pooled: list[np.ndarray] | None = None  # per input [dim], beside multi-vectors (with_pooled)


class BatchedEngine:
    """A served model whose forward passes go through its own batcher."""

    def __init__(self, name: str, model: Embedder | PairScorer, batcher: Batcher):
        self.name = name
        self.model = model
        self.batcher = batcher

    @property
    def capabilities(self) -> Capabilities:
        return self.model.capabilities

    def close(self) -> None:
        self.batcher.close()


class EmbeddingEngine(BatchedEngine):
    """Embeddings: validation, tokenisation off the event loop, batching."""

    async def embed(
        self,
        items: Sequence[Input],
        *,
        task: str | None = None,
        dimensions: int | None = None,
        normalized: bool = True,
        truncate: bool = False,
        late_chunking: bool = False,
        multivector: bool = False,
        with_pooled: bool = False,
        bulk: bool = False,
    ) -> EmbedOutput:
        """Embed items; raises polyseek errors for input this model cannot take.

        with_pooled: with `multivector`, also the pooled vectors, from the same forward pass.
        bulk: queue behind interactive requests (indexing).
        """
        self.capabilities.check_dimensions(dimensions)
        jobs = await asyncio.to_thread(
            self.model.prepare, items, task, truncate, late_chunking, multivector
        )
        for job in jobs:
            job.with_pooled = multivector and with_pooled
        outputs = per_input(jobs, await self.batcher.run(jobs, bulk=bulk))
        pooled = None
        if multivector and with_pooled:
            pooled = [truncate_and_normalize(v, dimensions, normalized) for v, _ in outputs]
            outputs = [tokens for _, tokens in outputs]
        vectors = [truncate_and_normalize(v, dimensions, normalized) for v in outputs]
        return EmbedOutput(vectors, sum(job.n_tokens for job in jobs), pooled)
