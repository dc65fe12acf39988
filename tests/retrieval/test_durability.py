"""The embedded store under crashes and contention, for real: indexing processes killed with
SIGKILL at several moments, a second process opening a held store, and a data directory in
the layout of an earlier polyseek."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from polyseek.retrieval import StoreBusy, StoreUnavailable, index_paths, open_store
from polyseek.retrieval.documents import file_hash, text_chunks
from polyseek.retrieval.edge_store import EdgeStore
from polyseek.retrieval.encoders import LocalModel
from polyseek.retrieval.ingest import point_id
from polyseek.retrieval.store import CollectionSpec, StoredFile

from support import MINILM, MINILM_SOURCE, child_env, cli

CHUNKING = {"chunk_tokens": 16, "overlap": 4}  # several chunks from a tiny file
CHUNK_ARGS = {"size": 16, "overlap": 4}
EMPTY = StoredFile("", 0, [])
WORDS = ["lava", "basalt", "magma", "crust", "ash", "river", "delta", "bread", "yeast", "dough",
         "oven", "goal", "striker", "league", "planet", "orbit", "comet", "leaf", "sugar",
         "light", "python", "list", "tuple", "index", "garden", "rose", "tulip", "ferry",
         "harbour", "anchor", "violin", "cello", "piano", "glacier", "fjord", "tundra"]

INDEXER = """
import sys
from polyseek import load_model
from polyseek.retrieval import index_paths
from polyseek.retrieval.edge_store import EdgeStore

data, corpus, source, name, size, overlap = sys.argv[1:]
model = load_model(source, name=name)
print("ready", flush=True)
sys.stdin.readline()  # go
with EdgeStore(data) as store:
    print("open", flush=True)
    index_paths([corpus], "docs", model, store=store, chunk_tokens=int(size),
                overlap=int(overlap),
                on_file=lambda r: print(r.status, r.chunks, r.path, flush=True))
print("done", flush=True)
"""

CREATOR = """
import sys
from polyseek.retrieval.edge_store import EdgeStore
from polyseek.retrieval.store import CollectionSpec

spec = CollectionSpec("m", "src", "bert", 8, 4, None)
with EdgeStore(sys.argv[1]) as store:
    for i in range(1000):
        store.create(f"c{i}", spec)
        print(f"created c{i}", flush=True)
"""

HOLDER = """
import sys
from polyseek.retrieval.edge_store import EdgeStore

