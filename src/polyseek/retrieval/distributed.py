"""`index_paths_ray`: `index_paths` with chunking and embedding spread over Ray Data actors.

The driver plans exactly as `index_paths` does (same collection record, same files, same
skip of versions stored whole) and is the only writer: workers read and embed the files that
need work and hand back their points, which the driver upserts file by file, dropping stale
versions after each, then the points of files gone from disk. Point ids and payloads are those
of `index_paths`, so a collection can be built by either and updated by the other.

On a cluster (`address`), the files and the model source must be reachable at the same paths
on every worker node (a shared filesystem).
"""

from __future__ import annotations

import asyncio
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from polyseek.errors import PolyseekError
from polyseek.retrieval.documents import read_chunks
from polyseek.retrieval.encoders import LocalModel
from polyseek.retrieval.ingest import (
    DEFAULT_OVERLAP,
    FileResult,
    IndexRun,
    IndexSummary,
    _progress,
    file_points,
    finish_run,
    plan_file,
    prepare_run,
    write_points,
)
from polyseek.retrieval.store import CollectionSpec, Store

if TYPE_CHECKING:
    import pyarrow as pa

LOCAL_CPUS = 2
DEFAULT_CONCURRENCY: tuple[int, int] = (1, 2)  # an autoscaling pool of 1 to 2 model actors
FILES_PER_BATCH = 8
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


class FileEmbedder:
    """A Ray Data actor: loads the model once, then turns batches of files into points."""

    def __init__(self, source: str, name: str, spec: CollectionSpec, size: int, overlap: int,
                 thumbnail_dir: str):
        from polyseek.models import load_model

        self.encoder = LocalModel(load_model(source, name=name))
        self.spec, self.size, self.overlap = spec, size, overlap
        self.thumbnail_dir = Path(thumbnail_dir)  # shared with the driver (same machine or FS)

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        paths, digests = batch["path"].to_pylist(), batch["digest"].to_pylist()
        blobs, errors = zip(*(self._embed(p, d) for p, d in zip(paths, digests, strict=True)),
                            strict=True)
        return pa.table({"path": paths, "digest": digests,
                         "points": pa.array(blobs, pa.large_binary()), "error": list(errors)})

    def _embed(self, path: str, digest: str) -> tuple[bytes, str]:
        """The file's pickled points, or an error message."""
        try:
            chunks = read_chunks(Path(path), self.encoder, self.size, self.overlap)
            points = asyncio.run(file_points(path, digest, chunks, self.encoder, self.spec,
                                             self.thumbnail_dir))
            return pickle.dumps(points), ""
        except Exception as exc:  # reported per file by the driver, like index_paths does
            return b"", f"{type(exc).__name__}: {exc}"


@contextmanager
def ray_session(address: str | None = None, num_cpus: int = LOCAL_CPUS) -> Iterator[None]:
    """Connect to the cluster at `address`, or start a small local Ray in a temp dir (and stop
    it afterwards). An already initialised Ray is used as it is."""
    try:
        import ray
    except ImportError as exc:
        raise PolyseekError("--ray needs Ray: pip install 'polyseek[scale]'") from exc
    if ray.is_initialized():
        yield
        return
    temp = tempfile.mkdtemp(prefix="polyseek-ray-")
    try:
        if address:
            env = {k: v for k in OFFLINE_VARS if (v := os.environ.get(k))}
            ray.init(address=address, runtime_env={"env_vars": env}, logging_level="warning")
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, _temp_dir=temp,
                     logging_level="warning")
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def embed_remotely(todo: list[tuple[str, str]], run: IndexRun, model_name: str,
                   concurrency: int | tuple[int, int], batch_size: int) -> Iterator[dict]:
    """Rows of (path, digest, pickled points, error) for `todo`, as the actors finish them."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False  # ours is on
    low, high = (concurrency, concurrency) if isinstance(concurrency, int) else concurrency
    rows = [{"path": path, "digest": digest} for path, digest in todo]
    kwargs = {"source": run.source, "name": model_name, "spec": run.spec, "size": run.size,
              "overlap": run.overlap, "thumbnail_dir": str(run.thumbnail_dir)}
    dataset = ray.data.from_items(rows).map_batches(
        FileEmbedder, batch_size=batch_size, batch_format="pyarrow", num_cpus=1,
        compute=ray.data.ActorPoolStrategy(min_size=low, max_size=high),
        fn_constructor_kwargs=kwargs)
    yield from dataset.iter_rows()


def index_paths_ray(
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
    mode: str | None = None,
    address: str | None = None,
    num_cpus: int = LOCAL_CPUS,
    concurrency: int | tuple[int, int] = DEFAULT_CONCURRENCY,
    batch_size: int = FILES_PER_BATCH,
    progress: bool = False,
    on_file: Callable[[FileResult], None] | None = None,
) -> IndexSummary:
    """`index_paths`, embedding on Ray (local with `num_cpus`, or the cluster at `address`).

    model: loaded in the driver to plan; each actor loads it again from `source` (default: the
    model's own source). concurrency: model actors, a number or a (min, max) pool.
    batch_size: files per actor call. Ray starts only when some file needs embedding.
    """
    run = prepare_run(paths, collection, model, store, source, chunk_tokens, overlap, short_dim,
                      language, mode)
    summary = run.summary(collection)
    with _progress(progress) as bar:
        task = bar.add_task("indexing", total=len(run.files), chunks=0)

        def record(result: FileResult) -> None:
            summary.add(result)
            bar.update(task, advance=1, chunks=summary.embedded)
            if on_file:
                on_file(result)

        todo: list[tuple[str, str]] = []
        for path in run.files:
            planned = plan_file(path, run.stored)
            if isinstance(planned, FileResult):
                record(planned)
            elif planned[1]:  # stored whole: only its other versions go
                record(write_points(str(path), planned[0], None, collection, store, run.stored))
            else:
                todo.append((str(path), planned[0]))
        if todo:
            with ray_session(address, num_cpus):
                for row in embed_remotely(todo, run, run.spec.model, concurrency, batch_size):
                    record(_write_row(row, collection, store, run))
    finish_run(run, collection, store, summary)
    return summary


def _write_row(row: dict, collection: str, store: Store, run: IndexRun) -> FileResult:
    """Upsert one file's points from a worker row (or report its error); drop stale versions."""
    if row["error"]:
        return FileResult(row["path"], "error", error=row["error"])
    return write_points(row["path"], row["digest"], pickle.loads(row["points"]), collection,
                        store, run.stored)
