"""`search`: short-vector prefetch -> full-vector (or MaxSim) rescoring -> optional reranker."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from qdrant_client import models as qm

from polyseek.errors import InvalidInput
from polyseek.models.base import Input
from polyseek.retrieval.ingest import role_task
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


@dataclass
class QueryVectors:
    full: list[float]
    short: list[float] | None
    multi: list[list[float]] | None


def encode_query(model, query: Input, spec: CollectionSpec) -> QueryVectors:
    """The query's vectors for each named vector the collection holds."""
    task = role_task(model.capabilities.tasks, "query")
    full = np.asarray(model.encode([query], task=task), dtype=np.float32)[0]
    short = None
    if spec.short_dim:
        prefix = full[: spec.short_dim]
        short = (prefix / max(float(np.linalg.norm(prefix)), 1e-12)).tolist()
    multi = None
    if spec.multivector_dim:
        multi = np.asarray(model.encode([query], task=task, multivector=True)[0]).tolist()
    return QueryVectors(full.tolist(), short, multi)


def plan(vectors: QueryVectors, limit: int) -> list[tuple[str, object, int]]:
    """The stages as (named vector, query, limit), first to last."""
    stages: list[tuple[str, object, int]] = []
    if vectors.short is not None:
        stages.append((SHORT, vectors.short, max(limit * PREFETCH_FACTOR, MIN_CANDIDATES * 5)))
    stages.append((FULL, vectors.full, limit))
    if vectors.multi is not None:
        stages.append((MULTI, vectors.multi, limit))
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


def rerank_hits(reranker, query: Input, hits: list[Hit]) -> list[Hit]:
    """Hits re-scored by `reranker`, best first; hits without text keep their order after."""
    kind = getattr(reranker.capabilities, "reranker", None)
    if not kind:
        raise InvalidInput(f"model {getattr(reranker, 'name', '?')!r} cannot rerank")
    texts = [h for h in hits if h.text]
    if not texts:
        return hits
    documents = [h.text for h in texts]
    if kind == "bi-encoder":
        vectors = np.asarray(reranker.encode([query, *documents]), dtype=np.float32)
        scores = (vectors[1:] @ vectors[0]).tolist()
    else:
        scores = list(reranker.score(query, documents))
    rescored = [Hit(**{**asdict(h), "score": float(s)}) for h, s in zip(texts, scores,
                                                                        strict=True)]
    rescored.sort(key=lambda h: h.score, reverse=True)
    return rescored + [h for h in hits if not h.text]


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
    """The `top_k` best chunks of `collection` for `query`; `model` must be the one that built
    it. `rerank`: a model with `capabilities.reranker` re-scoring the top candidates.
    `explain`: also return every stage's candidates and scores."""
    if top_k < 1:
        raise InvalidInput("top_k must be at least 1", ("top_k",))
    spec = store.check_model(collection, model)
    limit = max(top_k * RERANK_FACTOR, MIN_CANDIDATES) if rerank is not None else top_k
    stages = plan(encode_query(model, query, spec), limit)
    hits = [Hit.from_point(p) for p in run_stages(store, collection, stages, len(stages))]
    trace = []
    if explain:
        for n, (using, _, _) in enumerate(stages, start=1):
            points = run_stages(store, collection, stages, n)
            name = "prefetch" if n < len(stages) else "rescore"
            trace.append(Stage(name, using, [Hit.from_point(p) for p in points]))
    if rerank is not None:
        hits = rerank_hits(rerank, query, hits)
        trace.append(Stage("rerank", getattr(rerank, "name", "") or "reranker", hits))
    return SearchResult(query, collection, hits[:top_k], trace if explain else [])
