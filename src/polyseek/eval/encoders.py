"""Encoder views for evaluation: embed the corpus once per model, and truncate to a dim."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from polyseek.models.base import Input, truncate_and_normalize
from polyseek.retrieval.encoders import Embedding, Encoder


class CachedEncoder:
    """`inner`, remembering every text's embedding: each collection built for one model
    (dense, short vector, each dim) then reuses the corpus embeddings. Used for indexing
    only, so query latency always includes the model."""

    def __init__(self, inner: Encoder):
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.tokenizer = inner.tokenizer
        self.cache: dict[tuple, Embedding] = {}

    async def embed(self, items: Sequence[Input], task: str | None,
                    multivector: bool) -> list[Embedding]:
        keys = [(item, task, multivector) for item in items]
        todo = list(dict.fromkeys(k for k in keys if k not in self.cache))
        if todo:
            done = await self.inner.embed([k[0] for k in todo], task, multivector)
            self.cache.update(zip(todo, done, strict=True))
        return [self.cache[k] for k in keys]


class Truncated:
    """`inner` with vectors cut to their first `dim` values and re-normalised (as the
    `dimensions` parameter does), and no token vectors: one point of a Matryoshka curve,
    or the plain dense vector of a multi-vector model when `dim` is its full size."""

    def __init__(self, inner: Encoder, dim: int):
        caps = inner.capabilities
        self.inner = inner
        self.dim = dim
        self.name = inner.name if dim == caps.dim else f"{inner.name}@{dim}"
        self.capabilities = replace(caps, dim=dim, matryoshka_dims=(), multivector=False,
                                    multivector_dim=None)
        self.tokenizer = inner.tokenizer

    async def embed(self, items: Sequence[Input], task: str | None,
                    multivector: bool) -> list[Embedding]:
        embeddings = await self.inner.embed(items, task, False)
        return [Embedding(truncate_and_normalize(e.vector, self.dim, True)) for e in embeddings]
