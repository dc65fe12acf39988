"""POST /v1/rerank: the default bi-encoder and a tiny random cross-encoder, over HTTP."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import torch

from polyseek.api.app import ServerSettings, create_app
from polyseek.runtime.registry import ModelSpec

from support import (
    CHAT_MODEL,
    DEFAULT_MODEL,
    serve_in_thread,
    write_tiny_cross_encoder,
)

QUERY = "What is the capital of France?"
DOCUMENTS = ["Bananas are rich in potassium.", "Paris is the capital and largest city of France.",
             "Berlin is the capital of Germany.", "The Eiffel Tower stands in Paris."]


def rerank(url_or_client, **body):
    post = url_or_client.post if hasattr(url_or_client, "post") else httpx.post
    prefix = "" if hasattr(url_or_client, "post") else url_or_client
    return post(f"{prefix}/v1/rerank", json=body, timeout=60)


def test_bi_encoder_ranks_by_cosine_in_order(client, e5):
    response = rerank(client, model=DEFAULT_MODEL, query=QUERY, documents=DOCUMENTS)
    assert response.status_code == 200, response.text
    body = response.json()
    query = e5.encode([QUERY], task="retrieval.query")[0]  # each side with its e5 prompt
    cosine = e5.encode(DOCUMENTS, task="retrieval.passage") @ query
    assert [r["index"] for r in body["results"]] == list(np.argsort(-cosine))
    np.testing.assert_allclose([r["relevance_score"] for r in body["results"]],
                               np.sort(cosine)[::-1], atol=1e-5)
    assert body["results"][0]["document"] == {"text": DOCUMENTS[1]}
    jobs = e5.prepare([QUERY], "retrieval.query") + e5.prepare(DOCUMENTS, "retrieval.passage")
    n_tokens = sum(job.n_tokens for job in jobs)
    assert body["usage"] == {"total_tokens": n_tokens, "prompt_tokens": n_tokens}
    assert body["model"] == DEFAULT_MODEL


def test_top_n_return_documents_and_object_forms(client):
    body = rerank(client, model=DEFAULT_MODEL, query={"text": QUERY},
                  documents=[{"text": d} for d in DOCUMENTS], top_n=2,
                  return_documents=False).json()
    assert len(body["results"]) == 2 and body["results"][0]["index"] == 1
    assert all("document" not in r for r in body["results"])
    everything = rerank(client, model=DEFAULT_MODEL, query=QUERY, documents=DOCUMENTS, top_n=99)
    assert len(everything.json()["results"]) == len(DOCUMENTS)


def test_models_declare_how_they_rerank(client):
    cards = {m["id"]: m["capabilities"] for m in client.get("/v1/models").json()["data"]}
    assert cards[DEFAULT_MODEL]["reranker"] == "bi-encoder"
    assert cards[CHAT_MODEL]["reranker"] is None


@pytest.mark.parametrize("body,status", [
    ({"query": "", "documents": ["a"]}, 422),
    ({"query": "q", "documents": []}, 422),
    ({"query": "q", "documents": ["a", ""]}, 422),
    ({"query": "q", "documents": ["a"], "top_n": 0}, 422),
    ({"query": {"image": "https://example.com/q.png"}, "documents": ["a"]}, 422),
    ({"query": "q", "documents": ["a", {"image": "data:image/png;base64,AAAA"}]}, 422),
    ({"query": "q", "documents": ["a"] * 2049}, 413),
])
def test_bad_rerank_requests(client, body, status):
    response = rerank(client, model=DEFAULT_MODEL, **body)
    assert response.status_code == status, response.text


def test_models_that_cannot_rerank(client):
    assert rerank(client, model="nope", query="q", documents=["a"]).status_code == 400
    chat = rerank(client, model=CHAT_MODEL, query="q", documents=["a"])
    assert chat.status_code == 400 and "cannot rerank" in chat.json()["error"]["message"]


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory):
    directory = write_tiny_cross_encoder(tmp_path_factory.mktemp("cross-encoder"))
    assert json.loads((directory / "config.json").read_text())["architectures"] == [
        "BertForSequenceClassification"]
    return directory


def reference_scores(directory, query: str, documents: list[str]) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    with torch.no_grad():
        batch = tokenizer([query] * len(documents), documents, padding=True,
                          truncation="only_second", max_length=64, return_tensors="pt")
        return torch.sigmoid(model(**batch).logits[:, 0]).numpy()


def test_cross_encoder_scores_pairs_like_transformers(cross_encoder_dir):
    long_document = "paris " * 200  # over the 64-token context: the document is cut
    documents = [*DOCUMENTS, long_document]
    settings = ServerSettings(models=[ModelSpec("tiny-ce", str(cross_encoder_dir))])
    with serve_in_thread(create_app(settings)) as url:
        card = httpx.get(f"{url}/v1/models").json()["data"][0]["capabilities"]
        assert (card["kind"], card["reranker"], card["max_tokens"]) == (
            "rerank", "cross-encoder", 64)
        response = rerank(url, model="tiny-ce", query=QUERY, documents=documents)
        assert response.status_code == 200, response.text
        body = response.json()
        embed = httpx.post(f"{url}/v1/embeddings", json={"model": "tiny-ce", "input": "x"})
        assert embed.status_code == 400
    want = reference_scores(cross_encoder_dir, QUERY, documents)
    got = {r["index"]: r["relevance_score"] for r in body["results"]}
    np.testing.assert_allclose([got[i] for i in range(len(documents))], want, atol=1e-5)
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert body["usage"]["total_tokens"] > 64 * len(DOCUMENTS) // 4


def test_score_takes_one_document_or_none(cross_encoder_dir):
    from polyseek import load_model

    model = load_model(str(cross_encoder_dir), name="tiny-ce")
    one = model.score(QUERY, DOCUMENTS[0])  # a string, not a list of its characters
    assert one == model.score(QUERY, [DOCUMENTS[0]])
    assert len(one) == 1
    assert model.score(QUERY, []) == []
