"""The store layer through its one interface: the embedded `EdgeStore` and the `ServerStore`
(over qdrant-client's in-memory mode, which implements the server API), on hand-made points;
push between them; the collections CLI."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient
from test_retrieval import write_corpus

from polyseek.errors import InvalidInput
from polyseek.retrieval import Document, index_documents, index_paths
from polyseek.retrieval.bm25 import document_vector, query_vector
from polyseek.retrieval.edge_store import EdgeStore
from polyseek.retrieval.encoders import LocalModel
from polyseek.retrieval.filters import FIELDS, Condition, Range, parse_condition
from polyseek.retrieval.push import push_collection
from polyseek.retrieval.search import search
from polyseek.retrieval.server_store import ServerStore
from polyseek.retrieval.store import (
    FULL,
    MULTI,
    SHORT,
    SPARSE,
    CollectionNotFound,
    CollectionSpec,
    ModelMismatch,
    Nearest,
    Point,
    check_collection_name,
)

from support import cli

# qdrant-client's in-memory mode always searches exactly, and says so when asked to
pytestmark = pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning")

SPEC = CollectionSpec(model="hand", source="hand-made", family="test", dim=4, short_dim=2,
                      multivector_dim=3)
# name: (path, extension, mime, size, modified, page, text, metadata)
ROWS = {
    "volcano": ("/docs/a/volcano.txt", ".txt", "text/plain", 120, 1700000000.5, None,
                "Lava flows from an erupting volcano.",
                {"lang": "en", "year": 2020, "draft": True, "tags": ["geo", "fire"]}),
    "bread": ("/docs/a/bread.md", ".md", "text/markdown", 300, 1700000100.0, None,
              "Bake the bread loaf in a hot oven.",
              {"lang": "en", "year": 2021, "draft": False, "tags": ["food"]}),
    "mars": ("/docs/b/report.pdf", ".pdf", "application/pdf", 5000, 1700000200.25, 1,
             "Olympus Mons on Mars is the tallest volcano of the solar system.",
             {"lang": "fr", "year": 2020, "draft": False, "tags": ["space", "geo"]}),
    "plants": ("/docs/b/report.pdf", ".pdf", "application/pdf", 5000, 1700000200.25, 2,
               "Plants turn sunlight into sugar.",
               {"lang": "fr", "year": 2019, "draft": True, "tags": ["bio"]}),
    "ash": ("/docs/b/notes.txt", ".txt", "text/plain", 50, 1700000300.0, None,
            "Volcano ash, lava rock and more lava.", None),
    "photo": ("/docs/c/photo.png", ".png", "image/png", 8000, 1700000400.0, None, "", None),
    "python": ("/docs/ab/python.md", ".md", "text/markdown", 99, 1700000500.0, None,
               "Append an item to a Python list.", {"lang": "en", "year": 2022}),
    "deep": ("/docs/a/sub/deep.txt", ".txt", "text/plain", 700, 1700000600.75, None,
             "Deep under the volcano the magma waits.", {"lang": "de", "year": 2018}),
}
IDS = {name: str(uuid.uuid5(uuid.NAMESPACE_URL, name)) for name in ROWS}
NAMES = {i: name for name, i in IDS.items()}


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def hand_points() -> list[Point]:
    """A point per row: random (seeded) unit vectors, BM25 weights for rows with text."""
    rng = np.random.default_rng(7)
    points = []
    for name, (path, ext, mime, size, modified, page, text, meta) in ROWS.items():
        full = unit(rng.normal(size=4)).astype(np.float32)
        vectors = {FULL: full.tolist(), SHORT: unit(full[:2]).tolist(),
                   MULTI: unit(rng.normal(size=(int(rng.integers(1, 4)), 3))).tolist()}
        if text:
            vectors[SPARSE] = document_vector(text, "english")
        payload = {"path": path, "extension": ext, "mime": mime, "size": size,
                   "modified": modified, "page": page, "chunk": 0, "text": text,
                   "file_hash": f"h-{path}", "n_chunks": 2 if path.endswith(".pdf") else 1}
        if meta:
            payload["metadata"] = meta
        points.append(Point(IDS[name], vectors, payload))
    return points


POINTS = hand_points()
BY_NAME = {NAMES[p.id]: p for p in POINTS}


@pytest.fixture(params=["edge", "server"])
def store(request, tmp_path):
    if request.param == "edge":
        s = EdgeStore(tmp_path / "data")
    else:
        s = ServerStore(QdrantClient(":memory:"), tmp_path / "data")
    with s:
        yield s


MORE_INDEXES = {"metadata.lang": "keyword", "metadata.year": "integer",
                "metadata.draft": "bool", "metadata.tags": "keyword"}


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """Both adapters holding the same points (read-only: for queries), as collection "c",
    and as "ix" with payload indexes on the metadata fields too."""
    edge = EdgeStore(tmp_path_factory.mktemp("edge"))
    server = ServerStore(QdrantClient(":memory:"), tmp_path_factory.mktemp("server"))
    for s in (edge, server):
        for name in ("c", "ix"):
            s.create(name, SPEC)
            s.upsert(name, POINTS)
        s.ensure_indexes("ix", MORE_INDEXES)
    yield edge, server
    edge.close()
    server.close()


@pytest.fixture(params=["edge", "server"])
def filled(request, both):
    return both[0] if request.param == "edge" else both[1]


def names(points: list[Point]) -> list[str]:
    return [NAMES[p.id] for p in points]


def ranked(scores: dict[str, float], among=None) -> list[str]:
    keep = scores if among is None else {n: scores[n] for n in among}
    return sorted(keep, key=lambda n: -keep[n])


def cosine(name: str, vector: str, query) -> float:
    return float(np.dot(BY_NAME[name].vectors[vector], query))


def maxsim(name: str, query: np.ndarray) -> float:
    tokens = np.asarray(BY_NAME[name].vectors[MULTI])
    return float((query @ tokens.T).max(axis=1).sum())


QUERY_FULL = unit(np.array([0.3, -0.5, 0.7, 0.2]))
QUERY_SHORT = unit(QUERY_FULL[:2])
QUERY_MULTI = unit(np.array([[0.2, 0.9, -0.1], [0.6, -0.3, 0.5]]))


def test_a_record_without_a_valid_mode_searches_dense():
    """Collections written before the default search mode (or by hand) read as dense."""
    record = SPEC.as_metadata()
    del record["polyseek"]["mode"]
    assert CollectionSpec.from_metadata(record) == SPEC
    record["polyseek"]["mode"] = "fuzzy"
    assert CollectionSpec.from_metadata(record).mode == "dense"


def test_collection_lifecycle_and_record(store):
    assert store.names() == [] and store.collections() == {}
    with pytest.raises(CollectionNotFound, match="no collection 'c'"):
        store.spec("c")
    store.create("c", SPEC)
    store.create("other", CollectionSpec("m2", "src", "bert", 8, None, None, "multilingual"))
    assert store.names() == ["c", "other"]
    assert store.metadata("c") == {"polyseek": {
        "model": "hand", "source": "hand-made", "family": "test", "dim": 4, "short_dim": 2,
        "multivector_dim": 3, "language": "english", "mode": "dense"}}
    assert store.spec("c") == SPEC and store.spec("other").language == "multilingual"
    assert store.collections() == {"c": SPEC, "other": store.spec("other")}
    store.write_spec("c", replace(SPEC, mode="hybrid"))  # a new default search mode
    assert store.spec("c") == replace(SPEC, mode="hybrid")
    assert store.count("c") == 0 and list(store.scroll("c")) == []
    assert store.delete_collection("c") is True
    assert store.delete_collection("c") is False
    assert store.names() == ["other"]
    with pytest.raises(CollectionNotFound):
        store.metadata("c")


def test_upsert_count_scroll_retrieve_delete(store):
    store.create("c", SPEC)
    store.upsert("c", POINTS)
    assert store.count("c") == len(POINTS)
    scrolled = {p.id: p for p in store.scroll("c")}
    assert scrolled.keys() == set(IDS.values())
    assert all(p.vectors == {} for p in scrolled.values())  # scroll never returns vectors
    assert {i: p.payload for i, p in scrolled.items()} == {p.id: p.payload for p in POINTS}
    narrow = list(store.scroll("c", ["path", "n_chunks"]))
    assert all(set(p.payload) == {"path", "n_chunks"} for p in narrow)

    wanted = [IDS["mars"], IDS["photo"], str(uuid.uuid4())]  # an unknown id is left out
    back = {p.id: p for p in store.retrieve("c", wanted)}
    assert back.keys() == {IDS["mars"], IDS["photo"]}
    for name in ("mars", "photo"):
        got, sent = back[IDS[name]], BY_NAME[name]
        assert got.payload == sent.payload
        for key in (FULL, SHORT):
            np.testing.assert_allclose(got.vectors[key], sent.vectors[key], atol=1e-6)
        np.testing.assert_allclose(got.vectors[MULTI], sent.vectors[MULTI], atol=1e-6)
    sparse, sent = back[IDS["mars"]].vectors[SPARSE], BY_NAME["mars"].vectors[SPARSE]
    assert dict(zip(sparse.indices, sparse.values, strict=True)) == pytest.approx(
        dict(zip(sent.indices, sent.values, strict=True)))
    assert SPARSE not in back[IDS["photo"]].vectors  # an image chunk has no terms

    changed = Point(IDS["ash"], BY_NAME["ash"].vectors, {**BY_NAME["ash"].payload, "size": 51})
    store.upsert("c", [changed])  # same id: replaced, not added
    assert store.count("c") == len(POINTS)
    assert store.retrieve("c", [IDS["ash"]])[0].payload["size"] == 51

    store.delete_ids("c", [IDS["mars"], IDS["plants"]])
    store.delete_ids("c", [])
    assert store.count("c") == len(POINTS) - 2
    assert store.retrieve("c", [IDS["mars"]]) == []
    assert store.stored_files("c")["/docs/a/volcano.txt"]["h-/docs/a/volcano.txt"].ids == [
        IDS["volcano"]]
    assert "/docs/b/report.pdf" not in store.stored_files("c")


def test_dense_query_and_prefetch_chain(filled):
    full = {n: cosine(n, FULL, QUERY_FULL) for n in ROWS}
    found = filled.query("c", Nearest(FULL, QUERY_FULL.tolist(), 5))
    assert names(found) == ranked(full)[:5]
    assert [p.score for p in found] == pytest.approx([full[n] for n in names(found)], abs=1e-5)
    assert found[0].payload == BY_NAME[names(found)[0]].payload
    exact = filled.query("c", Nearest(FULL, QUERY_FULL.tolist(), 5, exact=True))
    assert names(exact) == names(found)

    # short (6 candidates) -> full (4) -> MaxSim (3): each stage ranks only what the last kept
    short = {n: cosine(n, SHORT, QUERY_SHORT) for n in ROWS}
    kept = ranked(short)[:6]
    kept = ranked(full, kept)[:4]
    multi = {n: maxsim(n, QUERY_MULTI) for n in kept}
    chain = Nearest(MULTI, QUERY_MULTI.tolist(), 3, prefetch=Nearest(
        FULL, QUERY_FULL.tolist(), 4, prefetch=Nearest(SHORT, QUERY_SHORT.tolist(), 6)))
    found = filled.query("c", chain)
    assert names(found) == ranked(multi)[:3]
    assert [p.score for p in found] == pytest.approx([multi[n] for n in names(found)], abs=1e-5)
    # the chain is not the same as MaxSim over everything, or this test would prove nothing
    everything = {n: maxsim(n, QUERY_MULTI) for n in ROWS}
    assert names(found) != ranked(everything)[:3]
    assert names(filled.query("c", Nearest(MULTI, QUERY_MULTI.tolist(), 3))) == ranked(
        everything)[:3]


def bm25_scores(query: str) -> dict[str, float]:
    """What the engine computes: sum over query terms of the document's term weight times
    the term's IDF among the points that have a BM25 vector."""
    terms = query_vector(query, "english")
    docs = {n: dict(zip(p.vectors[SPARSE].indices, p.vectors[SPARSE].values, strict=True))
            for n, p in BY_NAME.items() if SPARSE in p.vectors}
    scores = {}
    for name, weights in docs.items():
        score = 0.0
        for term in terms.indices:
            if term in weights:
                df = sum(term in w for w in docs.values())
                idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
                score += weights[term] * idf
        if score:
            scores[name] = score
    return scores


