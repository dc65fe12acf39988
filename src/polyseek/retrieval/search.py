"""`search`: dense and/or BM25 candidates, fused in hybrid mode, then an optional reranker.

- dense: short-vector prefetch -> full-vector rescoring (-> MaxSim rescoring), in the engine;
- sparse: the query's BM25 terms against the ``bm25`` vector (IDF applied by the engine);
- hybrid: both lists, fused by reciprocal rank (RRF) or by distribution-based score fusion
  (DBSF), each list weighted.

Filters apply inside the engine, to every stage.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from polyseek.errors import InvalidInput
from polyseek.models.base import Input
from polyseek.retrieval.bm25 import query_vector
from polyseek.retrieval.encoders import Encoder, LocalModel, Scorer
from polyseek.retrieval.filters import Filter
from polyseek.retrieval.ingest import named_vectors
from polyseek.retrieval.options import (  # noqa: F401 - check_options and MODES: re-exported
    DEFAULT_FUSION,
    DEFAULT_MODE,
    MODES,
    Fusion,
    Mode,
    check_options,
)
from polyseek.retrieval.store import (
    FULL,
    MULTI,
    SHORT,
    SPARSE,
    CollectionSpec,
    Nearest,
    Point,
    Store,
)

RRF_K = 60  # the constant of reciprocal rank fusion: 1 / (k + rank)
PREFETCH_FACTOR = 10  # short-vector candidates per result
RERANK_FACTOR = 4  # candidates per result handed to the reranker
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
    metadata: dict | None = None  # as given to /v1/index
    ranks: dict[str, int] | None = None  # fusion: 1-based rank in each list that had it

    @classmethod
    def from_point(cls, point: Point) -> Hit:
        p = point.payload
        return cls(point.id, point.score, p["path"], p.get("page"), p.get("chunk", 0),
                   p.get("text", ""), p.get("mime", ""), p.get("thumbnail"), p.get("metadata"))


@dataclass
class Stage:
    """One step of the pipeline and the candidates it produced, best first."""

    name: Literal["prefetch", "rescore", "sparse", "fusion", "rerank"]
    vector: str  # the named vector queried, the fusion method, or the reranker
    candidates: list[Hit]


@dataclass
class SearchResult:
    query: str
    collection: str
    hits: list[Hit]
    mode: Mode = DEFAULT_MODE
    stages: list[Stage] = field(default_factory=list)  # filled when `explain` is set

    def as_dict(self) -> dict:
        return asdict(self)


async def encode_query(encoder: Encoder, query: Input,
                       spec: CollectionSpec) -> dict[str, object]:
    """The query's named dense vectors, one per vector the collection holds (one pass)."""
    task = encoder.capabilities.role_task("query")
    (embedding,) = await encoder.embed([query], task, bool(spec.multivector_dim))
    return named_vectors(embedding, spec)


def dense_stages(vectors: dict[str, object], limit: int) -> list[Nearest]:
    """Each stage of the dense pipeline as a query, the earlier ones as its prefetch:
    [short], [short -> full], [short -> full -> multi]."""
    stages: list[Nearest] = []
    if SHORT in vectors:
        depth = max(limit * PREFETCH_FACTOR, MIN_CANDIDATES * 5)
        stages.append(Nearest(SHORT, vectors[SHORT], depth))
    for name in (FULL, MULTI):
        if name in vectors:
            stages.append(Nearest(name, vectors[name], limit,
                                  prefetch=stages[-1] if stages else None))
    return stages


def rrf(lists: dict[str, list[Point]], weights: dict[str, float]) -> dict[str, float]:
    """Reciprocal rank fusion: the sum over lists of weight / (RRF_K + rank)."""
    fused: dict[str, float] = {}
    for name, points in lists.items():
        for rank, point in enumerate(points, start=1):
            fused[point.id] = fused.get(point.id, 0.0) + weights[name] / (RRF_K + rank)
    return fused


def dbsf(lists: dict[str, list[Point]], weights: dict[str, float]) -> dict[str, float]:
    """Distribution-based score fusion: each list's scores mapped to [0, 1] by its mean
    +- 3 standard deviations, then summed with the weights."""
    fused: dict[str, float] = {}
    for name, points in lists.items():
        scores = [p.score for p in points]
        if not scores:
            continue
        mean, spread = statistics.fmean(scores), 3 * statistics.pstdev(scores)
        for point in points:
            unit = 0.5 if spread == 0 else (point.score - mean + spread) / (2 * spread)
            fused[point.id] = fused.get(point.id, 0.0) + weights[name] * min(max(unit, 0.0), 1.0)
    return fused


