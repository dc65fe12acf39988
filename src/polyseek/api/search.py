"""POST /v1/index and /v1/search, /v1/collections: the retrieval layer over HTTP.

Models are reached through the runtime's engines, like /v1/embeddings and /v1/rerank: batched
with concurrent requests (indexing in the batcher's bulk lane, beside interactive requests),
counted in /metrics, refused with 429 when the queue is full. The store (Qdrant Edge under
`--data`, or a Qdrant server at `--qdrant-url`) is opened on first use and shared in short
calls, one at a time (`Store.call`), never held while a model runs: searches are served during
indexing.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    field_validator,
    model_validator,
)
from starlette.exceptions import HTTPException

from polyseek.api.schemas import (
    ImageInput,
    NonEmptyText,
    RequestModel,
    TextInput,
    encodable,
    error_responses,
    integral,
    to_item,
)
from polyseek.errors import InputTooLarge, UnknownModel
from polyseek.inputs.items import Item
from polyseek.retrieval import (
    CollectionNotFound,
    CollectionSpec,
    Condition,
    Document,
    Range,
    SearchResult,
    Store,
    index_documents,
    open_store,
    search_async,
)
from polyseek.retrieval.bm25 import LANGUAGES
from polyseek.retrieval.encoders import EngineEncoder, EngineScorer
from polyseek.retrieval.filters import FIELDS, METADATA_KEY
from polyseek.retrieval.search import DEFAULT_FUSION, Fusion, Mode
from polyseek.retrieval.store import COLLECTION_NAME, check_collection_name
from polyseek.runtime.inputs import model_inputs, refuse_images

router = APIRouter(prefix="/v1")


MetadataValue = (StrictStr | StrictInt | StrictFloat | StrictBool | list[StrictStr]
                 | list[StrictInt] | list[StrictFloat] | list[StrictBool])
# the names a filter can reach as metadata.NAME (filters.METADATA_KEY), and the store can index
MetadataName = Annotated[str, StringConstraints(pattern=r"^[\w-]{1,64}$")]
Metadata = Annotated[dict[MetadataName, MetadataValue],
                     Field(json_schema_extra={"additionalProperties": False})]
# a search query: more than whitespace (str.strip's whitespace: Python's \s)
QueryString = Annotated[str, Field(pattern=r"\S"), AfterValidator(encodable)]
# a collection name as the store takes it (not "." or ".."); Python's regex engine, the one the
# store checks with, so that the schema, the request check and the store agree on \w
COLLECTION_PATTERN = f"^{COLLECTION_NAME.pattern}$"
Language = Literal[LANGUAGES]  # type: ignore[valid-type]
_PYTHON_RE = ConfigDict(regex_engine="python-re")  # \w and \s as the store and str.strip


class IndexDocument(RequestModel):
    model_config = _PYTHON_RE

    id: NonEmptyText = Field(description="stable document id; re-sending it replaces it")
    text: NonEmptyText = Field(description="blank text (only whitespace, NUL or BOM) is "
                               "reported in `errors`, not indexed")
    metadata: Metadata | None = Field(
        None, description="fields to filter on in /v1/search, as metadata.NAME: strings, "
        "numbers, booleans or lists of them")


class IndexRequest(RequestModel):
    model_config = _PYTHON_RE

    collection: str = Field(pattern=COLLECTION_PATTERN)
    model: str = Field(description="a served embedding model")
    documents: list[IndexDocument] = Field(min_length=1, description="at most --max-inputs "
                                           "(413 above)")
    language: Language | None = Field(
        None, description="BM25 language of a new collection: english (default), swedish, "
        "german, ... or multilingual (no stemming; any script); case-insensitive. A mixed "
        "corpus: its main language")
    mode: Mode | None = Field(None, description="the collection's default search mode "
                              "(dense for a new collection unless given)")

    @field_validator("language", mode="before")
    @classmethod
    def _lower(cls, value):
        return value.lower() if isinstance(value, str) else value


class IndexFailure(BaseModel):
    path: str = Field(description="the document id")
    error: str


class IndexResponse(BaseModel):
    """What the run did (IndexSummary.as_dict)."""

    model_config = ConfigDict(extra="allow")

    collection: str
    files: int = Field(description="documents received")
    indexed: int
    unchanged: int
    removed: int
    embedded: int = Field(description="chunks sent through the model")
    deleted_points: int
    points: int = Field(description="points in the collection now")
    errors: list[IndexFailure]


def _one_of_set(names: tuple[str, ...], exactly: bool) -> dict:
    """JSON Schema for "exactly one (or at least one) of `names` is given and not null"."""
    given = [{"required": [n], "properties": {n: {"not": {"type": "null"}}}} for n in names]
    return {"oneOf" if exactly else "anyOf": given}


class FilterRange(RequestModel):
    """At least one bound (filters.Condition checks it)."""

    model_config = ConfigDict(json_schema_extra=_one_of_set(("gt", "gte", "lt", "lte"), False))

    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


_TESTS = ("match", "any", "range", "prefix")
_NUMERIC = [k for k, kind in FIELDS.items() if kind != "keyword"]


class FilterCondition(RequestModel):
    """A payload field and exactly one test on it (filters.Condition checks it)."""

    model_config = ConfigDict(regex_engine="python-re", json_schema_extra={
        **_one_of_set(_TESTS, True),
        # prefix applies to text fields only
        "if": {"required": ["prefix"], "properties": {"prefix": {"type": "string"}}},
        "then": {"properties": {"key": {"not": {"enum": _NUMERIC}}}},
    })

    key: str = Field(pattern=rf"^({'|'.join(FIELDS)}|{METADATA_KEY.pattern})$",
                     description="extension, mime, size, modified, page, path or "
                     "metadata.NAME")
    match: StrictStr | StrictInt | StrictFloat | StrictBool | None = Field(
        None, description="equals")
    any: Annotated[list[StrictStr], Field(min_length=1)] | Annotated[
        list[StrictInt], Field(min_length=1)] | None = Field(None, description="equals one of")
    range: FilterRange | None = None
    prefix: str | None = Field(None, description="starts with (text fields, e.g. path)")

    @model_validator(mode="after")
    def _one_test(self):
        self.condition()  # Condition's checks (an InvalidInput is a ValueError: a 422 here)
        return self

    def condition(self) -> Condition:
        return Condition(self.key, self.match, tuple(self.any) if self.any else self.any,
                         Range(**self.range.model_dump()) if self.range else None, self.prefix)


class QueryText(TextInput):
    model_config = _PYTHON_RE

    text: QueryString


class SearchRequest(RequestModel):
    model_config = _PYTHON_RE

    collection: str = Field(pattern=COLLECTION_PATTERN)
    query: QueryString | QueryText | ImageInput = Field(
        description="text with more than whitespace, or an image for a model that takes them")
    top_k: Annotated[int, Field(ge=1, le=1000), BeforeValidator(integral)] = 10
    mode: Mode | None = Field(None, description="dense (embeddings), sparse (BM25) or "
                              "hybrid (both lists, fused); default: the collection's mode")
    fusion: Fusion = Field(DEFAULT_FUSION, description="hybrid: rrf (reciprocal rank) or "
                           "dbsf (distribution-based score fusion)")
    # bounded: dbsf sums weight * [0, 1] per list, and 2 * 1.8e308 is inf (a null score)
    weights: Annotated[list[Annotated[float, Field(ge=0, le=1000)]], Field(
        min_length=2, max_length=2, json_schema_extra={"contains": {"exclusiveMinimum": 0}},
    )] | None = Field(None, description="hybrid: weights of the dense and the sparse list, "
                      "each 0 to 1000, not both 0 [default 1, 1]")
    filters: list[FilterCondition] = Field([], description="conditions every hit meets")
    rerank: str | None = Field(None, description="a served model that can rerank")
    explain: bool = False

    @field_validator("weights")
    @classmethod
    def _some_weight(cls, value):
        if value is not None and not any(value):
            raise ValueError("weights: two non-negative numbers (dense, sparse), not both 0")
        return value

    @field_validator("query", mode="before")
    @classmethod
    def _query_has_text(cls, value):
        text = value if isinstance(value, str) else (
            value.get("text") if isinstance(value, dict) else None)
        if isinstance(text, str) and not text.strip():
            raise ValueError("query must not be empty")
        return value


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
    mode: Mode | None = Field(None, description="the default search mode")
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


STORE_ERRORS = error_responses(409, 503, e503="the store cannot be opened")


@router.post("/index", response_model=IndexResponse, responses=error_responses(
    400, 409, 413, 429, 503, e400="unknown model, not an embedding model, or not the model "
    "that built the collection"))
async def create_index(body: IndexRequest, request: Request) -> dict:
    limit = request.app.state.settings.max_inputs
    if len(body.documents) > limit:
        raise InputTooLarge(f"{len(body.documents)} documents; at most {limit} per request "
                            "(--max-inputs)")
    encoder = EngineEncoder(request.app.state.registry.embedding_engine(body.model), bulk=True)
    documents = [Document(d.id, d.text, d.metadata) for d in body.documents]
    summary = await index_documents(documents, body.collection, encoder,
                                    store=await request.app.state.store.get(),
                                    language=body.language, mode=body.mode)
    return summary.as_dict()


@router.post("/search", response_model=SearchResponse, responses=error_responses(
    400, 404, 409, 413, 429, 503, e400="the collection's model or the reranker is not served, "
    "or cannot embed or rerank", e404="no such collection", e413="an image over the limits"))
async def create_search(body: SearchRequest, request: Request) -> SearchResponse:
    spec, result = await run_search(request, body.collection, to_item(body.query),
                                    top_k=body.top_k, mode=body.mode, fusion=body.fusion,
                                    weights=body.weights, rerank=body.rerank,
                                    where=[f.condition() for f in body.filters],
                                    explain=body.explain)
    found = result.as_dict()
    return SearchResponse(collection=body.collection, model=spec.model, mode=result.mode,
                          hits=found["hits"], stages=found["stages"])


async def run_search(request: Request, collection: str, item: Item, *, rerank: str | None,
                     **options) -> tuple[CollectionSpec, SearchResult]:
    """Search `collection` for `item` with the served model that built it (and the served
    reranker `rerank`); `options` as `search_async`. Also what grounded chat retrieves with."""
    registry, store = request.app.state.registry, request.app.state.store
    spec = await store.run(Store.spec, collection)
    if spec.model not in registry.entries:
        raise UnknownModel(f"collection {collection!r} was built with model {spec.model!r}, "
                           f"which this server does not serve; served models: "
                           f"{', '.join(registry.names)}")
    engine = registry.embedding_engine(spec.model)
    reranker = registry.rerank_engine(rerank) if rerank else None
    if reranker is not None:
        refuse_images(rerank, reranker.capabilities.modalities, [item], [("query",)])
    (query,) = await model_inputs([item], request.app.state.settings.image_limits, spec.model,
                                  engine.capabilities.modalities, [("query",)])
    result = await search_async(query, collection, EngineEncoder(engine),
                                store=await store.get(),
                                rerank=EngineScorer(reranker) if reranker else None, **options)
    return spec, result


def _collection_infos(store: Store) -> list[CollectionInfo]:
    infos = []
    for name, spec in store.collections().items():
        infos.append(CollectionInfo(name=name, model=spec and spec.model,
                                    family=spec and spec.family, dim=spec and spec.dim,
                                    language=spec and spec.language, mode=spec and spec.mode,
                                    points=store.count(name)))
    return infos


@router.get("/collections", response_model=CollectionList, responses=STORE_ERRORS)
async def list_collections(request: Request) -> CollectionList:
    """The store's collections, each with the model that built it and its point count."""
    return CollectionList(data=await request.app.state.store.run(_collection_infos))