def test_sparse_query(filled):
    expected = bm25_scores("lava from the volcano")
    assert set(expected) == {"volcano", "mars", "ash", "deep"}
    found = filled.query("c", Nearest(SPARSE, query_vector("lava from the volcano", "english"),
                                      10))
    assert names(found) == ranked(expected)
    assert [p.score for p in found] == pytest.approx([expected[n] for n in names(found)],
                                                     rel=1e-4)
    assert filled.query("c", Nearest(SPARSE, query_vector("sourdough", "english"), 10)) == []


def rows_where(test) -> set[str]:
    return {n for n, p in BY_NAME.items() if test(p.payload)}


def meta(p: dict, key: str):
    return (p.get("metadata") or {}).get(key)


FILTERS = [  # (conditions, which rows pass)
    ([Condition("extension", match=".txt")], lambda p: p["extension"] == ".txt"),
    ([Condition("page", match=2)], lambda p: p["page"] == 2),
    ([Condition("metadata.draft", match=True)], lambda p: meta(p, "draft") is True),
    ([Condition("metadata.draft", match=False)], lambda p: meta(p, "draft") is False),
    ([Condition("modified", match=1700000200.25)], lambda p: p["modified"] == 1700000200.25),
    ([Condition("extension", any=(".md", ".pdf"))],
     lambda p: p["extension"] in (".md", ".pdf")),
    ([Condition("page", any=(1, 2))], lambda p: p["page"] in (1, 2)),
    ([Condition("metadata.tags", any=("geo",))], lambda p: "geo" in (meta(p, "tags") or [])),
    ([Condition("size", range=Range(gte=100, lt=5000))], lambda p: 100 <= p["size"] < 5000),
    ([Condition("modified", range=Range(gt=1700000200.25))],
     lambda p: p["modified"] > 1700000200.25),
    ([Condition("path", prefix="/docs/a/")], lambda p: p["path"].startswith("/docs/a/")),
    ([Condition("path", prefix="/docs/a")], lambda p: p["path"].startswith("/docs/a")),
    ([Condition("metadata.lang", match="fr")], lambda p: meta(p, "lang") == "fr"),
    ([Condition("metadata.year", match=2020)], lambda p: meta(p, "year") == 2020),
    ([parse_condition("metadata.year>=2020"), parse_condition("extension=.md,.txt")],
     lambda p: (meta(p, "year") or 0) >= 2020 and p["extension"] in (".md", ".txt")),
    ([Condition("mime", match="text/plain"), Condition("size", range=Range(lte=50))],
     lambda p: p["mime"] == "text/plain" and p["size"] <= 50),
]