def fuse(lists: dict[str, list[Point]], method: Fusion, weights: dict[str, float],
         limit: int) -> list[Hit]:
    """The `limit` best points of all lists by `method`, each with its rank in every list."""
    scores = (rrf if method == "rrf" else dbsf)(lists, weights)
    points = {p.id: p for ranked in lists.values() for p in ranked}
    ranks: dict[str, dict[str, int]] = {}
    for name, ranked in lists.items():
        for rank, point in enumerate(ranked, start=1):
            ranks.setdefault(point.id, {})[name] = rank
    best = sorted(scores, key=lambda i: (-scores[i], i))[:limit]
    return [replace(Hit.from_point(points[i]), score=scores[i], ranks=ranks[i]) for i in best]


async def rerank_hits(scorer: Scorer, query: Input, hits: list[Hit]) -> list[Hit]:
    """Hits re-scored by `scorer`, best first; hits without text keep their order after."""
    texts = [h for h in hits if h.text]
    if not texts:
        return hits
    scores = await scorer.rerank(query, [h.text for h in texts])
    rescored = [replace(h, score=float(s)) for h, s in zip(texts, scores, strict=True)]
    rescored.sort(key=lambda h: h.score, reverse=True)
    return rescored + [h for h in hits if not h.text]


async def search_async(
    query: Input,
    collection: str,
    encoder: Encoder,
    *,
    store: Store,
    top_k: int = 10,
    mode: Mode | None = None,
    fusion: Fusion = DEFAULT_FUSION,
    weights: Sequence[float] | None = None,
    where: Filter | None = None,
    rerank: Scorer | None = None,
    explain: bool = False,
) -> SearchResult:
    """The `top_k` best chunks of `collection` for `query`; `encoder` must be the model that
    built it. mode: dense, sparse (BM25) or hybrid (both, fused by `fusion` with `weights`
    for the dense and the sparse list); None: the collection's default mode. where:
    conditions every hit meets. rerank: re-scores the top candidates. explain: also return
    every stage's candidates. The store is used in short calls, the models between them."""
    check_options(mode, fusion, weights, top_k)
    spec = await store.call(store.check_model, collection, encoder)
    mode = mode or spec.mode
    limit = max(top_k * RERANK_FACTOR, MIN_CANDIDATES) if rerank is not None else top_k
    trace: list[Stage] = []
    lists: dict[str, list[Point]] = {}
    text = query if isinstance(query, str) else None
    if text is None:  # an image has no terms
        if mode == "sparse":
            raise InvalidInput("sparse search needs a text query", ("query",))
        mode = "dense"
    depth = max(limit, MIN_CANDIDATES) if mode == "hybrid" else limit
    if mode != "sparse":
        stages = dense_stages(await encode_query(encoder, query, spec), depth)
        for stage in stages if explain else stages[-1:]:
            points = await store.call(store.query, collection, stage, where)
            name = "prefetch" if stage.using == SHORT else "rescore"
            trace.append(Stage(name, stage.using, [Hit.from_point(p) for p in points]))
        lists["dense"] = points
    if mode != "dense":  # a text query (an image query searches dense)
        terms = query_vector(text, spec.language)
        points = [] if terms is None else await store.call(
            store.query, collection, Nearest(SPARSE, terms, depth), where)
        trace.append(Stage("sparse", SPARSE, [Hit.from_point(p) for p in points]))
        lists["sparse"] = points
    if mode == "hybrid":
        dense_weight, sparse_weight = weights or (1.0, 1.0)
        hits = fuse(lists, fusion, {"dense": dense_weight, "sparse": sparse_weight}, limit)
        trace.append(Stage("fusion", fusion, hits))
    else:
        hits = trace[-1].candidates
    if rerank is not None:
        hits = await rerank_hits(rerank, query, hits)
        trace.append(Stage("rerank", rerank.name or "reranker", hits))
    return SearchResult(text if text is not None else "<image>", collection, hits[:top_k], mode,
                        trace if explain else [])


def search(query: Input, collection: str, model, *, store: Store, rerank=None,
           **options) -> SearchResult:
    """`search_async` with models loaded in this process (`rerank`: any model that can
    rerank), as the CLI runs it; `options` as `search_async`."""
    scorer = LocalModel(rerank) if rerank is not None else None
    return asyncio.run(search_async(query, collection, LocalModel(model), store=store,
                                    rerank=scorer, **options))
