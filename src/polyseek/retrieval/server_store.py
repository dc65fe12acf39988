"""`ServerStore`: a Qdrant server or cluster through `qdrant-client` (`--qdrant-url`).

The same collection layout as the embedded store; the collection record is the Qdrant
collection's metadata. Thumbnails stay in the local data directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from polyseek.retrieval.bm25 import SparseVector
from polyseek.retrieval.filters import Condition, Filter, IndexKind
from polyseek.retrieval.store import (
    BASE_INDEXES,
    FULL,
    MULTI,
    SHORT,
    SPARSE,
    CollectionNotFound,
    CollectionSpec,
    Nearest,
    Point,
    Store,
    StoreUnavailable,
    Vector,
)

SCROLL_PAGE = 1024
_SCHEMA = {"keyword": qm.PayloadSchemaType.KEYWORD, "integer": qm.PayloadSchemaType.INTEGER,
           "float": qm.PayloadSchemaType.FLOAT, "bool": qm.PayloadSchemaType.BOOL}
_KIND = {schema: kind for kind, schema in _SCHEMA.items()}


def _to_client(vector: Vector):
    return qm.SparseVector(indices=vector.indices, values=vector.values) \
        if isinstance(vector, SparseVector) else vector


def _condition(c: Condition) -> qm.FieldCondition:
    if c.range is not None:
        r = c.range
        return qm.FieldCondition(key=c.key, range=qm.Range(gte=r.gte, gt=r.gt, lte=r.lte,
                                                           lt=r.lt))
    if isinstance(c.match, float):  # Qdrant matches strings, integers and booleans exactly
        return qm.FieldCondition(key=c.key, range=qm.Range(gte=c.match, lte=c.match))
    match = (qm.MatchValue(value=c.match) if c.match is not None
             else qm.MatchAny(any=list(c.any)) if c.any is not None
             else qm.MatchPrefix(prefix=c.prefix))
    return qm.FieldCondition(key=c.key, match=match)


def client_filter(where: Filter | None) -> qm.Filter | None:
    return qm.Filter(must=[_condition(c) for c in where]) if where else None


def vectors_config(spec: CollectionSpec) -> dict[str, qm.VectorParams]:
    """Named dense vectors of `spec`; only the vector searched first gets an HNSW graph."""
    cosine = qm.Distance.COSINE
    no_graph = qm.HnswConfigDiff(m=0)
    vectors = {FULL: qm.VectorParams(size=spec.dim, distance=cosine,
                                     hnsw_config=no_graph if spec.short_dim else None)}
    if spec.short_dim:
        vectors[SHORT] = qm.VectorParams(size=spec.short_dim, distance=cosine)
    if spec.multivector_dim:
        vectors[MULTI] = qm.VectorParams(
            size=spec.multivector_dim, distance=cosine, hnsw_config=no_graph,
            multivector_config=qm.MultiVectorConfig(comparator=qm.MultiVectorComparator.MAX_SIM))
    return vectors


class ServerStore(Store):
    """A `QdrantClient` (a server, a cluster, or the client's in-memory mode in tests)."""

    remote = True

    def __init__(self, client: QdrantClient, data_dir: str | Path | None = None):
        super().__init__(data_dir)
        self.client = client

    @classmethod
    def connect(cls, url: str, data_dir: str | Path | None = None) -> ServerStore:
        client = QdrantClient(url=url)
        try:
            client.get_collections()
        except Exception as exc:  # any transport or protocol failure: say where and why
            client.close()
            raise StoreUnavailable(f"cannot reach a Qdrant server at {url}: "
                                   f"{type(exc).__name__}: {exc}") from exc
        return cls(client, data_dir)

    # -- collections ---------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def metadata(self, collection: str) -> dict | None:
        if not self.client.collection_exists(collection):
            raise CollectionNotFound(f"no collection {collection!r}; index some files first")
        return self.client.get_collection(collection).config.metadata

    def create(self, collection: str, spec: CollectionSpec) -> None:
        self.client.create_collection(
            collection, vectors_config=vectors_config(spec),
            sparse_vectors_config={SPARSE: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
            metadata=spec.as_metadata())
        for key, kind in BASE_INDEXES.items():
            self.create_index(collection, key, kind)

    def write_spec(self, collection: str, spec: CollectionSpec) -> None:
        self.client.update_collection(collection, metadata=spec.as_metadata())

    def delete_collection(self, collection: str) -> bool:
        return bool(self.client.collection_exists(collection)
                    and self.client.delete_collection(collection))

    # -- points --------------------------------------------------------------------------

    def upsert(self, collection: str, points: list[Point]) -> None:
        if points:
            self.client.upsert(collection, [
                qm.PointStruct(id=p.id, vector={k: _to_client(v) for k, v in p.vectors.items()},
                               payload=p.payload) for p in points], wait=True)

    def delete_ids(self, collection: str, ids: list[str]) -> None:
        if ids:
            self.client.delete(collection, qm.PointIdsList(points=ids), wait=True)

    def count(self, collection: str) -> int:
        return self.client.count(collection, exact=True).count

    def scroll(self, collection: str, payload: list[str] | None = None) -> Iterator[Point]:
        offset = None
        while True:
            records, offset = self.client.scroll(collection, limit=SCROLL_PAGE, offset=offset,
                                                 with_payload=payload or True,
                                                 with_vectors=False)
            yield from map(Point.from_record, records)
            if offset is None:
                return

    def retrieve(self, collection: str, ids: list[str]) -> list[Point]:
        records = self.client.retrieve(collection, ids, with_payload=True, with_vectors=True)
        return [Point.from_record(r) for r in records]

    def query(self, collection: str, query: Nearest, where: Filter | None = None) -> list[Point]:
        condition = client_filter(where)
        found = self.client.query_points(
            collection, query=_to_client(query.vector), using=query.using, limit=query.limit,
            prefetch=_prefetch(query.prefetch, condition), query_filter=condition,
            search_params=qm.SearchParams(exact=True) if query.exact else None,
            with_payload=True).points
        return [Point.from_record(p) for p in found]

    def indexes(self, collection: str) -> dict[str, IndexKind]:
        schema = self.client.get_collection(collection).payload_schema or {}
        return {key: _KIND[info.data_type] for key, info in schema.items()
                if info.data_type in _KIND}

    def create_index(self, collection: str, key: str, kind: IndexKind) -> None:
        if self.client.init_options.get("location") == ":memory:" or \
                self.client.init_options.get("path"):
            return  # the client's local mode has no payload indexes (and warns)
        self.client.create_payload_index(collection, key, _SCHEMA[kind], wait=True)

    def optimize(self, collection: str) -> None:
        """The server builds its indexes in the background."""

    def close(self) -> None:
        with self._lock:
            self.client.close()


def _prefetch(stage: Nearest | None, where: qm.Filter | None) -> qm.Prefetch | None:
    if stage is None:
        return None
    return qm.Prefetch(query=_to_client(stage.vector), using=stage.using, limit=stage.limit,
                       prefetch=_prefetch(stage.prefetch, where), filter=where)
