"""The store interface: one collection per index, recording the model that built it.

Two adapters hold the same collection layout:

- `EdgeStore` (embedded, the default): a Qdrant Edge shard per collection under `--data`;
- `ServerStore`: a Qdrant server or cluster through `qdrant-client` (`--qdrant-url`).

Each point holds named vectors and a payload:

- ``full``: the model's full dense vector (cosine);
- ``short``: a Matryoshka prefix for prefetch, only when the collection has a short dim;
- ``multi``: token vectors compared by MaxSim, only when the model declares a multi-vector;
- ``bm25``: the text's BM25 term weights (sparse, IDF applied by the engine), text chunks only.

Callers reach the store in short calls through `Store.call`, never while a model runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from polyseek.errors import InvalidInput, PolyseekError
from polyseek.retrieval.bm25 import DEFAULT_LANGUAGE, SparseVector, check_language
from polyseek.retrieval.filters import FIELDS, Filter, IndexKind
from polyseek.retrieval.options import DEFAULT_MODE, MODES, Mode, check_mode

FULL, SHORT, MULTI, SPARSE = "full", "short", "multi", "bm25"
DEFAULT_DATA_DIR = Path("polyseek-data")
# Prefer a trained Matryoshka dim of at least this size for the prefetch vector.
PREFERRED_SHORT_DIM = 128
THUMBNAIL_SIZE = 320  # longest side of a preview, pixels
THUMBNAIL_NAME = re.compile(r"[0-9a-f]{32}\.jpg")
# not starting with '.': no '.' or '..', and no clash with the embedded store's staging names
COLLECTION_NAME = re.compile(r"[\w-][\w.-]{0,127}")
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


class StoreBusy(PolyseekError):
    """Another process holds the embedded store (HTTP 409)."""


class StoreUnavailable(PolyseekError):
    """The store cannot be opened as it is: an older layout, or an unreachable server."""


def check_collection_name(name: str) -> str:
    """`name` if it can name a collection (letters, digits, `_`, `.`, `-`; not starting
    with `.`)."""
    if not COLLECTION_NAME.fullmatch(name):
        raise InvalidInput(
            f"invalid collection name {name!r}: use 1 to 128 letters, digits, '_', '.' or '-' "
            "(not starting with '.')", ("collection",))
    return name


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection records about the model that built it, its BM25 language and the
    search mode a query gets when it names none."""

    model: str  # the model's name, as given on the command line (NAME=SOURCE)
    source: str  # where to load it from again (a directory, bundled package or hub id)
    family: str
    dim: int
    short_dim: int | None  # prefetch vector size, None when there is no short vector
    multivector_dim: int | None  # MaxSim token vector size, None when none
    language: str = DEFAULT_LANGUAGE  # BM25 stemmer and stop words ("multilingual": none)
    mode: Mode = DEFAULT_MODE  # the collection's default search mode

    def as_metadata(self) -> dict[str, Any]:
        return {"polyseek": asdict(self)}

    @classmethod
    def from_metadata(cls, metadata: dict | None) -> CollectionSpec | None:
        record = (metadata or {}).get("polyseek")
        if not record:
            return None
        known = {f.name for f in fields(cls)}
        spec = cls(**{k: v for k, v in record.items() if k in known})
        return spec if spec.mode in MODES else replace(spec, mode=DEFAULT_MODE)


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


def spec_for(model, source: str | None = None, short_dim: int | None = None,
             language: str = DEFAULT_LANGUAGE, mode: Mode = DEFAULT_MODE) -> CollectionSpec:
    """The collection record for `model`; `short_dim` overrides the Matryoshka default
    (0: no short vector)."""
    check_mode(mode)
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
        language=check_language(language),
        mode=mode,
    )


Vector = list[float] | list[list[float]] | SparseVector


@dataclass
class Point:
    """A point as the store holds it; `score` is set on query results."""

    id: str
    vectors: dict[str, Vector] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)
    score: float = 0.0

    @classmethod
    def from_record(cls, record) -> Point:
        """A point from either engine's record or scored point."""
        vectors = {name: SparseVector(list(v.indices), list(v.values))
                   if hasattr(v, "indices") else v for name, v in (record.vector or {}).items()}
        return cls(str(record.id), vectors, dict(record.payload or {}),
                   float(getattr(record, "score", 0.0)))


@dataclass
class Nearest:
    """A nearest-neighbour query on one named vector; `prefetch` narrows the candidates
    first (Qdrant's prefetch), `exact` skips the HNSW index."""

    using: str
    vector: Vector
    limit: int
    prefetch: Nearest | None = None
    exact: bool = False


@dataclass
class StoredFile:
    """What the store holds for one source file."""

    file_hash: str
    n_chunks: int  # how many points a complete write of this version has
    ids: list[str]


# payload indexes every collection gets (metadata fields get theirs as documents bring them)
BASE_INDEXES: dict[str, IndexKind] = FIELDS