@pytest.mark.parametrize("collection", ["c", "ix"], ids=["base-indexes", "more-indexes"])
def test_every_filter_kind(filled, collection):
    full = {n: cosine(n, FULL, QUERY_FULL) for n in ROWS}
    for where, test in FILTERS:
        expected = rows_where(test)
        assert 0 < len(expected) < len(ROWS), where  # every filter drops some and keeps some
        found = filled.query(collection, Nearest(FULL, QUERY_FULL.tolist(), 20), where)
        assert names(found) == ranked(full, expected), where
        sparse = filled.query(collection, Nearest(SPARSE, query_vector("volcano", "english"),
                                                  20), where)
        assert set(names(sparse)) == expected & set(bm25_scores("volcano")), where


def test_filter_applies_to_every_prefetch_stage(filled):
    where = [Condition("extension", match=".txt")]
    txt = rows_where(lambda p: p["extension"] == ".txt")
    short = {n: cosine(n, SHORT, QUERY_SHORT) for n in ROWS}
    full = {n: cosine(n, FULL, QUERY_FULL) for n in ROWS}
    chain = Nearest(FULL, QUERY_FULL.tolist(), 2,
                    prefetch=Nearest(SHORT, QUERY_SHORT.tolist(), 2))
    found = filled.query("c", chain, where)
    assert names(found) == ranked(full, ranked(short, txt)[:2])
    # filtering only the last stage would keep fewer or other points
    assert set(ranked(short)[:2]) != set(ranked(short, txt)[:2])


