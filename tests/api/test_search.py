"""POST /v1/index and /v1/search against a real server with an embedded Qdrant store."""

from __future__ import annotations

import random
import threading
import time

import httpx
import pytest

from polyseek.api.app import ServerSettings, create_app
from polyseek.runtime.batcher import BatchLimits
from polyseek.runtime.registry import DEFAULT_SPEC, ModelSpec

from support import CHAT_MODEL, DEFAULT_MODEL, metric, serve_in_thread, wait_for

DOCUMENTS = [
    {"id": "bread", "text": "Sourdough bread needs an active starter and a hot oven."},
    {"id": "chess", "text": "Castling moves the king two squares towards a rook."},
    {"id": "tides", "text": "Tides are caused by the gravitational pull of the Moon."},
]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    data = tmp_path_factory.mktemp("store")
    settings = ServerSettings(models=[DEFAULT_SPEC, ModelSpec("other", DEFAULT_SPEC.source)],
                              data_dir=str(data))
    with serve_in_thread(create_app(settings)) as base:
        yield base


def post(url: str, path: str, **body) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=120)


def test_index_then_search_finds_the_right_document(url):
    first = post(url, "/v1/index", collection="notes", model=DEFAULT_MODEL, documents=DOCUMENTS)
    assert first.status_code == 200, first.text
    assert (first.json()["indexed"], first.json()["points"]) == (3, 3)
    again = post(url, "/v1/index", collection="notes", model=DEFAULT_MODEL, documents=DOCUMENTS)
    assert (again.json()["unchanged"], again.json()["embedded"]) == (3, 0)

    found = post(url, "/v1/search", collection="notes", query="why does the sea rise and fall",
                 top_k=2)
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["model"] == DEFAULT_MODEL and len(body["hits"]) == 2
    assert body["hits"][0]["path"] == "tides" and "Moon" in body["hits"][0]["text"]


def test_changed_document_replaces_its_chunks(url):
    post(url, "/v1/index", collection="edits", model=DEFAULT_MODEL, documents=DOCUMENTS)
    changed = [{"id": "chess", "text": "The queen is the most powerful chess piece."}]
    summary = post(url, "/v1/index", collection="edits", model=DEFAULT_MODEL,
                   documents=changed).json()
    assert (summary["indexed"], summary["deleted_points"], summary["points"]) == (1, 1, 3)
    hit = post(url, "/v1/search", collection="edits", query="strongest piece").json()["hits"][0]
    assert hit["path"] == "chess" and "queen" in hit["text"]


def test_explain_and_rerank(url):
    post(url, "/v1/index", collection="notes", model=DEFAULT_MODEL, documents=DOCUMENTS)
    body = post(url, "/v1/search", collection="notes", query={"text": "baking"}, top_k=1,
                mode="hybrid", rerank=DEFAULT_MODEL, explain=True).json()
    assert [s["name"] for s in body["stages"]] == ["rescore", "sparse", "fusion", "rerank"]
    assert body["mode"] == "hybrid" and body["hits"][0]["path"] == "bread"


def test_search_errors(url):
    assert post(url, "/v1/search", collection="missing", query="x").status_code == 404
    assert post(url, "/v1/search", collection="notes", query="x", top_k=0).status_code == 422
    assert post(url, "/v1/search", collection="notes", query="x",
                rerank=CHAT_MODEL).status_code == 400
    image = post(url, "/v1/search", collection="notes", query={"image": "data:image/png;base64,AA"})
    assert image.status_code == 422
    assert post(url, "/v1/index", collection="bad name!", model=DEFAULT_MODEL,
                documents=DOCUMENTS).status_code == 422
    assert post(url, "/v1/index", collection="notes", model=DEFAULT_MODEL,
                documents=[]).status_code == 422


def test_a_collection_refuses_another_model(url):
    post(url, "/v1/index", collection="notes", model=DEFAULT_MODEL, documents=DOCUMENTS)
    refused = post(url, "/v1/index", collection="notes", model="other", documents=DOCUMENTS)
    assert refused.status_code == 400 and "built with model" in refused.json()["error"]["message"]


