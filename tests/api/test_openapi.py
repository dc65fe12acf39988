"""/openapi.json says what the server does: the statuses each route returns, the event stream
of chat, the constraints the server enforces; and requests that break them are 422s that say
why (malformed JSON included). Each claim is checked against the running server."""

from __future__ import annotations

import httpx
import pytest

from support import CHAT_MODEL, DEFAULT_MODEL

# route -> the statuses it documents (401 only when keys are set: test_access.py)
STATUSES = {
    ("post", "/v1/embeddings"): {"200", "400", "413", "422", "429", "503"},
    ("post", "/v1/rerank"): {"200", "400", "413", "422", "429", "503"},
    ("post", "/v1/chat/completions"): {"200", "400", "404", "409", "413", "422", "429", "503"},
    ("post", "/v1/segment"): {"200", "413", "422", "503"},
    ("get", "/v1/models"): {"200"},
    ("get", "/v1/models/{name}"): {"200", "404", "422"},
    ("post", "/v1/index"): {"200", "400", "409", "413", "422", "429", "503"},
    ("post", "/v1/search"): {"200", "400", "404", "409", "413", "422", "429", "503"},
    ("get", "/v1/collections"): {"200", "409", "503"},
    ("delete", "/v1/collections/{name}"): {"204", "404", "409", "422", "503"},
    ("get", "/v1/thumbnails/{name}"): {"200", "404", "409", "422", "503"},
    ("post", "/v1/classify"): {"200", "400", "404", "409", "413", "422", "429", "503"},
    ("post", "/v1/train"): {"200", "400", "404", "409", "413", "422", "429", "503"},
    ("get", "/v1/classifiers"): {"200"},
    ("delete", "/v1/classifiers/{classifier_id}"): {"204", "404", "422"},
    ("get", "/health"): {"200", "503"},
}


@pytest.fixture(scope="module")
def schema(server):
    return httpx.get(f"{server}/openapi.json", timeout=30).json()


def prop(schema: dict, model: str, name: str) -> dict:
    return schema["components"]["schemas"][model]["properties"][name]


def test_each_route_documents_the_statuses_it_returns(schema):
    found = {(method, path): set(op["responses"])
             for path, ops in schema["paths"].items() for method, op in ops.items()}
    assert found == STATUSES
    busy = schema["paths"]["/v1/search"]["post"]["responses"]["429"]
    assert busy["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert "Retry-After" in busy["headers"]
    thumbnail = schema["paths"]["/v1/thumbnails/{name}"]["get"]["responses"]["200"]
    assert list(thumbnail["content"]) == ["image/jpeg"]


def test_streaming_chat_is_documented_as_server_sent_events(schema, client):
    content = schema["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/event-stream"}
    data = content["text/event-stream"]["schema"]["properties"]["data"]["anyOf"]
    assert {"const": "[DONE]"} in data
    chunk = data[1]["contentSchema"]["anyOf"][0]["$ref"].rsplit("/", 1)[1]
    assert schema["components"]["schemas"][chunk]["properties"]["object"]["const"] == \
        "chat.completion.chunk"
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2, "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")


def test_the_schema_states_the_constraints_the_server_enforces(schema, client):
    # each constraint as the schema states it, then the server refusing a request that breaks it
    embed_input = prop(schema, "EmbeddingsRequest", "input")["anyOf"]
    assert embed_input[0]["minItems"] == 1 and embed_input[1] == {"type": "string",
                                                                    "minLength": 1}
    assert prop(schema, "EmbeddingsRequest", "embedding_type")["anyOf"][1]["minItems"] == 1
    assert prop(schema, "TextInput", "text")["minLength"] == 1
    assert prop(schema, "RerankRequest", "documents")["minItems"] == 1
    assert prop(schema, "IndexRequest", "documents")["minItems"] == 1
    assert prop(schema, "ChatCompletionRequest", "messages")["contains"] == {
        "properties": {"role": {"const": "user"}}, "required": ["role"]}
    assert prop(schema, "ChatCompletionRequest", "stop")["anyOf"][1]["maxItems"] == 4
    assert prop(schema, "ChatCompletionRequest", "seed")["anyOf"][0]["maximum"] == 2**64 - 1
    assert prop(schema, "SearchRequest", "query")["anyOf"][0]["pattern"] == r"\S"
    assert "english" in prop(schema, "IndexRequest", "language")["anyOf"][0]["enum"]
    assert len(schema["components"]["schemas"]["FilterCondition"]["oneOf"]) == 4
    metadata = prop(schema, "IndexDocument", "metadata")["anyOf"][0]
    assert metadata["additionalProperties"] is False and list(metadata["patternProperties"])

    refused = [
        ("/v1/embeddings", {"model": DEFAULT_MODEL, "input": []}, "input"),
        ("/v1/embeddings", {"model": DEFAULT_MODEL, "input": [""]}, "input"),
        ("/v1/embeddings", {"model": DEFAULT_MODEL, "input": "x", "embedding_type": []},
         "embedding_type"),
        ("/v1/embeddings", {"model": DEFAULT_MODEL, "input": "x", "normalized": 0}, "normalized"),
        ("/v1/embeddings", {"model": DEFAULT_MODEL, "input": "x", "dimensions": "64"},
         "dimensions"),
        ("/v1/rerank", {"model": DEFAULT_MODEL, "query": "q", "documents": []}, "documents"),
        ("/v1/chat/completions", {"model": CHAT_MODEL, "stop": "",
                                  "messages": [{"role": "user", "content": "hi"}]}, "stop"),
        ("/v1/chat/completions", {"model": CHAT_MODEL, "stream": "true",
                                  "messages": [{"role": "user", "content": "hi"}]}, "stream"),
        ("/v1/index", {"collection": "..", "model": DEFAULT_MODEL,
                       "documents": [{"id": "a", "text": "b"}]}, "collection"),
        ("/v1/index", {"collection": "c", "model": DEFAULT_MODEL, "language": "klingon",
                       "documents": [{"id": "a", "text": "b"}]}, "language"),
        ("/v1/search", {"collection": "c", "query": " \t"}, "query"),
        ("/v1/search", {"collection": "c", "query": "q", "weights": [0, 0]}, "weights"),
        ("/v1/search", {"collection": "c", "query": "q", "weights": [1e308, 1e308]}, "weights"),
        ("/v1/search", {"collection": "c", "query": "q", "filters": [{"key": "path"}]},
         "filters"),
        ("/v1/search", {"collection": "c", "query": "q", "filters": [
            {"key": "size", "prefix": "1"}]}, "filters"),
        ("/v1/search", {"collection": "c", "query": "q", "filters": [
            {"key": "path", "match": "a", "any": ["b"]}]}, "filters"),
        ("/v1/search", {"collection": "c", "query": "q", "filters": [
            {"key": "path", "range": {}}]}, "filters"),
    ]
    for path, body, field in refused:
        response = client.post(path, json=body)
        assert response.status_code == 422, (path, body, response.text)
        assert any(field in d["loc"] for d in response.json()["detail"]), response.text
    # JSON Schema's integer takes 2.0; an integral float is not refused
    accepted = client.post("/v1/embeddings", json={"model": DEFAULT_MODEL, "input": "x",
                                                   "dimensions": 64.0})
    assert accepted.status_code == 200 and len(accepted.json()["data"][0]["embedding"]) == 64