def test_payload_indexes(filled):
    if isinstance(filled, EdgeStore):
        assert filled.indexes("c") == FIELDS  # every collection gets the file fields' indexes
        assert filled.indexes("ix") == {**FIELDS, **MORE_INDEXES}
        filled.ensure_indexes("ix", {**MORE_INDEXES, "path": "keyword"})  # nothing new
        assert filled.indexes("ix") == {**FIELDS, **MORE_INDEXES}
    else:  # qdrant-client's in-memory mode has no payload indexes: nothing is created
        assert filled.indexes("c") == filled.indexes("ix") == {}


def test_edge_store_survives_reopening(tmp_path):
    with EdgeStore(tmp_path) as first:
        first.create("c", SPEC)
        first.upsert("c", POINTS)
        first.ensure_indexes("c", {"metadata.lang": "keyword"})
        first.optimize("c")
    with EdgeStore(tmp_path) as again:
        assert again.names() == ["c"] and again.spec("c") == SPEC
        assert again.count("c") == len(POINTS)
        assert again.indexes("c")["metadata.lang"] == "keyword"
        found = again.query("c", Nearest(FULL, QUERY_FULL.tolist(), 3))
        assert names(found) == ranked({n: cosine(n, FULL, QUERY_FULL) for n in ROWS})[:3]


