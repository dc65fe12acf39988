"""`EdgeStore`: the embedded store, a Qdrant Edge shard per collection (`qdrant-edge-py`).

Layout under the data directory::

    polyseek.lock                     held by the one process that has the store open
    collections/NAME/collection.json  the collection record (CollectionSpec)
    collections/NAME/shard/           the Qdrant Edge shard: segments, HNSW, WAL
    thumbnails/                       previews of images and PDF pages

Every update goes through the shard's write-ahead log before it returns, so a killed process
loses nothing that was written. A collection appears whole or not at all: it is built under a
temporary name and renamed into place.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import qdrant_edge as qe

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
    StoreBusy,
    StoreUnavailable,
    Vector,
    check_collection_name,
)

SCROLL_PAGE = 1024
HNSW_M, HNSW_EF_CONSTRUCT = 16, 100
FULL_SCAN_THRESHOLD = 10_000  # KB of vectors below which a segment is searched exhaustively
_SCHEMA = {"keyword": qe.PayloadSchemaType.Keyword, "integer": qe.PayloadSchemaType.Integer,
           "float": qe.PayloadSchemaType.Float, "bool": qe.PayloadSchemaType.Bool}
_KIND = {schema: kind for kind, schema in _SCHEMA.items()}


def _hnsw(enabled: bool) -> qe.HnswIndexConfig:
    """The graph for a vector searched first; none (m=0) for one only used to rescore."""
    return qe.HnswIndexConfig(m=HNSW_M if enabled else 0, ef_construct=HNSW_EF_CONSTRUCT,
                              full_scan_threshold=FULL_SCAN_THRESHOLD)


def edge_config(spec: CollectionSpec) -> qe.EdgeConfig:
    """The shard layout of `spec`: the vector searched first gets an HNSW graph."""
    cosine = qe.Distance.Cosine
    vectors = {FULL: qe.EdgeVectorParams(size=spec.dim, distance=cosine,
                                         hnsw_config=_hnsw(not spec.short_dim))}
    if spec.short_dim:
        vectors[SHORT] = qe.EdgeVectorParams(size=spec.short_dim, distance=cosine,
                                             hnsw_config=_hnsw(True))
    if spec.multivector_dim:
        vectors[MULTI] = qe.EdgeVectorParams(
            size=spec.multivector_dim, distance=cosine, hnsw_config=_hnsw(False),
            multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim))
    sparse = {SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
    return qe.EdgeConfig(vectors=vectors, sparse_vectors=sparse)


def _to_edge(vector: Vector) -> qe.NamedVector:
    return qe.SparseVector(vector.indices, vector.values) if isinstance(vector, SparseVector) \
        else vector


def _condition(c: Condition) -> qe.FieldCondition:
    if c.range is not None:
        r = c.range
        return qe.FieldCondition(c.key, range=qe.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt))
    if isinstance(c.match, float):  # Qdrant matches strings, integers and booleans exactly
        return qe.FieldCondition(c.key, range=qe.RangeFloat(gte=c.match, lte=c.match))
    # qdrant-edge-py 0.9 reads a Python bool given to MatchValue as the integer 0 or 1, which
    # matches no boolean field; a numpy bool is read as a boolean
    value = np.bool_(c.match) if isinstance(c.match, bool) else c.match
    match = (qe.MatchValue(value) if c.match is not None
             else qe.MatchAny(list(c.any)) if c.any is not None else qe.MatchPrefix(c.prefix))
    return qe.FieldCondition(c.key, match=match)


def edge_filter(where: Filter | None) -> qe.Filter | None:
    return qe.Filter(must=[_condition(c) for c in where]) if where else None


class EdgeStore(Store):
    """Qdrant Edge shards under `data_dir`, opened by one process at a time."""

    remote = False

    def __init__(self, data_dir: str | Path | None = None):
        super().__init__(data_dir)
        if (self.data_dir / "meta.json").is_file() and (self.data_dir / "collection").is_dir():
            raise StoreUnavailable(
                f"{self.data_dir} holds collections in the layout of an earlier polyseek "
                "(qdrant-client local mode), which this version no longer reads; move it "
                "aside and run `polyseek index` again to rebuild them")
        self.root = self.data_dir / "collections"
        self.root.mkdir(exist_ok=True)
        self._lock_file = _hold_lock(self.data_dir / "polyseek.lock")
        for partial in self.root.glob(".*.*ing"):  # a creation or deletion left half done
            shutil.rmtree(partial, ignore_errors=True)
        self._shards: dict[str, qe.EdgeShard] = {}

    def _dir(self, collection: str) -> Path:
        # a name from a request never leaves the root, nor names a staging directory
        return self.root / check_collection_name(collection)

    def _shard(self, collection: str) -> qe.EdgeShard:
        shard = self._shards.get(collection)
        if shard is None:
            if not (self._dir(collection) / "collection.json").is_file():
                raise CollectionNotFound(
                    f"no collection {collection!r}; index some files first")
            shard = self._shards[collection] = qe.EdgeShard.load(
                str(self._dir(collection) / "shard"))
        return shard

    # -- collections ---------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir()
                      if (p / "collection.json").is_file())

    def metadata(self, collection: str) -> dict | None:
        path = self._dir(collection) / "collection.json"
        if not path.is_file():
            raise CollectionNotFound(f"no collection {collection!r}; index some files first")
        return json.loads(path.read_text())

    def create(self, collection: str, spec: CollectionSpec) -> None:
        target = self._dir(collection)
        staging = self.root / f".{collection}.creating"
        shutil.rmtree(staging, ignore_errors=True)
        shard = qe.EdgeShard.create(str(staging / "shard"), edge_config(spec))
        for key, kind in BASE_INDEXES.items():
            shard.update(qe.UpdateOperation.create_field_index(key, _SCHEMA[kind]))
        shard.close()
        (staging / "collection.json").write_text(json.dumps(spec.as_metadata()))
        os.replace(staging, target)

    def write_spec(self, collection: str, spec: CollectionSpec) -> None:
        path = self._dir(collection) / "collection.json"
        staging = path.with_name(".collection.json.writing")
        staging.write_text(json.dumps(spec.as_metadata()))
        os.replace(staging, path)

    def delete_collection(self, collection: str) -> bool:
        shard = self._shards.pop(collection, None)
        if shard is not None:
            shard.close()
        target = self._dir(collection)
        if not (target / "collection.json").is_file():
            return False
        doomed = self.root / f".{collection}.deleting"
        os.replace(target, doomed)  # gone at once; the files after
        shutil.rmtree(doomed)
        return True

    # -- points --------------------------------------------------------------------------

    def upsert(self, collection: str, points: list[Point]) -> None:
        if points:
            self._shard(collection).update(qe.UpdateOperation.upsert_points([
                qe.Point(p.id, {k: _to_edge(v) for k, v in p.vectors.items()}, p.payload)
                for p in points]))

    def delete_ids(self, collection: str, ids: list[str]) -> None:
        if ids:
            self._shard(collection).update(qe.UpdateOperation.delete_points(ids))

    def count(self, collection: str) -> int:
        return self._shard(collection).count(qe.CountRequest(exact=True))

    def scroll(self, collection: str, payload: list[str] | None = None) -> Iterator[Point]:
        shard, offset = self._shard(collection), None
        while True:
            records, offset = shard.scroll(qe.ScrollRequest(
                offset=offset, limit=SCROLL_PAGE, with_payload=payload or True,
                with_vector=False))
            yield from map(Point.from_record, records)
            if offset is None:
                return

    def retrieve(self, collection: str, ids: list[str]) -> list[Point]:
        records = self._shard(collection).retrieve(ids, with_payload=True, with_vector=True)
        return [Point.from_record(r) for r in records]

    def query(self, collection: str, query: Nearest, where: Filter | None = None) -> list[Point]:
        found = self._shard(collection).query(qe.QueryRequest(
            limit=query.limit, query=qe.Query.Nearest(_to_edge(query.vector), using=query.using),
            prefetches=_prefetches(query.prefetch, edge_filter(where)),
            filter=edge_filter(where), with_payload=True,
            params=qe.SearchParams(exact=True) if query.exact else None))
        return [Point.from_record(p) for p in found]

    def indexes(self, collection: str) -> dict[str, IndexKind]:
        schema = self._shard(collection).info().payload_schema
        return {key: _KIND[info.data_type] for key, info in schema.items()
                if info.data_type in _KIND}

    def create_index(self, collection: str, key: str, kind: IndexKind) -> None:
        self._shard(collection).update(qe.UpdateOperation.create_field_index(key, _SCHEMA[kind]))

    def optimize(self, collection: str) -> None:
        self._shard(collection).optimize()

    def close(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                shard.flush()
                shard.close()
            self._shards.clear()
            if self._lock_file is not None:
                self._lock_file.close()  # releases the lock
                self._lock_file = None


def _prefetches(stage: Nearest | None, where: qe.Filter | None) -> list[qe.Prefetch] | None:
    if stage is None:
        return None
    return [qe.Prefetch(limit=stage.limit,
                        query=qe.Query.Nearest(_to_edge(stage.vector), using=stage.using),
                        prefetches=_prefetches(stage.prefetch, where), filter=where)]


def _hold_lock(path: Path):
    """An exclusive lock on `path` for this process (StoreBusy when another holds it)."""
    handle = open(path, "a+")  # noqa: SIM115 - held open for the store's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise StoreBusy(
            f"{path.parent} is in use by another polyseek process (pid {holder}); stop it, "
            "or send requests to the server that holds it, or use another --data "
            "directory") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