@pytest.mark.parametrize(("body", "where", "reason"), [
    (b'{"model": "m", "input": }', "line 1, column 25 (character 24)", "Expecting value"),
    (b'{"model": "m",\n "input": "x",\n}', "line 3, column 1 (character 30)",
     "Expecting property name enclosed in double quotes"),
    (b'{"model": "m", "input": "x"', "line 1, column 28 (character 27)", "Expecting ',' delimiter"),
    (b'{"model": "m"} trailing', "line 1, column 16 (character 15)", "Extra data"),
])
def test_malformed_json_says_where_and_why(client, body, where, reason):
    response = client.post("/v1/embeddings", content=body,
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    (detail,) = response.json()["detail"]
    assert detail["type"] == "json_invalid"
    assert where in detail["msg"] and reason in detail["msg"], detail["msg"]


def test_a_body_that_is_not_utf8_is_a_422_that_says_so(client):
    response = client.post("/v1/embeddings", content=b'{"input": "\xff\xfe\xfd"}',
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert "not UTF-8" in response.json()["detail"][0]["msg"]


def test_an_unknown_model_card_is_404(client):
    response = client.get("/v1/models/nope")
    assert response.status_code == 404 and response.json()["error"]["type"] == "model_not_found"


def test_deleting_an_invalid_collection_name_is_422(client):
    for name in ("%2E%2E", "a%20b"):
        response = client.delete(f"/v1/collections/{name}")
        assert response.status_code == 422, (name, response.text)


def test_metadata_names_a_filter_can_reach(client):
    """A metadata name the store cannot index was a 500; now the schema refuses it."""
    body = {"collection": "meta-names", "model": DEFAULT_MODEL,
            "documents": [{"id": "a", "text": "hello", "metadata": {"a b": 1}}]}
    response = client.post("/v1/index", json=body)
    assert response.status_code == 422 and "metadata" in response.text


def test_reindexing_a_document_with_new_metadata_keeps_it(client):
    """The same text under new metadata keeps its point ids: they were deleted as stale."""
    def index(year: int) -> dict:
        body = {"collection": "meta-change", "model": DEFAULT_MODEL,
                "documents": [{"id": "a", "text": "hello there", "metadata": {"year": year}}]}
        response = client.post("/v1/index", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    assert index(2020)["points"] == 1
    again = index(2021)
    assert again["indexed"] == 1 and again["points"] == 1
    found = client.post("/v1/search", json={"collection": "meta-change", "query": "hello",
                                             "filters": [{"key": "metadata.year",
                                                          "match": 2021}]}).json()
    assert [hit["path"] for hit in found["hits"]] == ["a"]


def test_a_tiny_temperature_samples_the_most_likely_token(client):
    """5e-324 overflowed the scaled logits to NaN: a 500."""
    request = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Say yes."}],
               "temperature": 5e-324, "max_tokens": 4, "seed": 1}
    sampled = client.post("/v1/chat/completions", json=request)
    greedy = client.post("/v1/chat/completions", json={**request, "temperature": 0})
    assert sampled.status_code == greedy.status_code == 200, sampled.text
    assert sampled.json()["choices"][0]["message"]["content"] == \
        greedy.json()["choices"][0]["message"]["content"]

