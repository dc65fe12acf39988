"""POST /v1/index and /v1/search, /v1/collections: the retrieval layer over HTTP.

Models are reached through the runtime's engines, like /v1/embeddings and /v1/rerank: batched
with concurrent requests (indexing in the batcher's bulk lane, behind interactive requests),
counted in /metrics, refused with 429 when the queue is full. The store (Qdrant Edge under
`--data`, or a Qdrant server at `--qdrant-url`) is opened on first use and shared in short
calls, one at a time (`Store.call`), never held while a model runs: searches are served during
indexing.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from polyseek.api.schemas import ERROR_RESPONSES, ImageInput, TextInput, to_item
from polyseek.retrieval import (
    CollectionNotFound,
    Condition,
    Document,
    Range,
    Store,
    index_documents,
    open_store,
    search_async,
)
from polyseek.retrieval.encoders import EngineEncoder, EngineScorer
from polyseek.retrieval.search import DEFAULT_FUSION, DEFAULT_MODE, Fusion, Mode
from polyseek.runtime.inputs import model_inputs, refuse_images

router = APIRouter(prefix="/v1")


MetadataValue = str | int | float | bool | list[str] | list[int] | list[float]


class IndexDocument(BaseModel):
    id: str = Field(min_length=1, description="stable document id; re-sending it replaces it")
    text: str = Field(min_length=1)
    metadata: dict[str, MetadataValue] | None = Field(
        None, description="fields to filter on in /v1/search, as metadata.NAME")


class IndexRequest(BaseModel):
    collection: str = Field(min_length=1, max_length=128, pattern=r"^[\w.-]+$")
    model: str = Field(description="a served embedding model")
    documents: list[IndexDocument] = Field(min_length=1)
    language: str | None = Field(
        None, description="BM25 language of a new collection: english (default), swedish, "
        "german, ... or multilingual (no stemming; any script). A mixed corpus: its main "
        "language")


class FilterRange(BaseModel):
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


class FilterCondition(BaseModel):
    """A payload field and exactly one test on it."""

    key: str = Field(description="extension, mime, size, modified, page, path or "
                     "metadata.NAME")
    match: str | int | float | bool | None = Field(None, description="equals")
    any: list[str] | list[int] | None = Field(None, description="equals one of")
    range: FilterRange | None = None
    prefix: str | None = Field(None, description="starts with (text fields, e.g. path)")

    def condition(self) -> Condition:
        return Condition(self.key, self.match, tuple(self.any) if self.any else self.any,
                         Range(**self.range.model_dump()) if self.range else None, self.prefix)


class SearchRequest(BaseModel):
    collection: str = Field(min_length=1)
    query: str | TextInput | ImageInput
    top_k: int = Field(10, ge=1, le=1000)
    mode: Mode = Field(DEFAULT_MODE, description="dense (embeddings), sparse (BM25) or "
                       "hybrid (both lists, fused)")
    fusion: Fusion = Field(DEFAULT_FUSION, description="hybrid: rrf (reciprocal rank) or "
                           "dbsf (distribution-based score fusion)")
    weights: tuple[float, float] | None = Field(
        None, description="hybrid: weights of the dense and the sparse list [default 1, 1]")
    filters: list[FilterCondition] = Field([], description="conditions every hit meets")
    rerank: str | None = Field(None, description="a served model that can rerank")
    explain: bool = False


class SearchHit(BaseModel):
    id: str
    score: float
    path: str = Field(description="source file, or the document id given to /v1/index")
    page: int | None = None
    chunk: int
    text: str
    mime: str
    thumbnail: str | None = Field(None, description="GET /v1/thumbnails/{thumbnail}")
    metadata: dict[str, MetadataValue] | None = None
    ranks: dict[str, int] | None = Field(
        None, description="fusion: the hit's 1-based rank in the dense and sparse lists")


class SearchStage(BaseModel):
    name: Literal["prefetch", "rescore", "sparse", "fusion", "rerank"]
    vector: str = Field(description="the named vector queried, the fusion, or the reranker")
    candidates: list[SearchHit]


class SearchResponse(BaseModel):
    collection: str
    model: str
    mode: Mode
    hits: list[SearchHit]
    stages: list[SearchStage] = Field([], description="each stage's candidates, with explain")


class CollectionInfo(BaseModel):
    name: str
    model: str | None = Field(description="the model that built it; None if not polyseek's")
    family: str | None = None
    dim: int | None = None
    language: str | None = Field(None, description="BM25 language")
    points: int


class CollectionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CollectionInfo]


class StoreHolder:
    """Opens the store on first use; requests share it through `Store.call`."""

    def __init__(self, data_dir: str, url: str | None):
        self.data_dir, self.url = data_dir, url
        self._store: Store | None = None
        self._lock = threading.Lock()

    async def get(self) -> Store:
        if self._store is None:
            await asyncio.to_thread(self._open)
        return self._store

    async def run(self, fn, *args):
        """`fn(store, *args)` as one store call."""
        store = await self.get()
        return await store.call(fn, store, *args)

    def _open(self) -> None:
        with self._lock:
            if self._store is None:
                self._store = open_store(self.data_dir, self.url)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


@router.post("/index", responses=ERROR_RESPONSES)
async def create_index(body: IndexRequest, request: Request) -> dict:
    encoder = EngineEncoder(request.app.state.registry.embedding_engine(body.model), bulk=True)
    documents = [Document(d.id, d.text, d.metadata) for d in body.documents]
    summary = await index_documents(documents, body.collection, encoder,
                                    store=await request.app.state.store.get(),
                                    language=body.language)
    return summary.as_dict()


@router.post("/search", response_model=SearchResponse, responses=ERROR_RESPONSES)
async def create_search(body: SearchRequest, request: Request) -> SearchResponse:
    registry, store = request.app.state.registry, request.app.state.store
    spec = await store.run(Store.spec, body.collection)
    engine = registry.embedding_engine(spec.model)
    reranker = registry.rerank_engine(body.rerank) if body.rerank else None
    item = to_item(body.query)
    if reranker is not None:
        refuse_images(body.rerank, reranker.capabilities.modalities, [item], [("query",)])
    (query,) = await model_inputs([item], request.app.state.settings.image_limits, spec.model,
                                  engine.capabilities.modalities, [("query",)])
    result = await search_async(query, body.collection, EngineEncoder(engine),
                                store=await store.get(), top_k=body.top_k, mode=body.mode,
                                fusion=body.fusion, weights=body.weights,
                                where=[f.condition() for f in body.filters],
                                rerank=EngineScorer(reranker) if reranker else None,
                                explain=body.explain)
    found = result.as_dict()
    return SearchResponse(collection=body.collection, model=spec.model, mode=result.mode,
                          hits=found["hits"], stages=found["stages"])


def _collection_infos(store: Store) -> list[CollectionInfo]:
    infos = []
    for name, spec in store.collections().items():
        infos.append(CollectionInfo(name=name, model=spec and spec.model,
                                    family=spec and spec.family, dim=spec and spec.dim,
                                    language=spec and spec.language, points=store.count(name)))
    return infos


@router.get("/collections", response_model=CollectionList, responses=ERROR_RESPONSES)
async def list_collections(request: Request) -> CollectionList:
    """The store's collections, each with the model that built it and its point count."""
    return CollectionList(data=await request.app.state.store.run(_collection_infos))


def _delete_collection(store: Store, name: str) -> None:
    if not store.delete_collection(name):
        raise CollectionNotFound(f"no collection {name!r}")


@router.delete("/collections/{name}", status_code=204, responses=ERROR_RESPONSES)
async def delete_collection(name: str, request: Request) -> None:
    """Delete a collection and its points."""
    await request.app.state.store.run(_delete_collection, name)


@router.get("/thumbnails/{name}", responses=ERROR_RESPONSES,
            response_class=FileResponse)
async def get_thumbnail(name: str, request: Request) -> FileResponse:
    """The preview of an indexed image or PDF page, as named in a search hit."""
    path = await request.app.state.store.run(Store.thumbnail_path, name)
    if path is None:
        raise HTTPException(404, f"no thumbnail {name!r}")
    return FileResponse(path, media_type="image/jpeg")
