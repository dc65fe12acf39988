"""The tiny random jina-vlm served through /v1/chat/completions: images flow end to end."""

from __future__ import annotations

import base64
import http.server
import io
import lzma
import threading
from pathlib import Path

import httpx
import pytest
from PIL import Image
from safetensors.torch import load

from polyseek.api.app import ServerSettings, create_app
from polyseek.inputs.images import ImageLimits
from polyseek.runtime.registry import ModelSpec

from support import FIXTURES, serve_in_thread, write_tiny_jina_vlm

VLM = FIXTURES / "jina-vlm"
pytestmark = pytest.mark.skipif(not VLM.is_dir(), reason=f"jina-vlm fixtures missing at {VLM}")
PNG = (VLM / "image_small.png").read_bytes() if VLM.is_dir() else b""
DATA_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def ask(url: str, content: list, **extra) -> httpx.Response:
    body = {"model": "tiny-vlm", "messages": [{"role": "user", "content": content}],
            "temperature": 0, "max_tokens": 5, **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)


@pytest.fixture(scope="module")
def image_server():
    """A local HTTP server with the PNG (private URLs are allowed for this app only)."""
    directory = str(VLM)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=directory, **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def vlm_url(tmp_path_factory):
    directory = write_tiny_jina_vlm(Path(tmp_path_factory.mktemp("tiny-vlm")))
    settings = ServerSettings(models=[ModelSpec("tiny-vlm", str(directory))],
                              image_limits=ImageLimits(allow_private_urls=True))
    with serve_in_thread(create_app(settings)) as url:
        yield url


def test_image_from_a_data_uri_gives_the_reference_generation(vlm_url):
    import tokenizers

    prompt = {"type": "text", "text": "Describe this image."}
    response = ask(vlm_url, [image_part(DATA_URI), prompt])
    assert response.status_code == 200, response.text
    body = response.json()
    reference = load(lzma.decompress((VLM / "forward_small.safetensors.xz").read_bytes()))
    assert body["usage"]["prompt_tokens"] == reference["input_ids"].shape[1]
    assert body["usage"]["completion_tokens"] == 5
    tokenizer = tokenizers.Tokenizer.from_file(str(VLM / "tokenizer_tiny.json"))
    want = tokenizer.decode(reference["generated_ids"].tolist(), skip_special_tokens=True)
    assert body["choices"][0]["message"]["content"] == want


def test_images_by_url_several_per_message_and_across_messages(vlm_url, image_server):
    url = f"{image_server}/image_scene.png"
    one = ask(vlm_url, [image_part(url), {"type": "text", "text": "What is this?"}])
    assert one.status_code == 200, one.text
    body = {"model": "tiny-vlm", "temperature": 0, "max_tokens": 3, "messages": [
        {"role": "user", "content": [image_part(url), image_part(DATA_URI),
                                     {"type": "text", "text": "Compare."}]},
        {"role": "assistant", "content": "They differ."},
        {"role": "user", "content": [image_part(DATA_URI), {"type": "text", "text": "And?"}]},
    ]}
    several = httpx.post(f"{vlm_url}/v1/chat/completions", json=body, timeout=120)
    assert several.status_code == 200, several.text
    assert several.json()["usage"]["prompt_tokens"] > 2 * one.json()["usage"]["prompt_tokens"]


def test_a_tiny_top_p_keeps_the_most_likely_token(vlm_url):
    prompt = [image_part(DATA_URI), {"type": "text", "text": "Describe this image."}]
    sampled = ask(vlm_url, prompt, temperature=1.0, top_p=1e-300, seed=7)
    greedy = ask(vlm_url, prompt)
    assert sampled.status_code == greedy.status_code == 200, sampled.text
    assert sampled.json()["choices"][0]["message"]["content"] == \
        greedy.json()["choices"][0]["message"]["content"]


def test_streaming_with_an_image(vlm_url):
    body = {"model": "tiny-vlm", "stream": True, "max_tokens": 4, "temperature": 0,
            "messages": [{"role": "user", "content": [image_part(DATA_URI)]}]}
    with httpx.stream("POST", f"{vlm_url}/v1/chat/completions", json=body, timeout=120) as r:
        lines = [line for line in r.iter_lines() if line]
    assert r.status_code == 200 and lines[-1] == "data: [DONE]"


@pytest.mark.parametrize("url,status,words", [
    ("data:image/png;base64,@@not-base64@@", 422, "base64"),
    ("data:image/png;base64," + base64.b64encode(b"plain text, not a picture").decode(), 422,
     "image"),
    ("http://127.0.0.1:9/unreachable.png", 422, "127.0.0.1"),
    ("ftp://example.com/x.png", 422, "ftp"),
])
def test_bad_images_are_clear_4xx(vlm_url, url, status, words):
    response = ask(vlm_url, [image_part(url), {"type": "text", "text": "x"}])
    assert response.status_code == status, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "messages", 0, "content", 0]
    assert words in detail["msg"]


def encoded(image_format: str) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, image_format)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize(("declared", "image_format", "actual"), [
    ("image/png", "JPEG", "JPEG"), ("image/gif", "PNG", "PNG"), ("image/webp", "GIF", "GIF"),
])
def test_a_data_uri_whose_type_contradicts_its_bytes_is_422(vlm_url, declared, image_format,
                                                            actual):
    uri = f"data:{declared};base64,{encoded(image_format)}"
    response = ask(vlm_url, [image_part(uri), {"type": "text", "text": "x"}])
    assert response.status_code == 422, response.text
    message = response.json()["detail"][0]["msg"]
    assert f"declared type {declared} does not match the data, which is {actual}" in message


@pytest.mark.parametrize("declared", ["image/jpeg", "image/jpg", "", "application/octet-stream"])
def test_a_data_uri_typed_right_or_untyped_is_read(vlm_url, declared):
    uri = f"data:{declared};base64,{encoded('JPEG')}"
    response = ask(vlm_url, [image_part(uri), {"type": "text", "text": "x"}], max_tokens=1)
    assert response.status_code == 200, response.text


def test_too_many_images_is_422(vlm_url):
    response = ask(vlm_url, [image_part(DATA_URI)] * 9 + [{"type": "text", "text": "x"}])
    assert response.status_code == 422 and "at most 8 images" in response.text
