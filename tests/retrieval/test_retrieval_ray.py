"""Indexing on Ray Data: same points as `index_paths`, same idempotence, and the CLI path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_retrieval import polyseek, write_corpus

from polyseek.retrieval import index_paths, open_store

pytest.importorskip("ray", reason="ray is not installed (pip install 'polyseek[scale]')")

from polyseek.retrieval.distributed import index_paths_ray, ray_session  # noqa: E402


def points(store, collection: str) -> list[tuple[str, dict]]:
    return sorted((p.id, p.payload) for p in store.scroll(collection))


def test_ray_index_matches_local_and_tracks_changes(tmp_path: Path, minilm):
    corpus = write_corpus(tmp_path / "docs")
    with open_store(tmp_path / "data") as store, ray_session():  # one local Ray for both runs
        distributed = index_paths_ray([corpus], "ray", minilm, store=store)
        local = index_paths([corpus], "local", minilm, store=store)
        assert distributed.as_dict() | {"collection": "-"} == local.as_dict() | {"collection": "-"}
        assert (distributed.indexed, distributed.embedded, distributed.points) == (5, 6, 6)
        assert points(store, "ray") == points(store, "local")

        (corpus / "football.txt").write_text("Tennis players serve and volley on a grass court.")
        for name in ("bread.md", "broken.pdf", "latin1.txt"):
            (corpus / name).unlink()
        changed = index_paths_ray([corpus], "ray", minilm, store=store)
        assert (changed.indexed, changed.unchanged, changed.removed) == (1, 3, 1)
        assert (changed.embedded, changed.deleted_points, changed.points) == (1, 2, 5)

        again = index_paths_ray([corpus], "ray", minilm, store=store)  # nothing for Ray to do
        assert (again.indexed, again.unchanged, again.embedded, again.deleted_points) == (
            0, 4, 0, 0)
        index_paths([corpus], "local", minilm, store=store)
        assert points(store, "ray") == points(store, "local")


def test_cli_index_with_ray_then_search(tmp_path: Path):
    corpus = write_corpus(tmp_path / "docs")
    data = str(tmp_path / "data")
    indexed = polyseek("index", str(corpus), "--collection", "big", "--data", data, "--ray",
                       "--ray-actors", "1", "--json")
    assert indexed.returncode == 0, indexed.stderr
    summary = json.loads(indexed.stdout)
    assert (summary["indexed"], summary["points"], len(summary["errors"])) == (5, 6, 2)
    assert [Path(s["path"]).name for s in summary["skipped"]] == ["logo.png"]

    found = polyseek("search", "lava from an erupting mountain", "--collection", "big",
                     "--data", data, "--json", "--top-k", "1")
    assert found.returncode == 0, found.stderr
    assert Path(json.loads(found.stdout)["hits"][0]["path"]).name == "volcano.txt"
