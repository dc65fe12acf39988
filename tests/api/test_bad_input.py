"""Bad input is a 4xx that says what is wrong, never a 500, and the connection stays usable."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from polyseek.api.middleware import UnexpectedErrors

from support import CHAT_MODEL, DEFAULT_MODEL, serve_in_thread

BAD = "bad \ud800 text"  # a lone surrogate: JSON can escape it, but it is not valid Unicode
USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/rerank", {"model": DEFAULT_MODEL, "query": BAD, "documents": ["a"]}),
    ("/v1/rerank", {"model": DEFAULT_MODEL, "query": "a", "documents": [{"text": BAD}]}),
    ("/v1/chat/completions", {"model": CHAT_MODEL, "messages": [{"role": "user",
                                                                 "content": BAD}]}),
    ("/v1/chat/completions", {"model": CHAT_MODEL, "messages": [
        {"role": "user", "content": [{"type": "text", "text": BAD}]}]}),
    ("/v1/chat/completions", {"model": CHAT_MODEL, "messages": [
        {"role": "system", "content": BAD}, USER]}),
    ("/v1/search", {"collection": "any", "query": BAD}),
    ("/v1/index", {"collection": "any", "model": DEFAULT_MODEL,
                   "documents": [{"id": "a", "text": BAD}]}),
])
def test_lone_surrogates_are_422_everywhere(client, path, body):
    response = client.post(path, content=json.dumps(body),  # ensure_ascii: "\ud800"
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert "unicode" in response.text.lower()
    assert client.get("/health").status_code == 200  # same connection, still open


@pytest.mark.parametrize("body", [
    {"seed": 2**64}, {"seed": -(2**63) - 1}, {"max_tokens": 10**300},
    {"max_completion_tokens": 10**9},
])
def test_chat_numbers_out_of_range_are_422(client, body):
    request = {"model": CHAT_MODEL, "messages": [USER], **body}
    response = client.post("/v1/chat/completions", json=request)
    assert response.status_code == 422, response.text


def test_a_tiny_top_p_keeps_the_most_likely_token(client):
    request = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Say yes."}],
               "temperature": 1.0, "top_p": 5e-324, "max_tokens": 4, "seed": 2**64 - 1}
    sampled = client.post("/v1/chat/completions", json=request)
    greedy = client.post("/v1/chat/completions", json={**request, "temperature": 0})
    assert sampled.status_code == greedy.status_code == 200, sampled.text
    assert sampled.json()["choices"][0]["message"]["content"] == \
        greedy.json()["choices"][0]["message"]["content"]


def test_blank_queries_and_documents(client):
    for query in ("", "   ", {"text": " \n "}):
        response = client.post("/v1/search", json={"collection": "blank", "query": query})
        assert response.status_code == 422, response.text
    documents = [{"id": "ok", "text": "Real text."}, {"id": "spaces", "text": " \t\n "},
                 {"id": "nul", "text": "\x00\x00"}, {"id": "bom", "text": "\ufeff"}]
    summary = client.post("/v1/index", json={"collection": "blank", "model": DEFAULT_MODEL,
                                             "documents": documents}).json()
    assert (summary["indexed"], summary["points"]) == (1, 1)
    assert sorted(e["path"] for e in summary["errors"]) == ["bom", "nul", "spaces"]


def test_an_unexpected_error_is_a_json_500_and_keeps_the_connection():
    async def boom(request):
        raise RuntimeError("a bug")

    async def fine(request):
        from starlette.responses import PlainTextResponse

        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/boom", boom), Route("/health", fine)])
    app.add_middleware(UnexpectedErrors)
    with serve_in_thread(app, wait_healthy=False) as url, httpx.Client(base_url=url) as client:
        first = client.get("/boom")
        assert first.status_code == 500
        assert json.loads(first.text)["error"]["message"] == "internal error: RuntimeError"
        assert client.get("/health").text == "ok"  # the same keep-alive connection
        assert client.get("/boom").status_code == 500