QUERIES = [
    Nearest(FULL, QUERY_FULL.tolist(), 8),
    Nearest(FULL, QUERY_FULL.tolist(), 8, exact=True),
    Nearest(SHORT, QUERY_SHORT.tolist(), 4),
    Nearest(MULTI, QUERY_MULTI.tolist(), 3, prefetch=Nearest(
        FULL, QUERY_FULL.tolist(), 5, prefetch=Nearest(SHORT, QUERY_SHORT.tolist(), 6))),
    Nearest(SPARSE, query_vector("volcano lava", "english"), 8),
    Nearest(SPARSE, query_vector("bread oven python list", "english"), 8),
]


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.using + "-exact" * q.exact
                         + "-chain" * (q.prefetch is not None))
@pytest.mark.parametrize("where", [None, *(w for w, _ in FILTERS[::3])],
                         ids=lambda w: "none" if w is None else w[0].key)
def test_adapters_agree(both, query, where):
    edge, server = both
    a, b = edge.query("c", query, where), server.query("c", query, where)
    assert names(a) == names(b)
    assert [p.score for p in a] == pytest.approx([p.score for p in b], rel=1e-4, abs=1e-5)
    assert [p.payload for p in a] == [p.payload for p in b]


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "a b", "x" * 129, ".hidden",
                                  ".x.creating"])
def test_collection_names_refused(store, name):
    with pytest.raises(InvalidInput, match="invalid collection name"):
        check_collection_name(name)
    with pytest.raises(InvalidInput):
        store.ensure_collection(name, SPEC, model=None)
    assert store.names() == []


def test_collection_names_accepted():
    for name in ("docs", "a.b-c_1", "x" * 128, "Ünïcode", "v1.2"):
        assert check_collection_name(name) == name