with EdgeStore(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


FILES = 24


def write_files(folder: Path) -> Path:
    """FILES short notes of three or four chunks each."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(FILES):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(24 + i % 7)]
        (folder / f"f{i:02d}.txt").write_text(f"Note {i}. " + " ".join(words) + ".")
    return folder


class Child:
    """A Python script in a child process, read line by line from its stdout."""

    def __init__(self, script: str, *args: str, tmp: Path):
        self.stderr = tmp / f"stderr-{time.monotonic_ns()}"
        with self.stderr.open("w") as err:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-c", script, *args], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1,
                env=child_env())
        self.lines: list[str] = []

    def readline(self, timeout: float = 120.0) -> str:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            raise AssertionError(f"child said nothing more; stderr:\n{self.stderr.read_text()}")
        self.lines.append(line.rstrip("\n"))
        return self.lines[-1]

    def wait_for(self, prefix: str) -> str:
        while not (line := self.readline()).startswith(prefix):
            pass
        return line

    def send(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=30) == -signal.SIGKILL  # killed, not finished

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


def reported(lines: list[str]) -> dict[str, int]:
    """path -> chunks of each file the killed run reported written."""
    written = {}
    for line in lines:
        status, _, rest = line.partition(" ")
        if status == "indexed":
            chunks, _, path = rest.partition(" ")
            written[path] = int(chunks)
    return written


def expected_ids(corpus: Path, encoder) -> dict[tuple[str, str], set[str]]:
    """(path, content hash) -> the point ids a whole write of that file version has."""
    return {(str(path), file_hash(path)): {
        point_id(str(path), chunk, i)
        for i, chunk in enumerate(text_chunks(path.read_text(), encoder, **CHUNK_ARGS))}
        for path in corpus.glob("*.txt")}


def assert_whole(store: EdgeStore, written: dict[str, str],
                 expected: dict[tuple[str, str], set[str]]) -> dict:
    """Every file version stored whole, but an old one being replaced, which lacks only the
    chunks its new version shares with it (same ids); every file reported written stored
    whole; no staging directory left."""
    assert not [p.name for p in store.root.iterdir() if p.name.startswith(".")]
    if "docs" not in store.names():
        assert not written
        return {}
    stored = store.stored_files("docs")
    for path, versions in stored.items():
        whole = {d for d, v in versions.items() if set(v.ids) == expected[path, d]}
        assert whole and len(versions) <= 2, (path, versions)
        for digest, version in versions.items():
            assert version.n_chunks == len(expected[path, digest]) > 1
            if digest not in whole:  # being replaced
                (new,) = whole
                lost = expected[path, digest] - set(version.ids)
                assert lost and lost <= set(versions[new].ids), path
    for path, digest in written.items():
        assert set(stored[path][digest].ids) == expected[path, digest], path
    return stored


def test_killed_indexing_leaves_whole_files_and_resumes(tmp_path, minilm):
    corpus = write_files(tmp_path / "docs").resolve()  # paths as the indexer records them
    data = tmp_path / "data"
    args = (str(data), str(corpus), MINILM_SOURCE, MINILM, str(CHUNKING["chunk_tokens"]),
            str(CHUNKING["overlap"]))
    encoder = LocalModel(minilm)
    expected: dict[tuple[str, str], set[str]] = {}
    # three indexers load the model side by side, then run one at a time when told to
    children = [Child(INDEXER, *args, tmp=tmp_path) for _ in range(3)]
    try:
        for child in children:
            child.wait_for("ready")

        def run_until(child: Child, files: int) -> dict[str, str]:
            """Let `child` index until it reported `files` files written, then SIGKILL it;
            the content hash of every file it reported written."""
            digests = {str(p): file_hash(p) for p in corpus.glob("*.txt")}
            expected.update(expected_ids(corpus, encoder))
            child.send("go")
            child.wait_for("open")
            while len(reported(child.lines)) < files:
                child.readline()
            child.kill()  # at once: the child goes on writing until the signal lands
            written = reported(child.lines)
            for path, chunks in written.items():
                assert chunks == len(expected[path, digests[path]]), path
            return {path: digests[path] for path in written}

        # killed as soon as the store is open, while the collection is being created
        assert run_until(children[0], 0) == {}
        with EdgeStore(data) as store:
            assert_whole(store, {}, expected)
        # killed after its first file
        first = run_until(children[1], 1)
        assert len(first) == 1
        with EdgeStore(data) as store:
            assert_whole(store, first, expected)
        # files grow (their first chunks stay the same): killed while replacing
        changed = [corpus / "f00.txt", corpus / "f03.txt", corpus / "f05.txt"]
        for path in changed:
            path.write_text(path.read_text() + " Changed: tundra glacier fjord harbour anchor.")
        third = run_until(children[2], 10)
        assert len(third) >= 3 and str(changed[0]) in third
        with EdgeStore(data) as store:
            stored = assert_whole(store, third, expected)
        (corpus / "f02.txt").unlink()  # written, then gone from disk
    finally:
        for child in children:
            child.close()

    with EdgeStore(data) as store:
        # the files whose current version the killed runs stored whole
        whole = sum(set(held.get(file_hash(Path(path)), EMPTY).ids)
                    == expected[path, file_hash(Path(path))]
                    for path, held in stored.items() if Path(path).exists())
        resumed = index_paths([corpus], "docs", minilm, store=store, **CHUNKING)
        assert (resumed.files, resumed.errors) == (FILES - 1, [])
        assert resumed.unchanged == whole and resumed.indexed == FILES - 1 - whole
        assert resumed.removed == 1
        clean = index_paths([corpus], "clean", minilm, store=store, **CHUNKING)
        assert clean.indexed == FILES - 1 and clean.points == resumed.points
        after = {p.id: p.payload for p in store.scroll("docs")}
        assert after == {p.id: p.payload for p in store.scroll("clean")}
        final = store.stored_files("docs")
        assert {Path(p).name for p in final} == {f"f{i:02d}.txt" for i in range(FILES)} - {
            "f02.txt"}
        for path, versions in final.items():
            (digest,) = versions
            assert set(versions[digest].ids) == expected[path, file_hash(Path(path))]


def test_killed_collection_creation_leaves_no_partial_collection(tmp_path):
    data = tmp_path / "data"
    child = Child(CREATOR, str(data), tmp=tmp_path)
    try:
        child.wait_for("created c1")
        child.kill()
    finally:
        child.close()
    created = [line.split()[1] for line in child.lines]
    staging = [p.name for p in (data / "collections").iterdir() if p.name.startswith(".")]
    assert len(staging) <= 1  # the creation the kill interrupted, if any
    with EdgeStore(data) as store:
        names = store.names()
        # the collections reported created, and perhaps the one finished as the signal landed
        assert names[: len(created)] == created and len(names) - len(created) in (0, 1)
        for name in names:
            assert store.spec(name).dim == 8 and store.count(name) == 0
            assert store.indexes(name)["path"] == "keyword"
        assert not [p for p in store.root.iterdir() if p.name.startswith(".")]
        store.create("c1000", CollectionSpec("m", "src", "bert", 8, 4, None))
        assert "c1000" in store.names()


def test_staging_left_by_a_crash_is_cleared_on_open(tmp_path):
    """What a process killed inside `create` or `delete_collection` leaves behind."""
    data = tmp_path / "data"
    spec = CollectionSpec("m", "src", "bert", 8, None, None)
    with EdgeStore(data) as store:
        store.create("a", spec)
        store.create("b", spec)
    root = data / "collections"
    (root / "a").rename(root / ".a.creating")  # complete but never renamed into place
    (root / "b").rename(root / ".b.deleting")  # renamed away, files not yet removed
    with EdgeStore(data) as store:
        assert store.names() == []
        assert list(root.iterdir()) == []
        store.create("a", spec)  # the name is free again
        assert store.names() == ["a"]


# -- one process at a time ----------------------------------------------------------------


def test_a_held_store_is_busy_for_others(tmp_path):
    data = tmp_path / "data"
    with EdgeStore(data) as store:
        store.create("docs", CollectionSpec("m", "src", "bert", 8, None, None))
        # even this process cannot open it twice: every open is a writer
        with pytest.raises(StoreBusy, match=f"pid {os.getpid()}"):
            EdgeStore(data)
    holder = Child(HOLDER, str(data), tmp=tmp_path)
    try:
        holder.wait_for("held")
        with pytest.raises(StoreBusy, match=rf"in use by another polyseek process "
                                            rf"\(pid {holder.proc.pid}\)"):
            open_store(data)
        busy = cli("search", "lava", "--collection", "docs", "--data", str(data))
        assert busy.returncode == 2
        assert busy.stderr.startswith(f"error: {data} is in use by another polyseek process "
                                      f"(pid {holder.proc.pid})"), busy.stderr
        assert "Traceback" not in busy.stderr
        holder.send("")  # let it go
        assert holder.proc.wait(timeout=30) == 0
    finally:
        holder.close()
    with open_store(data) as store:
        assert store.names() == ["docs"]
        assert (data / "polyseek.lock").read_text() == str(os.getpid())


# -- the layout of an earlier polyseek ----------------------------------------------------


def test_old_layout_is_refused_with_a_way_out(tmp_path):
    data = tmp_path / "old"
    client = QdrantClient(path=str(data))
    client.create_collection("docs", vectors_config=qm.VectorParams(
        size=4, distance=qm.Distance.COSINE))
    client.upsert("docs", [qm.PointStruct(id=1, vector=[1, 0, 0, 0], payload={"path": "x"})])
    client.close()
    before = sorted(p.relative_to(data) for p in data.rglob("*"))

    with pytest.raises(StoreUnavailable, match=r"earlier polyseek.*run `polyseek index` again"):
        open_store(data)
    clis = [subprocess.Popen([sys.executable, "-m", "polyseek", *args, "--data", str(data)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=child_env())  # side by side: `index` loads a model first
            for args in (["search", "lava", "--collection", "docs"],
                         ["index", str(tmp_path), "--collection", "docs",
                          "--model", MINILM_SOURCE])]
    for proc in clis:
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 2, stderr
        assert stderr.startswith(f"error: {data} holds collections in the layout of an "
                                 "earlier polyseek"), stderr
        assert "run `polyseek index` again" in stderr and "Traceback" not in stderr
    # the old data is left as it was, to be moved aside
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
    assert not (data / "collections").exists() and not (data / "polyseek.lock").exists()
