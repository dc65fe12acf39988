"""Derived cache entries (de-quantised checkpoints, int8 exports) record their source, and a
new entry removes the ones it supersedes: the same source's older versions, and entries whose
source is gone (an upgraded package's file)."""

from __future__ import annotations

from pathlib import Path

from polyseek.models.checkpoint import mark_derived, remove_superseded


def entry(root: Path, name: str, source: Path | None) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if source is not None:
        mark_derived(path, source)
    return path


def test_a_new_entry_removes_the_entries_it_supersedes(tmp_path):
    source, other = tmp_path / "model.bin", tmp_path / "other.bin"
    source.write_bytes(b"v2")
    other.write_bytes(b"x")
    gone = tmp_path / "old-package" / "model.bin"
    cache = tmp_path / "cache"
    older = entry(cache, "model-1-100", source)
    from_gone = entry(cache, "model-1-50", gone)
    from_other = entry(cache, "other-1-100", other)
    unmarked = entry(cache, "someone-elses", None)
    staging = entry(cache, "model-2-200.tmp123", source)
    current = entry(cache, "model-2-200", source)

    assert sorted(remove_superseded(current, source)) == sorted([older, from_gone])
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        p.name for p in (current, from_other, unmarked, staging))
    assert remove_superseded(current, source) == []  # nothing left to remove
