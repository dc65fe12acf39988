"""The Qdrant store: one collection per index, recording the model that built it.

Embedded local mode (`QdrantClient(path=...)`) by default; a server or cluster by URL through
the same client and the same calls. Each point holds named vectors:

- ``full``: the model's full dense vector (cosine);
- ``short``: a Matryoshka prefix for prefetch, only when the collection has a short dim;
- ``multi``: token vectors compared by MaxSim, only when the model declares a multi-vector.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from polyseek.errors import PolyseekError

FULL, SHORT, MULTI = "full", "short", "multi"
DEFAULT_DATA_DIR = Path("polyseek-data")
# Prefer a trained Matryoshka dim of at least this size for the prefetch vector.
PREFERRED_SHORT_DIM = 128
THUMBNAIL_SIZE = 320  # longest side of a preview, pixels
THUMBNAIL_NAME = re.compile(r"[0-9a-f]{32}\.jpg")
T = TypeVar("T")


def save_thumbnail(image: Image.Image, directory: Path) -> str:
    """Store a small JPEG preview once, named by its content; returns the file name."""
    preview = image.copy()
    preview.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    preview.save(buffer, format="JPEG", quality=80)
    data = buffer.getvalue()
    name = hashlib.sha256(data).hexdigest()[:32] + ".jpg"
    target = directory / name
    if not target.exists():
        directory.mkdir(parents=True, exist_ok=True)
        staging = target.with_suffix(f".tmp{os.getpid()}")
        staging.write_bytes(data)
        staging.replace(target)
    return name


class ModelMismatch(PolyseekError):
    """The collection was built by another model than the one given."""


class CollectionNotFound(PolyseekError):
    """No collection of that name in the store."""


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection records about the model that built it (Qdrant collection metadata)."""

    model: str  # the model's name, as given on the command line (NAME=SOURCE)
    source: str  # where to load it from again (a directory, bundled package or hub id)
    family: str
    dim: int
    short_dim: int | None  # prefetch vector size, None when there is no short vector
    multivector_dim: int | None  # MaxSim token vector size, None when none

    def as_metadata(self) -> dict[str, Any]:
        return {"polyseek": self.__dict__.copy()}

    @classmethod
    def from_metadata(cls, metadata: dict | None) -> CollectionSpec | None:
        record = (metadata or {}).get("polyseek")
        return cls(**record) if record else None


def model_name(model) -> str:
    """The name a loaded model goes by (its NAME, else its source)."""
    return getattr(model, "name", "") or model.capabilities.extras.get("source", "")


def default_short_dim(matryoshka_dims: Iterable[int], dim: int) -> int | None:
    """The smallest trained Matryoshka dim >= 128 below the full `dim` (else the largest one
    below it); None when untrained.

    A model not trained for truncation gets no short vector: its prefixes carry no recall
    guarantee, and rescoring with the full vector is what the index is for.
    """
    dims = sorted(d for d in matryoshka_dims if d < dim)
    if not dims:
        return None
    return next((d for d in dims if d >= PREFERRED_SHORT_DIM), dims[-1])


def spec_for(model, source: str | None = None, short_dim: int | None = None) -> CollectionSpec:
    """The collection record for `model`; `short_dim` overrides the Matryoshka default
    (0: no short vector)."""
    caps = model.capabilities
    short = short_dim
    if short is None:
        short = default_short_dim(caps.matryoshka_dims, caps.dim)
    elif short == 0:
        short = None
    if short is not None and not 0 < short < caps.dim:
        raise ValueError(f"short_dim must be between 1 and {caps.dim - 1} (got {short})")
    return CollectionSpec(
        model=model_name(model),
        source=source or caps.extras.get("source", "") or model_name(model),
        family=caps.family,
        dim=caps.dim,
        short_dim=short,
        multivector_dim=(caps.multivector_dim or caps.dim) if caps.multivector else None,
    )


@dataclass
class StoredFile:
    """What the store holds for one source file."""

    file_hash: str
    n_chunks: int  # how many points a complete write of this version has
    ids: list[str]


