"""`push_collection`: copy a collection from one store to another (the embedded store to a
Qdrant server, for a user who outgrows one machine).

File by file, like ingestion: a file version the target holds whole is skipped, a missing or
changed one is copied whole and its other versions on the target are dropped, and files gone
from the source are dropped from the target. A push is therefore idempotent, an interrupted one
resumes where it stopped, and pushing again after re-indexing sends only what changed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from polyseek.retrieval.store import ModelMismatch, Store, StoredFile

BATCH = 256  # points per retrieve / upsert call


@dataclass
class PushSummary:
    collection: str
    files: int = 0
    copied: int = 0
    unchanged: int = 0
    removed: int = 0
    points: int = 0  # on the target, after the push

    def as_dict(self) -> dict:
        return asdict(self)


def push_collection(source: Store, target: Store, collection: str) -> PushSummary:
    """Make `collection` on `target` hold what it holds on `source`."""
    spec = source.spec(collection)
    if collection in target.names():
        if target.spec(collection) != spec:
            raise ModelMismatch(f"the target's collection {collection!r} was built otherwise "
                                f"({target.spec(collection)}); delete it or push under "
                                "another name")
    else:
        target.create(collection, spec)
    target.ensure_indexes(collection, source.indexes(collection))
    have, want = target.stored_files(collection), source.stored_files(collection)
    summary = PushSummary(collection, files=len(want))
    for path, versions in want.items():
        there = have.get(path, {})
        # an old version's chunk that a current one shares has the same id: keep it
        current = {i for version in versions.values() for i in version.ids}
        stale = [i for digest, old in there.items() if digest not in versions
                 for i in old.ids if i not in current]
        for digest, stored in versions.items():
            if _holds(there.get(digest), stored):
                summary.unchanged += 1
                continue
            for start in range(0, len(stored.ids), BATCH):
                target.upsert(collection, source.retrieve(collection,
                                                          stored.ids[start : start + BATCH]))
            summary.copied += 1
        target.delete_ids(collection, stale)
    gone = [i for path in have if path not in want for v in have[path].values() for i in v.ids]
    target.delete_ids(collection, gone)
    summary.removed = len({path for path in have if path not in want})
    target.optimize(collection)
    summary.points = target.count(collection)
    return summary


def _holds(there: StoredFile | None, stored: StoredFile) -> bool:
    return there is not None and set(there.ids) == set(stored.ids)
