"""POST /v1/embeddings against a running server: Jina's contract, field by field."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from support import DEFAULT_MODEL

PNG_DATA_URI = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
    "z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
LONG_TEXT = "the quick brown fox jumps over the lazy dog " * 60  # ~600 tokens


def embed(client, **body):
    return client.post("/v1/embeddings", json={"model": DEFAULT_MODEL, **body})


def vectors(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)


def test_single_string_matches_in_process_encoding(client, e5):
    got = vectors(embed(client, input="A man is playing a guitar."))
    want = e5.encode(["A man is playing a guitar."])
    assert got.shape == (1, 384)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.linalg.norm(got[0]) == pytest.approx(1.0, abs=1e-5)


def test_response_shape_order_and_usage(client, e5):
    texts = ["first text", "a second, longer piece of text", "third"]
    body = embed(client, input=[texts[0], {"text": texts[1]}, texts[2]]).json()
    assert body["model"] == DEFAULT_MODEL and body["object"] == "list"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" for d in body["data"])
    np.testing.assert_allclose(
        [d["embedding"] for d in body["data"]], e5.encode(texts), atol=1e-5
    )
    n_tokens = sum(job.n_tokens for job in e5.prepare(texts))
    assert body["usage"] == {"total_tokens": n_tokens, "prompt_tokens": n_tokens}


@pytest.mark.parametrize(
    "image",
    [
        {"image": "https://example.com/cat.png"},
        {"url": "https://example.com/cat.png"},
        {"bytes": PNG_DATA_URI.split(",", 1)[1]},
        PNG_DATA_URI,
    ],
)
def test_image_input_to_text_model_is_422_naming_model_and_index(client, image):
    response = embed(client, input=["some text", {"text": "more"}, image])
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "input", 2]
    assert DEFAULT_MODEL in detail["msg"] and "input[2]" in detail["msg"]


def test_task_puts_its_prompt_first_and_an_unknown_task_is_422(client, e5):
    got = vectors(embed(client, input="vad kostar en kanelbulle", task="retrieval.query"))
    np.testing.assert_allclose(got, e5.encode(["query: vad kostar en kanelbulle"]), atol=1e-5)
    response = embed(client, input="x", task="separation")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "task"]
    assert "retrieval.query, retrieval.passage" in response.json()["detail"][0]["msg"]


def test_dimensions_truncate_then_renormalise(client):
    full = vectors(embed(client, input="matryoshka dolls nest inside each other"))[0]
    short = vectors(embed(client, input="matryoshka dolls nest inside each other",
                          dimensions=64))[0]
    assert short.shape == (64,)
    np.testing.assert_allclose(short, full[:64] / np.linalg.norm(full[:64]), atol=1e-5)


@pytest.mark.parametrize("dimensions", [385, 16, 0, -1])
def test_dimensions_out_of_range_is_422(client, dimensions):
    response = embed(client, input="x", dimensions=dimensions)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == "dimensions"


def test_every_embedding_type_decodes_as_jina_clients_decode_it(client):
    text = "binary quantisation keeps the signs"
    reference = vectors(embed(client, input=text))[0]
    signs = (reference > 0).astype(np.uint8)

    b64 = embed(client, input=text, embedding_type="base64").json()["data"][0]["embedding"]
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(b64), dtype="<f4"), reference)

    ubinary = embed(client, input=text, embedding_type="ubinary").json()["data"][0]["embedding"]
    assert len(ubinary) == 384 // 8
    np.testing.assert_array_equal(np.unpackbits(np.array(ubinary, dtype=np.uint8)), signs)

    binary = embed(client, input=text, embedding_type="binary").json()["data"][0]["embedding"]
    as_unsigned = (np.array(binary, dtype=np.int16) + 128).astype(np.uint8)
    np.testing.assert_array_equal(np.unpackbits(as_unsigned), signs)
    assert min(binary) >= -128 and max(binary) <= 127


def test_list_of_embedding_types_gives_an_object_per_type(client):
    data = embed(client, input=["a", "b"], embedding_type=["float", "ubinary", "base64"])
    for item in data.json()["data"]:
        assert set(item["embedding"]) == {"float", "ubinary", "base64"}
        floats = np.array(item["embedding"]["float"], dtype=np.float32)
        decoded = np.frombuffer(base64.b64decode(item["embedding"]["base64"]), dtype="<f4")
        np.testing.assert_array_equal(decoded, floats)


@pytest.mark.parametrize("alias", ["encoding_type", "encoding_format"])
def test_embedding_type_aliases(client, alias):
    item = embed(client, input="alias", **{alias: "ubinary"}).json()["data"][0]
    assert len(item["embedding"]) == 48 and all(0 <= b <= 255 for b in item["embedding"])


def test_unknown_embedding_type_is_422(client):
    assert embed(client, input="x", embedding_type="int4").status_code == 422


def test_normalized_false_returns_raw_mean_pooling(client, e5):
    raw = vectors(embed(client, input="not normalised", normalized=False))[0]
    assert abs(np.linalg.norm(raw) - 1.0) > 0.01
    np.testing.assert_allclose(raw, e5.encode(["not normalised"], normalize=False)[0],
                               atol=1e-5)


def test_over_length_input_is_413_unless_truncate(client, e5):
    refused = embed(client, input=["short", LONG_TEXT])
    assert refused.status_code == 413
    assert "input[1]" in refused.json()["error"]["message"]
    truncated = vectors(embed(client, input=["short", LONG_TEXT], truncate=True))
    np.testing.assert_allclose(truncated, e5.encode(["short", LONG_TEXT]), atol=1e-5)


def test_late_chunking_pools_spans_of_one_forward_pass(client, e5):
    import torch

    chunks = ["Berlin is the capital of Germany.", "Its population is 3.85 million.",
              "The city is also a state."]
    got = vectors(embed(client, input=chunks, late_chunking=True))
    # reference: one sequence [CLS] chunk0 chunk1 chunk2 [SEP], mean over each chunk's tokens
    pieces = e5.tokenizer(chunks, add_special_tokens=False)["input_ids"]
    ids = [e5.tokenizer.cls_token_id] + sum(pieces, []) + [e5.tokenizer.sep_token_id]
    with torch.no_grad():
        hidden = e5.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    start, want = 1, []
    for piece in pieces:
        want.append(hidden[start:start + len(piece)].mean(0).numpy())
        start += len(piece)
    want = np.stack(want) / np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # context changes the embedding: "Its" now knows about Berlin
    alone = vectors(embed(client, input=chunks))
    assert not np.allclose(got[1], alone[1], atol=1e-3)


def test_late_chunking_over_the_context(client):
    chunks = [LONG_TEXT[:1200]] * 3  # ~3 x 250 tokens > 512
    assert embed(client, input=chunks, late_chunking=True).status_code == 413
    got = vectors(embed(client, input=chunks, late_chunking=True, truncate=True))
    assert got.shape == (3, 384) and np.isfinite(got).all()


def test_multivector_is_422_for_a_plain_encoder(client):
    response = embed(client, input="x", return_multivector=True)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "return_multivector"]


@pytest.mark.parametrize(
    "body",
    [
        {"input": []},
        {"input": ""},
        {"input": ["ok", ""]},
        {"input": [{"text": ""}]},
        {},
        {"input": 42},
        {"input": [[101, 2023]]},  # token ids, as some OpenAI clients send
        {"input": [{"txt": "typo"}]},
        {"input": "x", "normalized": "maybe"},
        {"input": "x", "embedding_type": []},
    ],
)
def test_invalid_bodies_are_422(client, body):
    response = client.post("/v1/embeddings", json={"model": DEFAULT_MODEL, **body})
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], list)


def test_lone_surrogate_is_named(client):
    body = b'{"model": "%s", "input": ["ok", "bad \\ud800"]}' % DEFAULT_MODEL.encode()
    response = client.post("/v1/embeddings", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "input[1] is not valid Unicode" in response.json()["detail"][0]["msg"]


def test_malformed_json_is_422(client):
    response = client.post("/v1/embeddings", content=b"{not json",
                           headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_unknown_model_is_400_listing_available_models(client):
    response = client.post("/v1/embeddings", json={"model": "nope", "input": "x"})
    assert response.status_code == 400
    assert DEFAULT_MODEL in response.json()["error"]["message"]


def test_too_many_inputs_is_413(client):
    response = embed(client, input=["a"] * 2049)
    assert response.status_code == 413
    assert "2048" in response.json()["error"]["message"]


def test_oversized_body_is_413(client):
    response = embed(client, input="word " * (4 * 1024 * 1024))  # ~20 MiB > 16 MiB
    assert response.status_code == 413
    assert response.json()["error"]["code"] == 413


def test_unknown_route_is_404_in_the_error_shape(client):
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == 404


def test_model_card_by_name(client):
    card = client.get(f"/v1/models/{DEFAULT_MODEL}").json()
    assert card["id"] == DEFAULT_MODEL and card["status"] == "ready"
    assert card["capabilities"]["min_dim"] == 32
    missing = client.get("/v1/models/nope")
    assert missing.status_code == 404 and DEFAULT_MODEL in missing.json()["error"]["message"]
