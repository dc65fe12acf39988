"""PDF inputs to /v1/embeddings through a real server: one result per page, the text layer
for a text-only model (multilingual-e5-small), the rendered page for an image model (the tiny
jina-clip-v2); inline and by URL, behind the same guard and limits as images."""

from __future__ import annotations

import base64
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pypdfium2 as pdfium
import pytest

from polyseek.api.app import ServerSettings, create_app
from polyseek.inputs.images import ImageLimits
from polyseek.runtime.registry import DEFAULT_SPEC, ModelSpec

from pdf_files import make_pdf
from support import DEFAULT_MODEL, serve_in_thread, write_tiny_jina_clip_v2

CLIP = "clip-tiny"  # the tiny random jina-clip-v2: reads text and images
PAGES = ["The cat sleeps on the warm windowsill.", "Stock markets fell sharply on Monday.",
         "Die Katze schläft auf der Fensterbank."]
REPORT = make_pdf(PAGES)
MAX_PAGES = 4  # the servers' page limit here
MAX_INPUTS = 8  # and their limit on inputs per request, pages counted


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def vectors(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array([item["embedding"] for item in response.json()["data"]])


class FileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    files: dict[str, bytes]
    seen: list[tuple[str, str | None]]  # (path, Accept header)


class Handler(http.server.BaseHTTPRequestHandler):
    server: FileServer

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Accept")))
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/pdf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def files() -> Iterator[FileServer]:
    """A local web server with a PDF and a text file."""
    server = FileServer(("127.0.0.1", 0), Handler)
    server.files = {"/report.pdf": REPORT, "/notes.txt": b"plain text, not a PDF"}
    server.seen = []
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def file_url(server: FileServer, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> Iterator[str]:
    """multilingual-e5-small and the tiny jina-clip-v2; private URLs allowed (for the local
    file server), MAX_PAGES pages per PDF, MAX_INPUTS inputs per request."""
    clip = write_tiny_jina_clip_v2(Path(tmp_path_factory.mktemp("clip")))
    settings = ServerSettings(
        models=[DEFAULT_SPEC, ModelSpec(CLIP, str(clip))], max_inputs=MAX_INPUTS,
        image_limits=ImageLimits(allow_private_urls=True, max_pdf_pages=MAX_PAGES),
        data_dir=str(tmp_path_factory.mktemp("store")))
    with serve_in_thread(create_app(settings)) as base:
        yield base


def embed(url: str, inputs, model: str = DEFAULT_MODEL, **extra) -> httpx.Response:
    return httpx.post(f"{url}/v1/embeddings", timeout=120,
                      json={"model": model, "input": inputs, **extra})


def rendered_png(pdf: bytes, index: int) -> bytes:
    """Page `index` rendered as the server renders it (1.5 x 72 dpi), as a PNG."""
    document = pdfium.PdfDocument(pdf)
    try:
        image = document[index].render(scale=1.5).to_pil().convert("RGB")
    finally:
        document.close()
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


# --- text-only model: the text layer, page by page --------------------------------------


def test_a_text_model_embeds_each_page_text_between_the_other_inputs(url):
    response = embed(url, ["before", {"pdf": b64(REPORT)}, {"text": "after"}])
    got = vectors(response)
    data = response.json()["data"]
    assert [d["index"] for d in data] == [0, 1, 2, 3, 4]
    assert [d["input_index"] for d in data] == [0, 1, 1, 1, 2]
    assert [d.get("page") for d in data] == [None, 1, 2, 3, None]
    want = vectors(embed(url, ["before", *PAGES, "after"]))
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert response.json()["usage"]["total_tokens"] == \
        embed(url, ["before", *PAGES, "after"]).json()["usage"]["total_tokens"]


def test_a_request_without_pdfs_keeps_the_jina_result_shape(url):
    data = embed(url, ["one", "two"]).json()["data"]
    assert [sorted(d) for d in data] == [["embedding", "index", "object"]] * 2


def test_base64_data_uri_and_bare_data_uri_forms_are_the_same_pdf(url):
    uri = "data:application/pdf;base64," + b64(REPORT)
    plain = vectors(embed(url, {"pdf": b64(REPORT)}))
    for form in ({"pdf": uri}, uri, [uri]):
        np.testing.assert_allclose(vectors(embed(url, form)), plain, atol=1e-6)


def test_pages_without_text_are_left_out_for_a_text_model(url):
    pdf = make_pdf(["First page text.", "", "Third page text."])
    data = embed(url, [{"pdf": b64(pdf)}]).json()["data"]
    assert [d["page"] for d in data] == [1, 3]


def test_a_pdf_without_any_text_is_422_for_a_text_model_but_read_by_an_image_model(url):
    blank = make_pdf(["", ""])
    response = embed(url, ["x", {"pdf": b64(blank)}])
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "input", 1] and "no text layer" in detail["msg"]
    assert [d["page"] for d in embed(url, {"pdf": b64(blank)}, CLIP).json()["data"]] == [1, 2]


def test_a_page_over_the_context_is_named_by_input_and_page(url):
    long_page = " ".join(["word"] * 700)
    pdf = b64(make_pdf(["short page", long_page]))
    response = embed(url, ["x", {"pdf": pdf}])
    assert response.status_code == 413, response.text
    assert "input[1] (page 2) has" in response.json()["error"]["message"]
    assert len(vectors(embed(url, ["x", {"pdf": pdf}], truncate=True))) == 3


def test_task_and_dimensions_apply_to_pages(url):
    got = vectors(embed(url, {"pdf": b64(REPORT)}, task="retrieval.passage", dimensions=64))
    want = vectors(embed(url, PAGES, task="retrieval.passage", dimensions=64))
    assert got.shape == (3, 64)
    np.testing.assert_allclose(got, want, atol=1e-5)


# --- image model: each page rendered ------------------------------------------------------


def test_an_image_model_embeds_each_page_rendered(url):
    pdf = make_pdf(["A page of text.", ""])
    response = embed(url, ["a caption", {"pdf": b64(pdf)}], CLIP)
    got = vectors(response)
    data = response.json()["data"]
    assert [(d["input_index"], d.get("page")) for d in data] == [(0, None), (1, 1), (1, 2)]
    pages = [{"image": b64(rendered_png(pdf, i))} for i in range(2)]
    want = vectors(embed(url, ["a caption", *pages], CLIP))
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(got[1], got[2], atol=1e-3)  # the text shows in the rendering


# --- by URL, behind the address guard ----------------------------------------------------


def test_a_pdf_by_url_is_fetched(url, files):
    response = embed(url, {"pdf": file_url(files, "/report.pdf")})
    assert files.seen[-1] == ("/report.pdf", "application/pdf")
    np.testing.assert_allclose(vectors(response), vectors(embed(url, PAGES)), atol=1e-5)
    assert [d["page"] for d in response.json()["data"]] == [1, 2, 3]


@pytest.mark.parametrize(("path", "words"), [
    ("/missing.pdf", "HTTP 404"), ("/notes.txt", "not a PDF"),
])
def test_url_errors_are_422_naming_the_input(url, files, path, words):
    response = embed(url, ["x", {"pdf": file_url(files, path)}])
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "input", 1]
    assert detail["msg"].startswith("input[1]: ") and words in detail["msg"]