def test_edge_store_refuses_names_outside_its_root(tmp_path):
    """A name from a request (/v1/search's collection, the CLI) never reaches another
    directory: a collection of a neighbouring data directory stays out of reach."""
    with EdgeStore(tmp_path / "other") as other:
        other.create("victim", SPEC)
    with EdgeStore(tmp_path / "data") as store:
        sneaky = "../../other/collections/victim"
        for call in (store.metadata, store.delete_collection, store.count):
            with pytest.raises(InvalidInput):
                call(sneaky)
    with EdgeStore(tmp_path / "other") as other:
        assert other.names() == ["victim"]


# -- re-indexing and push ------------------------------------------------------------------


SMALL_CHUNKS = {"chunk_tokens": 16, "overlap": 4}  # several chunks from a short text


def test_a_grown_document_keeps_the_chunks_it_shares(tmp_path, minilm):
    """A file (or document) whose end changes keeps its first chunks: same text, same point ids.
    They are the new version's points: dropping the old version must spare them."""
    text = ("Volcanoes form where magma rises through the crust. An eruption throws lava, ash "
            "and gas into the air; lava flows cool into basalt rock.")
    grown = text.replace("basalt rock.", "black basalt rock; some volcanoes sleep for centuries "
                         "before they wake again.")  # the first chunk stays, the last changes
    (tmp_path / "docs").mkdir()
    path = tmp_path / "docs" / "volcano.txt"
    with EdgeStore(tmp_path / "data") as store:
        path.write_text(text)
        index_paths([path], "files", minilm, store=store, **SMALL_CHUNKS)
        before = {p.id for p in store.scroll("files")}
        path.write_text(grown)
        again = index_paths([path], "files", minilm, store=store, **SMALL_CHUNKS)
        after = {p.id for p in store.scroll("files")}
        index_paths([path], "clean", minilm, store=store, **SMALL_CHUNKS)
        assert after == {p.id for p in store.scroll("clean")}
        assert before & after and before - after  # some chunks shared, some not
        assert again.deleted_points == len(before - after)

        long = " ".join(f"{w}{i}" for i in range(70) for w in ("lava", "ash"))  # 2 chunks
        encoder = LocalModel(minilm)
        for collection, doc in (("docs", long), ("docs", long + " basalt"),
                                ("docs-clean", long + " basalt")):
            asyncio.run(index_documents([Document("d1", doc)], collection, encoder,
                                        store=store))
        ids = {p.id for p in store.scroll("docs")}
        assert len(ids) > 1 and ids == {p.id for p in store.scroll("docs-clean")}


@pytest.fixture()
def pushed(tmp_path, minilm):
    corpus = write_corpus(tmp_path / "docs")
    source = EdgeStore(tmp_path / "edge")
    target = ServerStore(QdrantClient(":memory:"), tmp_path / "target")
    index_paths([corpus], "docs", minilm, store=source, **SMALL_CHUNKS)
    with source, target:
        yield corpus, source, target


def contents(store) -> dict[str, dict]:
    return {p.id: p.payload for p in store.scroll("docs")}


def test_push_copies_points_and_search_results(pushed, minilm):
    corpus, source, target = pushed
    first = push_collection(source, target, "docs")
    assert (first.files, first.copied, first.unchanged, first.removed) == (5, 5, 0, 0)
    assert first.points == source.count("docs") > 10  # several chunks per file
    assert target.spec("docs") == source.spec("docs")
    assert contents(target) == contents(source)
    some = sorted(contents(source))[:3]
    for a, b in zip(source.retrieve("docs", some), target.retrieve("docs", some), strict=True):
        assert a.vectors.keys() == b.vectors.keys() == {FULL, SPARSE}
        np.testing.assert_allclose(a.vectors[FULL], b.vectors[FULL], atol=1e-6)
    for mode in ("dense", "hybrid", "sparse"):
        for query in ("lava from an erupting mountain", "how long is a year on Mars"):
            here = search(query, "docs", minilm, store=source, mode=mode, top_k=6).hits
            there = search(query, "docs", minilm, store=target, mode=mode, top_k=6).hits
            assert [h.id for h in here] == [h.id for h in there], (mode, query)
            assert [h.score for h in here] == pytest.approx([h.score for h in there],
                                                            rel=1e-4, abs=1e-5)

    again = push_collection(source, target, "docs")
    assert (again.copied, again.unchanged, again.removed, again.points) == (0, 5, 0, first.points)


