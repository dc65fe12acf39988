"""POST /v1/index and /v1/search: the Qdrant-backed retrieval layer over HTTP.

Models are reached through the runtime's engines, like /v1/embeddings and /v1/rerank: batched
with concurrent requests (indexing in the batcher's bulk lane, behind interactive requests),
counted in /metrics, refused with 429 when the queue is full. The store (embedded Qdrant under
`--data`, or a server at `--qdrant-url`) is opened on first use and shared in short calls, one
at a time (`Store.call`), never held while a model runs: searches are served during indexing.
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
from polyseek.retrieval import Store, index_documents, search_async
from polyseek.retrieval.encoders import EngineEncoder, EngineScorer
from polyseek.runtime.inputs import model_inputs, refuse_images

router = APIRouter(prefix="/v1")


class IndexDocument(BaseModel):
    id: str = Field(min_length=1, description="stable document id; re-sending it replaces it")
    text: str = Field(min_length=1)


class IndexRequest(BaseModel):
    collection: str = Field(min_length=1, pattern=r"^[\w.-]+$")
    model: str = Field(description="a served embedding model")
    documents: list[IndexDocument] = Field(min_length=1)


class SearchRequest(BaseModel):
    collection: str = Field(min_length=1)
    query: str | TextInput | ImageInput
    top_k: int = Field(10, ge=1, le=1000)
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


class SearchStage(BaseModel):
    name: Literal["prefetch", "rescore", "rerank"]
    vector: str = Field(description="the named vector queried, or the reranker")
    candidates: list[SearchHit]


class SearchResponse(BaseModel):
    collection: str
    model: str
    hits: list[SearchHit]
    stages: list[SearchStage] = Field([], description="each stage's candidates, with explain")


class CollectionInfo(BaseModel):
    name: str
    model: str | None = Field(description="the model that built it; None if not polyseek's")
    family: str | None = None
    dim: int | None = None
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
                self._store = Store(self.data_dir, self.url)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


@router.post("/index", responses=ERROR_RESPONSES)
async def create_index(body: IndexRequest, request: Request) -> dict:
    encoder = EngineEncoder(request.app.state.registry.embedding_engine(body.model), bulk=True)
    documents = [(d.id, d.text) for d in body.documents]
    summary = await index_documents(documents, body.collection, encoder,
                                    store=await request.app.state.store.get())
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
                                store=await store.get(), top_k=body.top_k,
                                rerank=EngineScorer(reranker) if reranker else None,
                                explain=body.explain)
    found = result.as_dict()
    return SearchResponse(collection=body.collection, model=spec.model, hits=found["hits"],
                          stages=found["stages"])


def _collection_infos(store: Store) -> list[CollectionInfo]:
    infos = []
    for name, spec in store.collections().items():
        infos.append(CollectionInfo(name=name, model=spec and spec.model,
                                    family=spec and spec.family, dim=spec and spec.dim,
                                    points=store.count(name)))
    return infos


@router.get("/collections", response_model=CollectionList, responses=ERROR_RESPONSES)
async def list_collections(request: Request) -> CollectionList:
    """The store's collections, each with the model that built it and its point count."""
    return CollectionList(data=await request.app.state.store.run(_collection_infos))


@router.get("/thumbnails/{name}", responses=ERROR_RESPONSES,
            response_class=FileResponse)
async def get_thumbnail(name: str, request: Request) -> FileResponse:
    """The preview of an indexed image or PDF page, as named in a search hit."""
    path = await request.app.state.store.run(Store.thumbnail_path, name)
    if path is None:
        raise HTTPException(404, f"no thumbnail {name!r}")
    return FileResponse(path, media_type="image/jpeg")