class Store:
    """A Qdrant client (embedded under `data_dir`, or a server at `url`) and our conventions."""

    def __init__(self, data_dir: str | Path | None = None, url: str | None = None):
        self.remote = bool(url)
        path = Path(data_dir or DEFAULT_DATA_DIR)
        path.mkdir(parents=True, exist_ok=True)
        # previews of images and PDF pages live beside the store, also for a Qdrant server
        self.thumbnail_dir = path / "thumbnails"
        self.client = QdrantClient(url=url) if url else QdrantClient(path=str(path))
        self._lock = threading.Lock()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on a worker thread, one call at a time: how concurrent requests share
        the store (embedded Qdrant is single-writer). Keep `fn` short: no model calls."""

        def locked() -> T:
            with self._lock:
                return fn(*args)

        return await asyncio.to_thread(locked)

    def thumbnail_path(self, name: str) -> Path | None:
        """The file of a stored preview; None for an unknown or malformed name."""
        if not THUMBNAIL_NAME.fullmatch(name):
            return None
        path = self.thumbnail_dir / name
        return path if path.is_file() else None

    def close(self) -> None:
        with self._lock:
            self.client.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- collections ---------------------------------------------------------------------

    def spec(self, collection: str) -> CollectionSpec:
        """The model record of an existing collection."""
        if not self.client.collection_exists(collection):
            raise CollectionNotFound(f"no collection {collection!r}; index some files first")
        info = self.client.get_collection(collection)
        spec = CollectionSpec.from_metadata(info.config.metadata)
        if spec is None:
            raise PolyseekError(f"collection {collection!r} was not created by polyseek")
        return spec

    def collections(self) -> dict[str, CollectionSpec | None]:
        """Every collection by name (sorted), with its model record (None if not polyseek's)."""
        names = sorted(c.name for c in self.client.get_collections().collections)
        return {name: CollectionSpec.from_metadata(
            self.client.get_collection(name).config.metadata) for name in names}

    def check_model(self, collection: str, model) -> CollectionSpec:
        """The collection's record, or ModelMismatch when `model` did not build it."""
        spec = self.spec(collection)
        caps = model.capabilities
        if (spec.model, spec.family, spec.dim) != (model_name(model), caps.family, caps.dim):
            raise ModelMismatch(
                f"collection {collection!r} was built with model {spec.model!r} "
                f"({spec.family}, {spec.dim}-d), not {model_name(model)!r} "
                f"({caps.family}, {caps.dim}-d); query it with the same model or re-index "
                "into another collection"
            )
        return spec

    def ensure_collection(self, collection: str, spec: CollectionSpec, model) -> CollectionSpec:
        """Create the collection for `spec`, or check an existing one was built by `model`."""
        if self.client.collection_exists(collection):
            return self.check_model(collection, model)
        vectors = {FULL: qm.VectorParams(size=spec.dim, distance=qm.Distance.COSINE)}
        if spec.short_dim:
            vectors[SHORT] = qm.VectorParams(size=spec.short_dim, distance=qm.Distance.COSINE)
        if spec.multivector_dim:
            vectors[MULTI] = qm.VectorParams(
                size=spec.multivector_dim, distance=qm.Distance.COSINE,
                multivector_config=qm.MultiVectorConfig(
                    comparator=qm.MultiVectorComparator.MAX_SIM),
            )
        self.client.create_collection(collection, vectors_config=vectors,
                                      metadata=spec.as_metadata())
        if self.remote:  # local mode ignores payload indexes (and warns)
            self.client.create_payload_index(collection, "path", qm.PayloadSchemaType.KEYWORD)
        return spec

    # -- points --------------------------------------------------------------------------

    def stored_files(self, collection: str) -> dict[str, dict[str, StoredFile]]:
        """path -> file hash -> what is stored for that version of the file."""
        files: dict[str, dict[str, StoredFile]] = {}
        offset = None
        while True:
            points, offset = self.client.scroll(
                collection, limit=1024, offset=offset,
                with_payload=["path", "file_hash", "n_chunks"], with_vectors=False)
            for point in points:
                p = point.payload or {}
                versions = files.setdefault(p["path"], {})
                stored = versions.setdefault(p["file_hash"],
                                             StoredFile(p["file_hash"], p["n_chunks"], []))
                stored.ids.append(str(point.id))
            if offset is None:
                return files

    def upsert(self, collection: str, points: list[qm.PointStruct]) -> None:
        if points:
            self.client.upsert(collection, points, wait=True)

    def delete_ids(self, collection: str, ids: list[str]) -> None:
        if ids:
            self.client.delete(collection, qm.PointIdsList(points=ids), wait=True)

    def count(self, collection: str) -> int:
        return self.client.count(collection, exact=True).count