def _delete_collection(store: Store, name: str) -> None:
    if not store.delete_collection(name):
        raise CollectionNotFound(f"no collection {name!r}")


# a path parameter is checked in the route (the store's own check), so its pattern is only
# stated in the schema: FastAPI would compile it with pydantic's default engine, which has no
# look-ahead and a different \w
CollectionName = Annotated[str, PathParam(json_schema_extra={"pattern": COLLECTION_PATTERN})]


@router.delete("/collections/{name}", status_code=204, responses={
    **error_responses(404, e404="no such collection"), **STORE_ERRORS})
async def delete_collection(name: CollectionName, request: Request) -> None:
    """Delete a collection and its points."""
    check_collection_name(name)
    await request.app.state.store.run(_delete_collection, name)


@router.get("/thumbnails/{name}", response_class=FileResponse, responses={
    200: {"description": "a JPEG preview",
          "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
    **error_responses(404, e404="no such thumbnail"), **STORE_ERRORS})
async def get_thumbnail(name: str, request: Request) -> FileResponse:
    """The preview of an indexed image or PDF page, as named in a search hit."""
    path = await request.app.state.store.run(Store.thumbnail_path, name)
    if path is None:
        raise HTTPException(404, f"no thumbnail {name!r}")
    return FileResponse(path, media_type="image/jpeg")