def test_private_urls_are_refused_by_default_before_any_request(client, files):
    """The default server (private URLs disabled) does not fetch from loopback."""
    before = list(files.seen)
    response = client.post("/v1/embeddings", json={
        "model": DEFAULT_MODEL, "input": [{"pdf": file_url(files, "/report.pdf")}]})
    assert response.status_code == 422, response.text
    message = response.json()["detail"][0]["msg"]
    assert "loopback address 127.0.0.1: private URLs are disabled" in message
    assert files.seen == before


def test_other_url_schemes_are_refused(url):
    response = embed(url, {"pdf": "file:///etc/passwd"})
    assert response.status_code == 422 and "only http(s)" in response.text


# --- bad PDFs and limits -----------------------------------------------------------------


@pytest.mark.parametrize(("pdf", "words"), [
    (b64(b"%PDF-1.4\nthis is not a pdf"), "broken or unreadable PDF"),
    (b64(REPORT[: len(REPORT) // 3]), "broken or unreadable PDF"),
    (b64(b"GIF89a, not a PDF at all"), "not a PDF"),
    (b64(make_pdf(PAGES, user_password="secret")), "encrypted and needs a password"),
    ("@@not base64@@", "is not an http(s) URL, a data URI, base64 PDF data"),
    ("data:application/pdf;base64,@@@@", "invalid base64 PDF data"),
    ("data:image/png;base64," + b64(REPORT), "declared type image/png is not application/pdf"),
])
@pytest.mark.parametrize("model", [DEFAULT_MODEL, CLIP])
def test_bad_pdfs_are_422_naming_the_input(url, model, pdf, words):
    response = embed(url, ["x", {"pdf": pdf}], model)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "input", 1]
    assert detail["msg"].startswith("input[1]: ") and words in detail["msg"], detail["msg"]


def test_a_pdf_locked_only_against_editing_is_read(url):
    """An owner password alone (an empty user password) does not stop reading."""
    pdf = make_pdf(PAGES, user_password="", owner_password="owner")
    np.testing.assert_allclose(vectors(embed(url, {"pdf": b64(pdf)})),
                               vectors(embed(url, PAGES)), atol=1e-5)


@pytest.mark.parametrize("model", [DEFAULT_MODEL, CLIP])
def test_a_pdf_over_the_page_limit_is_413(url, model):
    pdf = make_pdf([f"Page {i}." for i in range(MAX_PAGES + 1)])
    response = embed(url, ["x", {"pdf": b64(pdf)}], model)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["message"] == \
        f"input[1]: PDF has {MAX_PAGES + 1} pages, over the {MAX_PAGES}-page limit"


def test_pages_count_towards_the_inputs_limit(url):
    pdf = {"pdf": b64(make_pdf([f"Page {i}." for i in range(MAX_PAGES)]))}
    assert len(vectors(embed(url, [pdf, pdf]))) == MAX_INPUTS
    for inputs in ([pdf, pdf, "one more"], ["one more", pdf, pdf]):
        response = embed(url, inputs)
        assert response.status_code == 413, response.text
        assert f"at most {MAX_INPUTS} per request" in response.json()["error"]["message"]


def test_an_empty_pdf_reference_is_422(url):
    response = embed(url, {"pdf": ""})
    assert response.status_code == 422, response.text


# --- documented ----------------------------------------------------------------------------


def test_openapi_documents_pdf_inputs_and_page_results(url):
    schemas = httpx.get(f"{url}/openapi.json").json()["components"]["schemas"]
    assert schemas["PdfInput"]["required"] == ["pdf"]
    assert "base64" in schemas["PdfInput"]["properties"]["pdf"]["description"]
    request_input = str(schemas["EmbeddingsRequest"]["properties"]["input"])
    assert "#/components/schemas/PdfInput" in request_input
    result = schemas["EmbeddingObject"]["properties"]
    assert {"page", "input_index"} <= set(result)
    assert "1-based" in result["page"]["description"]
