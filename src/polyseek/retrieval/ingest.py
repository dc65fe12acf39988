"""Indexing, idempotent and resumable: `index_paths` (files, in process: the CLI) and
`index_documents` (texts, the server's /v1/index).

Point ids are uuid5(path, page, chunk index, chunk hash), and every point carries its file's
content hash and chunk count. A file whose complete current version is stored is skipped
without being read by the model; a new or changed file is embedded and upserted in one call,
then its older versions are deleted; files gone from disk lose their points. An interrupted run
therefore leaves whole files behind, and the next run picks up where it stopped. Models are
reached only through an `Encoder` (polyseek.retrieval.encoders).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from polyseek.errors import PolyseekError
from polyseek.models.base import Capabilities
from polyseek.retrieval.bm25 import DEFAULT_LANGUAGE, document_vector
from polyseek.retrieval.documents import (
    Chunk,
    file_fields,
    file_hash,
    read_chunks,
    survey,
    text_chunks,
)
from polyseek.retrieval.encoders import Embedding, Encoder, LocalModel
from polyseek.retrieval.filters import metadata_indexes
from polyseek.retrieval.options import DEFAULT_MODE, Mode
from polyseek.retrieval.store import (
    FULL,
    MULTI,
    SHORT,
    SPARSE,
    CollectionSpec,
    Point,
    Store,
    StoredFile,
    save_thumbnail,
    spec_for,
)

ID_NAMESPACE = uuid.UUID("5f0b6d1e-8c1a-4c7e-9a43-2b1f4f0c9d70")
DEFAULT_OVERLAP = 32
MAX_CHUNK_TOKENS = 256
SPECIAL_TOKEN_ROOM = 16  # special tokens and a task prompt must fit next to a chunk
EMBED_GROUP = 32  # chunks per embedding request while indexing
_INVISIBLE = str.maketrans("", "", "\x00\ufeff\u200b")  # NUL, BOM, zero-width space


@dataclass
class FileResult:
    path: str
    status: str  # "indexed", "unchanged" or "error"
    chunks: int = 0
    deleted: int = 0  # points of older versions removed
    error: str = ""


@dataclass
class IndexSummary:
    """What one run did; `embedded` counts chunks sent through the model. `files` are those
    the run read (or found unchanged); `skipped` the (path, reason) of files it does not read
    (binaries, images for a text-only model); `errors` those it failed to read."""

    collection: str
    files: int = 0
    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    embedded: int = 0
    deleted_points: int = 0
    points: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def add(self, result: FileResult) -> None:
        self.indexed += result.status == "indexed"
        self.unchanged += result.status == "unchanged"
        if result.status == "indexed":
            self.embedded += result.chunks
        self.deleted_points += result.deleted
        if result.error:
            self.errors.append((result.path, result.error))

    def as_dict(self) -> dict:
        return {**self.__dict__, "errors": [{"path": p, "error": e} for p, e in self.errors],
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped]}


def point_id(path: str, chunk: Chunk, index: int) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{path}\0{chunk.page}\0{index}\0{chunk.content_hash}"))


def has_text(text: str) -> bool:
    """Whether `text` holds anything but whitespace, NULs and byte-order marks."""
    return bool(text.translate(_INVISIBLE).strip())


def default_chunk_tokens(capabilities: Capabilities) -> int:
    return min(MAX_CHUNK_TOKENS, capabilities.max_tokens) - SPECIAL_TOKEN_ROOM


def named_vectors(embedding: Embedding, spec: CollectionSpec) -> dict[str, object]:
    """A point's (or query's) named vectors: full, and short / multi when the collection has
    them. A normalised prefix of the normalised vector is the truncated one."""
    named: dict[str, object] = {FULL: embedding.vector.tolist()}
    if spec.short_dim:
        prefix = embedding.vector[: spec.short_dim]
        named[SHORT] = (prefix / max(float(np.linalg.norm(prefix)), 1e-12)).tolist()
    if spec.multivector_dim:
        named[MULTI] = embedding.tokens.tolist()
    return named


async def embed_chunks(encoder: Encoder, chunks: Sequence[Chunk],
                       spec: CollectionSpec) -> list[dict[str, object]]:
    """Named vectors per chunk; the encoder gets EMBED_GROUP chunks at a time."""
    task = encoder.capabilities.role_task("document")
    vectors: list[dict[str, object]] = []
    for start in range(0, len(chunks), EMBED_GROUP):
        items = [c.image if c.image is not None else c.text
                 for c in chunks[start : start + EMBED_GROUP]]
        embeddings = await encoder.embed(items, task, bool(spec.multivector_dim))
        vectors += [named_vectors(e, spec) for e in embeddings]
    return vectors


def chunk_points(key: str, digest: str, chunks: Sequence[Chunk],
                 vectors: Sequence[dict[str, object]], spec: CollectionSpec, thumbnail_dir: Path,
                 fields: dict | None = None) -> list[Point]:
    """The points of one document version, each with its text's BM25 weights and `fields`
    (a file's extension, size and time, or a document's metadata) in the payload; previews of
    its images or pages go to `thumbnail_dir`."""
    points = []
    for i, (chunk, named) in enumerate(zip(chunks, vectors, strict=True)):
        vectors_of = dict(named)
        if chunk.image is None and (sparse := document_vector(chunk.text, spec.language)):
            vectors_of[SPARSE] = sparse
        payload = {"path": key, "page": chunk.page, "chunk": i, "text": chunk.text,
                   "mime": chunk.mime, "file_hash": digest, "n_chunks": len(chunks),
                   "thumbnail": save_thumbnail(chunk.thumbnail, thumbnail_dir)
                   if chunk.thumbnail else None, **(fields or {})}
        points.append(Point(point_id(key, chunk, i), vectors_of, payload))
    return points


async def file_points(path: str, digest: str, chunks: list[Chunk], encoder: Encoder,
                      spec: CollectionSpec, thumbnail_dir: Path) -> list[Point]:
    """The points of one file version, its chunks embedded by `encoder`."""
    vectors = await embed_chunks(encoder, chunks, spec)
    return chunk_points(path, digest, chunks, vectors, spec, thumbnail_dir,
                        file_fields(Path(path)))


@dataclass
class IndexRun:
    """What a run over `roots` works from: the collection record, chunk size, stored state."""

    roots: list[Path]
    files: list[Path]
    skipped: list[tuple[str, str]]  # (path, reason) of files not read
    spec: CollectionSpec
    source: str  # how workers load the model again
    size: int  # chunk size in tokens
    overlap: int
    stored: dict[str, dict[str, StoredFile]]
    thumbnail_dir: Path

    def summary(self, collection: str) -> IndexSummary:
        """An empty summary of this run: its file count and the skipped files."""
        return IndexSummary(collection, files=len(self.files), skipped=list(self.skipped))


def prepare_run(paths: Iterable[str | Path], collection: str, model, store: Store,
                source: str | None = None, chunk_tokens: int | None = None,
                overlap: int = DEFAULT_OVERLAP, short_dim: int | None = None,
                language: str | None = None, mode: Mode | None = None) -> IndexRun:
    """Create or check the collection, discover the files and read what is stored."""
    roots = [Path(p).resolve() for p in paths]
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise PolyseekError(f"no such file or folder: {', '.join(missing)}")
    wanted = spec_for(model, source, short_dim, language or DEFAULT_LANGUAGE,
                      mode or DEFAULT_MODE)
    spec = store.ensure_collection(collection, wanted, model, language, mode)
    size = chunk_tokens or default_chunk_tokens(model.capabilities)
    files, skipped = survey(roots, model.capabilities.modalities)
    return IndexRun(roots, files, skipped, spec, wanted.source, size, overlap,
                    store.stored_files(collection), store.thumbnail_dir)


def finish_run(run: IndexRun, collection: str, store: Store, summary: IndexSummary) -> None:
    """Drop the points of files gone from disk, build the vector index of what was written,
    and count what the collection holds."""
    summary.removed, deleted = _remove_missing(run.roots, run.files, collection, store,
                                               run.stored)
    summary.deleted_points += deleted
    store.optimize(collection)
    summary.points = store.count(collection)


def index_paths(
    paths: Iterable[str | Path],
    collection: str,
    model,
    *,
    store: Store,
    source: str | None = None,
    chunk_tokens: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    short_dim: int | None = None,
    language: str | None = None,
    mode: Mode | None = None,
    progress: bool = False,
    on_file: Callable[[FileResult], None] | None = None,
) -> IndexSummary:
    """Index the supported files under `paths` into `collection`, embedding with `model`
    (loaded in this process).

    source: how to load `model` again (recorded with the collection; default: its directory).
    short_dim: prefetch vector size; default a trained Matryoshka dim, none for other models;
    0 for none.
    language: BM25 language of a new collection (default English); an existing collection
    must have been built with it.
    mode: the collection's default search mode (a new collection's default: dense).
    on_file: called after each file is written (or skipped, or failed).
    """
    encoder = LocalModel(model)
    run = prepare_run(paths, collection, encoder, store, source, chunk_tokens, overlap,
                      short_dim, language, mode)
    summary = run.summary(collection)
    with _progress(progress) as bar:
        task = bar.add_task("indexing", total=len(run.files), chunks=0)
        for path in run.files:
            result = _index_file(path, collection, encoder, store, run)
            summary.add(result)
            bar.update(task, advance=1, chunks=summary.embedded)
            if on_file:
                on_file(result)
    finish_run(run, collection, store, summary)
    return summary


def plan_file(path: Path,
              stored: dict[str, dict[str, StoredFile]]) -> tuple[str, bool] | FileResult:
    """(content hash, whether that version is stored whole), or an error result if unreadable."""
    try:
        digest = file_hash(path)
    except OSError as exc:
        return FileResult(str(path), "error", error=f"{type(exc).__name__}: {exc}")
    return digest, _is_whole(stored, str(path), digest)


def _is_whole(stored: dict[str, dict[str, StoredFile]], key: str, digest: str) -> bool:
    current = stored.get(key, {}).get(digest)
    return current is not None and len(current.ids) == current.n_chunks


def _index_file(path: Path, collection: str, encoder: Encoder, store: Store,
                run: IndexRun) -> FileResult:
    """Write the current version of one file unless it is complete already; drop old ones.

    Any error reading or embedding the file is reported in the result, never raised.
    """
    planned = plan_file(path, run.stored)
    if isinstance(planned, FileResult):
        return planned
    digest, whole = planned
    points = None
    if not whole:
        try:
            chunks = read_chunks(path, encoder, run.size, run.overlap)
            points = asyncio.run(file_points(str(path), digest, chunks, encoder, run.spec,
                                             store.thumbnail_dir))
        except Exception as exc:  # an unreadable file is reported and skipped
            return FileResult(str(path), "error", error=f"{type(exc).__name__}: {exc}")
    return write_points(str(path), digest, points, collection, store, run.stored)


def write_points(key: str, digest: str, points: list[Point] | None, collection: str,
                 store: Store, stored: dict[str, dict[str, StoredFile]]) -> FileResult:
    """Upsert `points`, version `digest` of `key` (None: that version is stored whole), then
    delete the other versions of `key`."""
    if points is None:
        result = FileResult(key, "unchanged", stored[key][digest].n_chunks)
    else:
        store.upsert(collection, points)
        result = FileResult(key, "indexed", len(points))
    # a chunk the new version shares with an old one (a document whose metadata alone changed:
    # all of them) has the same id: it is the new point now, not stale
    written = {p.id for p in points or ()}
    stale = [i for d, version in stored.get(key, {}).items() if d != digest
             for i in version.ids if i not in written]
    store.delete_ids(collection, stale)
    result.deleted = len(stale)
    return result


@dataclass
class Document:
    """A text given in memory (/v1/index): its id, and metadata to filter on."""

    id: str
    text: str
    metadata: dict | None = None


@dataclass
class _Chunked:
    doc: Document
    digest: str
    chunks: list[Chunk]


def document_digest(doc: Document) -> str:
    """The version of a document: its text and metadata."""
    meta = "\0" + json.dumps(doc.metadata, sort_keys=True) if doc.metadata else ""
    return hashlib.sha256((doc.text + meta).encode()).hexdigest()


async def index_documents(
    documents: Sequence[Document | tuple[str, str]],
    collection: str,
    encoder: Encoder,
    *,
    store: Store,
    source: str | None = None,
    overlap: int = DEFAULT_OVERLAP,
    short_dim: int | None = None,
    language: str | None = None,
    mode: Mode | None = None,
) -> IndexSummary:
    """Index documents (or (id, text) pairs) given in memory, with the same idempotence as
    files: an id whose text and metadata are stored whole is skipped, a changed one replaces
    its old chunks. `short_dim`, `language`, `mode`: as `index_paths`.

    The store is used in short calls (the collection, what is stored, one document's points);
    chunks are embedded between them, about EMBED_GROUP at a time, so concurrent requests keep
    being served. An error stops the run: documents written so far stay, a retry skips them.
    """
    docs = [d if isinstance(d, Document) else Document(*d) for d in documents]
    spec = await store.call(store.ensure_collection, collection,
                            spec_for(encoder, source, short_dim, language or DEFAULT_LANGUAGE,
                                     mode or DEFAULT_MODE),
                            encoder, language, mode)
    wanted_indexes = {k: v for d in docs if d.metadata
                      for k, v in metadata_indexes(d.metadata).items()}
    if wanted_indexes:
        await store.call(store.ensure_indexes, collection, wanted_indexes)
    stored = await store.call(store.stored_files, collection)
    summary = IndexSummary(collection, files=len(docs))
    changed: list[tuple[Document, str]] = []
    for doc in docs:
        if not has_text(doc.text):
            summary.add(FileResult(doc.id, "error", error="no text (only whitespace, NUL or BOM)"))
            continue
        digest = document_digest(doc)
        if _is_whole(stored, doc.id, digest):
            summary.add(await store.call(write_points, doc.id, digest, None, collection, store,
                                         stored))
        else:
            changed.append((doc, digest))
    chunked = await asyncio.to_thread(_chunk_documents, changed, encoder, overlap)
    for group in _groups(chunked, EMBED_GROUP):
        vectors = await embed_chunks(encoder, [c for item in group for c in item.chunks], spec)
        for item in group:
            named, vectors = vectors[: len(item.chunks)], vectors[len(item.chunks) :]
            fields = {"metadata": item.doc.metadata} if item.doc.metadata else None
            points = chunk_points(item.doc.id, item.digest, item.chunks, named, spec,
                                  store.thumbnail_dir, fields)
            summary.add(await store.call(write_points, item.doc.id, item.digest, points,
                                         collection, store, stored))
    await store.call(store.optimize, collection)
    summary.points = await store.call(store.count, collection)
    return summary


def _chunk_documents(documents: list[tuple[Document, str]], encoder: Encoder,
                     overlap: int) -> list[_Chunked]:
    """(document, digest) -> the text's token windows, sized for `encoder`."""
    size = default_chunk_tokens(encoder.capabilities)
    return [_Chunked(doc, digest, text_chunks(doc.text, encoder, size, overlap))
            for doc, digest in documents]


def _groups(documents: list[_Chunked], chunks: int) -> Iterator[list[_Chunked]]:
    """Consecutive documents holding at least `chunks` chunks together (the last group fewer)."""
    group: list[_Chunked] = []
    count = 0
    for doc in documents:
        group.append(doc)
        count += len(doc.chunks)
        if count >= chunks:
            yield group
            group, count = [], 0
    if group:
        yield group


def _remove_missing(roots: list[Path], files: list[Path], collection: str, store: Store,
                    stored: dict[str, dict[str, StoredFile]]) -> tuple[int, int]:
    """Delete points of files under `roots` that are no longer there; (files, points)."""
    present = {str(p) for p in files}
    gone = [path for path in stored if path not in present
            and any(Path(path).is_relative_to(root) for root in roots)]
    ids = [i for path in gone for version in stored[path].values() for i in version.ids]
    store.delete_ids(collection, ids)
    return len(gone), len(ids)


class RateColumn(ProgressColumn):
    """Files per second."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:.1f} files/s", style="progress.data.speed")


def _progress(enabled: bool) -> Progress:
    """A rich progress bar on stderr with counts and rate; silent when not `enabled`."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[chunks]} chunks embedded"), RateColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), disable=not enabled,
    )