def test_thumbnails_route_serves_only_stored_previews(url):
    missing = httpx.get(f"{url}/v1/thumbnails/{'0' * 32}.jpg")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == 404
    assert httpx.get(f"{url}/v1/thumbnails/..%2F..%2Fsecret").status_code == 404


def random_documents(n: int, words: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    vocabulary = ["river", "stone", "market", "engine", "violin", "harbour", "winter", "lamp",
                  "orchard", "signal", "copper", "meadow", "ladder", "garden", "thunder"]
    return [{"id": f"doc{i}", "text": " ".join(rng.choices(vocabulary, k=words))}
            for i in range(n)]


def test_index_and_search_are_batched_and_counted_in_metrics(url):
    tokens = metric(url, "polyseek_tokens_total")
    sequences = metric(url, "polyseek_batch_size_sum")
    indexed = post(url, "/v1/index", collection="metered", model=DEFAULT_MODEL,
                   documents=DOCUMENTS)
    assert indexed.status_code == 200, indexed.text
    assert metric(url, "polyseek_batch_size_sum") - sequences == 3  # one sequence per chunk
    after_index = metric(url, "polyseek_tokens_total")
    assert after_index > tokens
    found = post(url, "/v1/search", collection="metered", query="the Moon", rerank=DEFAULT_MODEL)
    assert found.status_code == 200, found.text
    # the query, then the query and the 3 candidates for the bi-encoder reranker
    assert metric(url, "polyseek_batch_size_sum") - sequences == 3 + 1 + 4
    assert metric(url, "polyseek_tokens_total") > after_index


def test_searches_are_answered_while_a_large_index_request_runs(url):
    post(url, "/v1/index", collection="small", model=DEFAULT_MODEL, documents=DOCUMENTS)
    tokens = metric(url, "polyseek_tokens_total")
    big: dict[str, httpx.Response] = {}

    def index_many() -> None:
        big["response"] = httpx.post(f"{url}/v1/index", timeout=900, json={
            "collection": "big", "model": DEFAULT_MODEL, "documents": random_documents(200, 120)})

    indexing = threading.Thread(target=index_many)
    indexing.start()
    wait_for(lambda: metric(url, "polyseek_tokens_total") > tokens)  # it has started embedding
    latencies = []
    for query in ("why does the sea rise and fall", "castling in chess", "baking bread"):
        start = time.perf_counter()
        found = post(url, "/v1/search", collection="small", query=query, top_k=1)
        latencies.append(time.perf_counter() - start)
        assert found.status_code == 200, found.text
    assert indexing.is_alive(), f"index request finished before the searches ({latencies})"
    indexing.join()
    assert big["response"].status_code == 200, big["response"].text
    assert big["response"].json()["indexed"] == 200


@pytest.fixture(scope="module")
def tiny_queue_url(tmp_path_factory):
    """A server whose queue holds 8 sequences, taken 64 tokens per scheduling window."""
    settings = ServerSettings(models=[DEFAULT_SPEC], data_dir=str(tmp_path_factory.mktemp("q")),
                              batch=BatchLimits(max_queue=8, window_tokens=64))
    with serve_in_thread(create_app(settings)) as base:
        yield base


def test_index_and_search_get_429_when_the_queue_is_full(tiny_queue_url):
    url = tiny_queue_url
    assert post(url, "/v1/index", collection="notes", model=DEFAULT_MODEL,
                documents=DOCUMENTS).status_code == 200
    flood: dict[str, httpx.Response] = {}
    texts = [doc["text"] for doc in random_documents(300, 40)]
    thread = threading.Thread(target=lambda: flood.update(response=post(
        url, "/v1/embeddings", model=DEFAULT_MODEL, input=texts)))
    thread.start()
    wait_for(lambda: metric(url, "polyseek_queue_depth") >= 8)
    search = post(url, "/v1/search", collection="notes", query="tides")
    index = post(url, "/v1/index", collection="notes", model=DEFAULT_MODEL,
                 documents=[{"id": "new", "text": "A brand new document."}])
    thread.join()
    assert flood["response"].status_code == 200
    for refused in (search, index):
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["type"] == "overloaded"
    assert post(url, "/v1/search", collection="notes", query="tides").status_code == 200


TAGGED = [
    {"id": "docs/sv/kanel", "text": "Kanelbullar bakas med smör, socker och kanel.",
     "metadata": {"lang": "sv", "year": 2021, "score": 0.5, "draft": False}},
    {"id": "docs/en/bread", "text": "Sourdough bread needs an active starter and a hot oven.",
     "metadata": {"lang": "en", "year": 2019, "score": 0.9, "draft": True}},
    {"id": "blog/en/zymurgy", "text": "Zymurgy is the chemistry of fermentation in brewing.",
     "metadata": {"lang": "en", "year": 2023, "tags": ["beer", "science"]}},
]


def paths(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["path"] for hit in response.json()["hits"]]


def test_search_modes_sparse_dense_and_hybrid_with_ranks(url):
    assert post(url, "/v1/index", collection="modes", model=DEFAULT_MODEL,
                documents=TAGGED).status_code == 200
    # a rare term only BM25 matches literally
    assert paths(post(url, "/v1/search", collection="modes", query="zymurgy", mode="sparse")) \
        == ["blog/en/zymurgy"]
    assert paths(post(url, "/v1/search", collection="modes", query="qwxyz unknown",
                      mode="sparse")) == []
    assert len(paths(post(url, "/v1/search", collection="modes", query="qwxyz",
                          mode="dense"))) == 3
    for fusion in ("rrf", "dbsf"):
        body = post(url, "/v1/search", collection="modes", query="zymurgy brewing",
                    mode="hybrid", fusion=fusion, explain=True).json()
        assert body["mode"] == "hybrid" and body["hits"][0]["path"] == "blog/en/zymurgy"
        fused = body["stages"][-1]
        assert (fused["name"], fused["vector"]) == ("fusion", fusion)
        dense, sparse = body["stages"][0]["candidates"], body["stages"][1]["candidates"]
        for hit in fused["candidates"]:  # each fused hit names its rank in each list
            ranks = hit["ranks"]
            assert ranks and set(ranks) <= {"dense", "sparse"}
            if "sparse" in ranks:
                assert sparse[ranks["sparse"] - 1]["id"] == hit["id"]
            if "dense" in ranks:
                assert dense[ranks["dense"] - 1]["id"] == hit["id"]
    # all weight on the sparse list: the fused order is the BM25 order
    only_sparse = post(url, "/v1/search", collection="modes", query="bread oven starter",
                       mode="hybrid", weights=[0, 1])
    assert paths(only_sparse)[:1] == paths(post(url, "/v1/search", collection="modes",
                                                query="bread oven starter", mode="sparse"))[:1]
    for bad in ({"mode": "fuzzy"}, {"fusion": "max"}, {"weights": [0, 0]},
                {"weights": [1, -1]}, {"weights": [1]}):
        assert post(url, "/v1/search", collection="modes", query="x", **bad).status_code == 422


def test_metadata_filters_apply_inside_the_engine(url):
    post(url, "/v1/index", collection="tagged", model=DEFAULT_MODEL, documents=TAGGED)

    def found(*filters, mode="hybrid") -> list[str]:
        return sorted(paths(post(url, "/v1/search", collection="tagged", query="baking bread",
                                 mode=mode, top_k=10, filters=list(filters))))

    assert found({"key": "metadata.lang", "match": "sv"}) == ["docs/sv/kanel"]
    assert found({"key": "metadata.year", "range": {"gte": 2020}}) == [
        "blog/en/zymurgy", "docs/sv/kanel"]
    assert found({"key": "metadata.year", "any": [2019, 2023]}) == [
        "blog/en/zymurgy", "docs/en/bread"]
    assert found({"key": "metadata.tags", "match": "beer"}) == ["blog/en/zymurgy"]
    assert found({"key": "metadata.score", "match": 0.5}) == ["docs/sv/kanel"]
    assert found({"key": "metadata.draft", "match": True}) == ["docs/en/bread"]
    assert found({"key": "path", "prefix": "docs/"}, mode="dense") == [
        "docs/en/bread", "docs/sv/kanel"]
    assert found({"key": "path", "prefix": "docs/"}, {"key": "metadata.lang", "match": "en"},
                 mode="sparse") == ["docs/en/bread"]
    assert found({"key": "metadata.lang", "match": "fi"}) == []
    hit = post(url, "/v1/search", collection="tagged", query="kanel").json()["hits"][0]
    assert hit["metadata"] == TAGGED[0]["metadata"]
    nested = {"id": "x", "text": "x", "metadata": {"draft": {"deep": 1}}}
    assert post(url, "/v1/index", collection="tagged", model=DEFAULT_MODEL,
                documents=[nested]).status_code == 422
    for bad in ({"key": "secret", "match": "x"}, {"key": "metadata.lang"},
                {"key": "metadata.lang", "match": "sv", "prefix": "s"},
                {"key": "size", "prefix": "1"}, {"key": "metadata.year", "range": {}},
                {"key": "metadata.year", "any": []},
                {"key": "metadata.year", "any": ["2019", 2023]}):
        refused = post(url, "/v1/search", collection="tagged", query="x", filters=[bad])
        assert refused.status_code == 422, (bad, refused.text)


def test_collection_language_and_delete(url):
    indexed = post(url, "/v1/index", collection="svenska", model=DEFAULT_MODEL,
                   documents=TAGGED[:1], language="swedish")
    assert indexed.status_code == 200, indexed.text
    # Swedish stemming: "kanelbulle" and "kanelbullar" share a stem
    assert paths(post(url, "/v1/search", collection="svenska", query="kanelbulle",
                      mode="sparse")) == ["docs/sv/kanel"]
    listed = httpx.get(f"{url}/v1/collections").json()["data"]
    svenska = next(c for c in listed if c["name"] == "svenska")
    assert (svenska["language"], svenska["mode"]) == ("swedish", "dense")
    # a default search mode: given at indexing, taken by searches that name none
    assert post(url, "/v1/index", collection="svenska", model=DEFAULT_MODEL,
                documents=TAGGED[:1], mode="sparse").status_code == 200
    assert post(url, "/v1/search", collection="svenska", query="x").json()["mode"] == "sparse"
    assert post(url, "/v1/search", collection="svenska", query="x",
                mode="hybrid").json()["mode"] == "hybrid"
    assert post(url, "/v1/index", collection="svenska", model=DEFAULT_MODEL,
                documents=TAGGED[:1], mode="fuzzy").status_code == 422
    other = post(url, "/v1/index", collection="svenska", model=DEFAULT_MODEL,
                 documents=TAGGED[:1], language="german")
    assert other.status_code == 400 and "BM25 language 'swedish'" in other.text
    assert post(url, "/v1/index", collection="x", model=DEFAULT_MODEL, documents=TAGGED[:1],
                language="klingon").status_code == 422
    for name in (".", ".."):
        assert post(url, "/v1/index", collection=name, model=DEFAULT_MODEL,
                    documents=TAGGED[:1]).status_code == 422
    assert httpx.delete(f"{url}/v1/collections/svenska").status_code == 204
    assert httpx.delete(f"{url}/v1/collections/svenska").status_code == 404
    assert "svenska" not in {c["name"] for c in httpx.get(f"{url}/v1/collections").json()["data"]}
    assert post(url, "/v1/search", collection="svenska", query="x").status_code == 404


def test_a_store_held_elsewhere_is_409_and_index_requests_are_bounded(tmp_path):
    from polyseek.retrieval import open_store

    settings = ServerSettings(models=[DEFAULT_SPEC], data_dir=str(tmp_path), max_inputs=2)
    holder = open_store(tmp_path)  # as another process would hold it
    with serve_in_thread(create_app(settings)) as url:
        for response in (httpx.get(f"{url}/v1/collections"),
                         post(url, "/v1/search", collection="notes", query="tides")):
            assert response.status_code == 409, response.text
            assert response.json()["error"]["type"] == "store_busy"
            assert "in use by another polyseek process" in response.json()["error"]["message"]
        holder.close()
        assert httpx.get(f"{url}/v1/collections").json()["data"] == []
        too_many = post(url, "/v1/index", collection="notes", model=DEFAULT_MODEL,
                        documents=DOCUMENTS)
        assert too_many.status_code == 413 and "at most 2" in too_many.text
        assert post(url, "/v1/index", collection="notes", model=DEFAULT_MODEL,
                    documents=DOCUMENTS[:2]).status_code == 200
