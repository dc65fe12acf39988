"""`search`: short-vector prefetch -> full-vector (or MaxSim) rescoring -> optional reranker."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field

from qdrant_client import models as qm

from polyseek.errors import InvalidInput
from polyseek.models.base import Input
from polyseek.retrieval.encoders import Encoder, LocalModel, Scorer
from polyseek.retrieval.ingest import named_vectors
from polyseek.retrieval.store import FULL, MULTI, SHORT, CollectionSpec, Store

PREFETCH_FACTOR = 10  # short-vector candidates per result
RERANK_FACTOR = 4  # full-vector candidates per result handed to the reranker
MIN_CANDIDATES = 20


@dataclass
class Hit:
    id: str
    score: float
    path: str
    page: int | None
    chunk: int
    text: str
    mime: str
    thumbnail: str | None = None  # preview file name (GET /v1/thumbnails/{name})

    @classmethod
    def from_point(cls, point: qm.ScoredPoint, score: float | None = None) -> Hit:
        p = point.payload or {}
        return cls(str(point.id), float(point.score if score is None else score), p["path"],
                   p.get("page"), p.get("chunk", 0), p.get("text", ""), p.get("mime", ""),
                   p.get("thumbnail"))


@dataclass
class Stage:
    """One step of the pipeline and the candidates it produced, best first."""

    name: str  # "prefetch", "rescore" or "rerank"
    vector: str  # the named vector or the reranker used
    candidates: list[Hit]


@dataclass
class SearchResult:
    query: str
    collection: str
    hits: list[Hit]
    stages: list[Stage] = field(default_factory=list)  # filled when `explain` is set

    def as_dict(self) -> dict:
        return asdict(self)


async def encode_query(encoder: Encoder, query: Input,
                       spec: CollectionSpec) -> dict[str, object]:
    """The query's named vectors, one per vector the collection holds (one forward pass)."""
    task = encoder.capabilities.role_task("query")
    (embedding,) = await encoder.embed([query], task, bool(spec.multivector_dim))
    return named_vectors(embedding, spec)


def plan(vectors: dict[str, object], limit: int) -> list[tuple[str, object, int]]:
    """The stages as (named vector, query, limit), first to last."""
    stages: list[tuple[str, object, int]] = []
    if SHORT in vectors:
        stages.append((SHORT, vectors[SHORT], max(limit * PREFETCH_FACTOR, MIN_CANDIDATES * 5)))
    stages.append((FULL, vectors[FULL], limit))
    if MULTI in vectors:
        stages.append((MULTI, vectors[MULTI], limit))
    return stages


def run_stages(store: Store, collection: str, stages: list[tuple[str, object, int]],
               upto: int) -> list[qm.ScoredPoint]:
    """Qdrant's query API: stages[:upto] nested as prefetches, the last one as the query."""
    prefetch = None
    for using, vector, limit in stages[: upto - 1]:
        prefetch = qm.Prefetch(query=vector, using=using, limit=limit, prefetch=prefetch)
    using, vector, limit = stages[upto - 1]
    return store.client.query_points(collection, query=vector, using=using, limit=limit,
                                     prefetch=prefetch, with_payload=True).points


async def rerank_hits(scorer: Scorer, query: Input, hits: list[Hit]) -> list[Hit]:
    """Hits re-scored by `scorer`, best first; hits without text keep their order after."""
    texts = [h for h in hits if h.text]
    if not texts:
        return hits
    scores = await scorer.rerank(query, [h.text for h in texts])
    rescored = [Hit(**{**asdict(h), "score": float(s)}) for h, s in zip(texts, scores,
                                                                        strict=True)]
    rescored.sort(key=lambda h: h.score, reverse=True)
    return rescored + [h for h in hits if not h.text]


async def search_async(
    query: Input,
    collection: str,
    encoder: Encoder,
    *,
    store: Store,
    top_k: int = 10,
    rerank: Scorer | None = None,
    explain: bool = False,
) -> SearchResult:
    """The `top_k` best chunks of `collection` for `query`; `encoder` must be the model that
    built it. `rerank`: re-scores the top candidates. `explain`: also return every stage's
    candidates and scores. The store is used in short calls, the models between them."""
    if top_k < 1:
        raise InvalidInput("top_k must be at least 1", ("top_k",))
    spec = await store.call(store.check_model, collection, encoder)
    limit = max(top_k * RERANK_FACTOR, MIN_CANDIDATES) if rerank is not None else top_k
    stages = plan(await encode_query(encoder, query, spec), limit)
    points = await store.call(run_stages, store, collection, stages, len(stages))
    hits = [Hit.from_point(p) for p in points]
    trace = []
    if explain:
        for n, (using, _, _) in enumerate(stages, start=1):
            points = await store.call(run_stages, store, collection, stages, n)
            name = "prefetch" if n < len(stages) else "rescore"
            trace.append(Stage(name, using, [Hit.from_point(p) for p in points]))
    if rerank is not None:
        hits = await rerank_hits(rerank, query, hits)
        trace.append(Stage("rerank", rerank.name or "reranker", hits))
    return SearchResult(query, collection, hits[:top_k], trace if explain else [])


def search(
    query: Input,
    collection: str,
    model,
    *,
    store: Store,
    top_k: int = 10,
    rerank=None,
    explain: bool = False,
) -> SearchResult:
    """`search_async` with models loaded in this process (`rerank`: any model that can
    rerank), as the CLI runs it."""
    scorer = LocalModel(rerank) if rerank is not None else None
    return asyncio.run(search_async(query, collection, LocalModel(model), store=store,
                                    top_k=top_k, rerank=scorer, explain=explain))
