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
        big["response"] = post(url, "/v1/index", collection="big", model=DEFAULT_MODEL,
                               documents=random_documents(400, 120))

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
    assert big["response"].json()["indexed"] == 400


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