def test_push_sends_changes_and_resumes(pushed, minilm):
    corpus, source, target = pushed
    push_collection(source, target, "docs")
    football = corpus / "football.txt"  # its end changes: its first chunk stays the same
    football.write_text(football.read_text().replace("in the stadium.",
                                                     "in the old stadium by the river."))
    (corpus / "bread.md").unlink()
    before = {p.id for p in target.scroll("docs") if p.payload["path"] == str(football)}
    index_paths([corpus], "docs", minilm, store=source, **SMALL_CHUNKS)
    changed = push_collection(source, target, "docs")
    assert (changed.files, changed.copied, changed.unchanged, changed.removed) == (4, 1, 3, 1)
    assert contents(target) == contents(source) and changed.points == source.count("docs")
    after = {p.id for p in target.scroll("docs") if p.payload["path"] == str(football)}
    assert before & after and before - after  # a chunk kept, a chunk replaced

    # an interrupted push: one file missing on the target, one PDF missing one of its pages
    files = target.stored_files("docs")
    by_name = {Path(p).name: v for p, v in files.items()}
    (pdf,) = by_name["report.pdf"].values()
    (volcano,) = by_name["volcano.txt"].values()
    assert len(pdf.ids) > 2
    target.delete_ids("docs", [pdf.ids[0], *volcano.ids])
    resumed = push_collection(source, target, "docs")
    assert (resumed.copied, resumed.unchanged, resumed.removed) == (2, 2, 0)
    assert contents(target) == contents(source) and resumed.points == source.count("docs")


def test_push_refuses_a_target_built_otherwise(pushed):
    corpus, source, target = pushed
    other = CollectionSpec(**{**source.spec("docs").as_metadata()["polyseek"],
                              "language": "german"})
    target.create("docs", other)
    with pytest.raises(ModelMismatch, match="built otherwise"):
        push_collection(source, target, "docs")
    assert target.count("docs") == 0


# -- command line -------------------------------------------------------------------------


def no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr


def test_cli_push_to_an_unreachable_server(tmp_path):
    with EdgeStore(tmp_path / "data") as store:
        store.create("docs", SPEC)
    proc = cli("push", "--collection", "docs", "--qdrant-url", "http://127.0.0.1:9",
                    "--data", str(tmp_path / "data"))
    assert proc.returncode == 2, proc.stderr
    assert "error: cannot reach a Qdrant server at http://127.0.0.1:9" in proc.stderr
    no_traceback(proc)


def test_cli_collections_list_and_delete(tmp_path):
    data = tmp_path / "data"
    with EdgeStore(data) as store:
        store.create("docs", SPEC)
        store.upsert("docs", POINTS)
        store.create("empty", CollectionSpec("m2", "src", "bert", 8, None, None, "german"))
    listed = cli("collections", "list", "--json", "--data", str(data))
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        {"name": "docs", "points": len(POINTS), "model": "hand", "source": "hand-made",
         "family": "test", "dim": 4, "short_dim": 2, "multivector_dim": 3,
         "language": "english", "mode": "dense"},
        {"name": "empty", "points": 0, "model": "m2", "source": "src", "family": "bert",
         "dim": 8, "short_dim": None, "multivector_dim": None, "language": "german",
         "mode": "dense"}]

    deleted = cli("collections", "delete", "docs", "--data", str(data))
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted 'docs'" in deleted.stdout
    missing = cli("collections", "delete", "docs", "--data", str(data))
    assert missing.returncode == 2 and "error: no collection 'docs'" in missing.stderr
    no_traceback(missing)
    with EdgeStore(data) as store:
        assert store.names() == ["empty"]
        assert not any((data / "collections").glob(".*"))  # nothing left half deleted
