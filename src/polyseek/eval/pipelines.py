"""The pipelines an evaluation compares. Each indexes the corpus once (or reuses a collection
another pipeline indexed), then ranks doc ids for one query at a time: the bm25s baseline, and
`Search`, the real retrieval path in one mode (dense, sparse or hybrid)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import bm25s

from polyseek.retrieval import Store, index_documents, search_async
from polyseek.retrieval.bm25 import DEFAULT_LANGUAGE
from polyseek.retrieval.encoders import Encoder, Scorer
from polyseek.retrieval.search import DEFAULT_FUSION, Fusion, Mode
from polyseek.retrieval.store import PREFERRED_SHORT_DIM, default_short_dim

INDEX_BATCH = 64  # documents per index_documents call (one progress step)
TOKEN_PATTERN = r"(?u)\b\w\w+\b"
TOKENISATION = ("lowercase Unicode word tokens of 2+ characters (regex \\w\\w+), "
                "no stemming, no stop words, the same for every language")

Progress = Callable[[int], None]  # called with how many documents were just indexed


class Pipeline(Protocol):
    name: str
    info: dict  # what it is: kind (bm25, dense, prefetch, maxsim, rerank, matryoshka, sparse,
    # hybrid), the search mode, model, dim

    async def index(self, corpus: dict[str, str], progress: Progress) -> None: ...

    async def rank(self, query: str, top_k: int) -> list[str]:
        """Doc ids, best first (at most `top_k`)."""
        ...


@dataclass
class Bm25:
    """bm25s over the same documents, tokenised identically for every language."""

    name: str = "bm25"
    info: dict = field(default_factory=lambda: {"kind": "bm25", "tokenisation": TOKENISATION})
    ids: list[str] = field(default_factory=list)
    retriever: bm25s.BM25 | None = None

    async def index(self, corpus: dict[str, str], progress: Progress) -> None:
        self.ids = list(corpus)
        self.retriever = bm25s.BM25()
        self.retriever.index(tokenize(list(corpus.values())), show_progress=False)
        progress(len(corpus))

    async def rank(self, query: str, top_k: int) -> list[str]:
        k = min(top_k, len(self.ids))
        docs, scores = self.retriever.retrieve(tokenize([query]), k=k, show_progress=False)
        return [self.ids[d] for d, s in zip(docs[0], scores[0], strict=True) if s > 0]


def tokenize(texts: list[str]) -> list[list[str]]:
    return bm25s.tokenize(texts, lower=True, token_pattern=TOKEN_PATTERN, stopwords=None,
                          return_ids=False, show_progress=False)


@dataclass
class Search:
    """The real retrieval path: `index_documents` into a collection of the store, then
    `search_async` in `mode` (always given: the search default is not what is measured) with
    the query encoder (and the reranker, if any)."""

    name: str
    info: dict
    store: Store
    collection: str
    indexer: Encoder  # embeds the corpus (may reuse cached embeddings)
    encoder: Encoder  # embeds queries: same model, no cache
    mode: Mode = "dense"
    fusion: Fusion = DEFAULT_FUSION  # hybrid only
    weights: tuple[float, float] | None = None  # hybrid: dense, sparse (None: equal)
    short_dim: int = 0  # 0: no short vector
    reranker: Scorer | None = None
    source: str | None = None
    language: str = DEFAULT_LANGUAGE  # BM25 language of the collection
    reuse: bool = False  # the collection is indexed by another pipeline: nothing is embedded

    async def index(self, corpus: dict[str, str], progress: Progress) -> None:
        if self.reuse:
            progress(len(corpus))
            return
        items = list(corpus.items())
        for start in range(0, len(items), INDEX_BATCH):
            batch = items[start : start + INDEX_BATCH]
            await index_documents(batch, self.collection, self.indexer, store=self.store,
                                  source=self.source, short_dim=self.short_dim,
                                  language=self.language)
            progress(len(batch))

    async def rank(self, query: str, top_k: int) -> list[str]:
        result = await search_async(query, self.collection, self.encoder, store=self.store,
                                    top_k=top_k, mode=self.mode, fusion=self.fusion,
                                    weights=self.weights, rerank=self.reranker)
        return list(dict.fromkeys(hit.path for hit in result.hits))  # best chunk per doc


def prefetch_dim(capabilities) -> int | None:
    """The short vector a collection gets by default, else 128 when the model is larger."""
    short = default_short_dim(capabilities.matryoshka_dims, capabilities.dim)
    if short is None and capabilities.dim > PREFERRED_SHORT_DIM:
        short = PREFERRED_SHORT_DIM
    return short