class Store(ABC):
    """One store and our conventions on it; adapters implement the abstract methods."""

    remote: bool
    thumbnail_dir: Path  # previews of images and PDF pages, beside the data, for both adapters

    def __init__(self, data_dir: str | Path | None):
        path = Path(data_dir or DEFAULT_DATA_DIR)
        path.mkdir(parents=True, exist_ok=True)
        self.data_dir = path
        self.thumbnail_dir = path / "thumbnails"
        self._lock = threading.Lock()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on a worker thread, one call at a time: how concurrent requests share
        the store. Keep `fn` short: no model calls."""

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

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what an adapter implements ------------------------------------------------------

    @abstractmethod
    def names(self) -> list[str]:
        """Every collection's name, sorted."""

    @abstractmethod
    def metadata(self, collection: str) -> dict | None:
        """The collection's metadata; raises CollectionNotFound."""

    @abstractmethod
    def create(self, collection: str, spec: CollectionSpec) -> None:
        """Create the collection for `spec`, with BASE_INDEXES, atomically."""

    @abstractmethod
    def write_spec(self, collection: str, spec: CollectionSpec) -> None:
        """Replace the existing collection's record with `spec`, atomically."""

    @abstractmethod
    def delete_collection(self, collection: str) -> bool:
        """Drop the collection; False when there was none."""

    @abstractmethod
    def upsert(self, collection: str, points: list[Point]) -> None:
        """Write `points`; once this returns they survive the process being killed."""

    @abstractmethod
    def delete_ids(self, collection: str, ids: list[str]) -> None: ...

    @abstractmethod
    def count(self, collection: str) -> int: ...

    @abstractmethod
    def scroll(self, collection: str, payload: list[str] | None = None) -> Iterator[Point]:
        """Every point without its vectors, with the `payload` fields (default: all)."""

    @abstractmethod
    def retrieve(self, collection: str, ids: list[str]) -> list[Point]:
        """The points with these ids (those that exist), vectors and payload included."""

    @abstractmethod
    def query(self, collection: str, query: Nearest, where: Filter | None = None) -> list[Point]:
        """The best points for `query`, best first, payload included; `where` applies to
        every stage, inside the engine."""

    @abstractmethod
    def indexes(self, collection: str) -> dict[str, IndexKind]:
        """The payload fields that have an index, with its kind."""

    @abstractmethod
    def create_index(self, collection: str, key: str, kind: IndexKind) -> None: ...

    @abstractmethod
    def optimize(self, collection: str) -> None:
        """Build the vector indexes of what was written (the engine's HNSW)."""

    @abstractmethod
    def close(self) -> None: ...

    # -- our conventions -----------------------------------------------------------------

    def spec(self, collection: str) -> CollectionSpec:
        """The model record of an existing collection."""
        spec = CollectionSpec.from_metadata(self.metadata(collection))
        if spec is None:
            raise PolyseekError(f"collection {collection!r} was not created by polyseek")
        return spec

    def collections(self) -> dict[str, CollectionSpec | None]:
        """Every collection by name (sorted), with its model record (None if not polyseek's)."""
        return {name: CollectionSpec.from_metadata(self.metadata(name)) for name in self.names()}

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

    def ensure_collection(self, collection: str, spec: CollectionSpec, model,
                          language: str | None = None,
                          mode: Mode | None = None) -> CollectionSpec:
        """Create the collection for `spec`, or check an existing one was built by `model`
        (and, when `language` is given, with that BM25 language); a `mode` given becomes its
        default search mode."""
        check_collection_name(collection)
        if collection not in self.names():
            self.create(collection, spec)
            return spec
        existing = self.check_model(collection, model)
        self.ensure_indexes(collection, BASE_INDEXES)  # a server create may have stopped short
        if language is not None and existing.language != language:
            raise ModelMismatch(
                f"collection {collection!r} was built with BM25 language "
                f"{existing.language!r}, not {language!r}; index into another collection")
        if mode is not None and existing.mode != mode:
            existing = replace(existing, mode=mode)
            self.write_spec(collection, existing)
        return existing

    def ensure_indexes(self, collection: str, wanted: dict[str, IndexKind]) -> None:
        """Create the payload indexes in `wanted` that the collection does not have yet."""
        have = self.indexes(collection)
        for key, kind in wanted.items():
            if key not in have:
                self.create_index(collection, key, kind)

    def stored_files(self, collection: str) -> dict[str, dict[str, StoredFile]]:
        """path -> file hash -> what is stored for that version of the file."""
        files: dict[str, dict[str, StoredFile]] = {}
        for point in self.scroll(collection, ["path", "file_hash", "n_chunks"]):
            p = point.payload
            versions = files.setdefault(p["path"], {})
            stored = versions.setdefault(p["file_hash"],
                                         StoredFile(p["file_hash"], p["n_chunks"], []))
            stored.ids.append(point.id)
        return files


def open_store(data_dir: str | Path | None = None, url: str | None = None) -> Store:
    """The embedded store under `data_dir`, or the Qdrant server at `url`."""
    if url:
        from polyseek.retrieval.server_store import ServerStore

        return ServerStore.connect(url, data_dir)
    from polyseek.retrieval.edge_store import EdgeStore

    try:
        return EdgeStore(data_dir)
    except OSError as exc:  # unwritable, not a directory, ...
        raise StoreUnavailable(f"cannot open the data directory {data_dir or DEFAULT_DATA_DIR}: "
                               f"{exc.strerror or exc}") from exc
