"""inputs.pdf: a PDF's pages as text and renderings, within limits, from any thread."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import pytest

from polyseek.errors import InputTooLarge, InvalidInput
from polyseek.inputs.images import ImageLimits
from polyseek.inputs.pdf import pdf_pages, read_pdf

from pdf_files import make_pdf

PAGES = ["First page.", "Second page.", "Third page."]


def test_pages_give_text_renderings_and_thumbnails_in_order(tmp_path):
    path = tmp_path / "three.pdf"
    path.write_bytes(make_pdf(PAGES))
    pages = list(pdf_pages(path, text=True, image=True, scale=1.0, thumbnail_scale=0.25))
    assert [(p.number, p.text) for p in pages] == [(1, PAGES[0]), (2, PAGES[1]), (3, PAGES[2])]
    assert {p.image.size for p in pages} == {(612, 792)}
    assert {p.thumbnail.size for p in pages} == {(153, 198)}
    assert {p.image.mode for p in pages} == {"RGB"}


def test_only_what_is_asked_for_is_read():
    (page,) = pdf_pages(make_pdf(["Only text."]), text=True)
    assert page.text == "Only text." and page.image is None and page.thumbnail is None


def test_a_huge_page_is_rendered_within_the_pixel_cap():
    poster = make_pdf(["A poster."], size=(14400, 7200))  # 200 x 100 inches
    (page,) = pdf_pages(poster, image=True, max_pixels=1_000_000)
    width, height = page.image.size
    assert width * height <= 1_000_000 and width > 1000
    assert abs(width / height - 2) < 0.01


def test_the_page_limit_is_checked_before_any_page_is_read():
    pages = pdf_pages(make_pdf(PAGES), text=True, max_pages=2)
    with pytest.raises(InputTooLarge, match="PDF has 3 pages, over the 2-page limit"):
        next(pages)


@pytest.mark.parametrize(("data", "error", "words"), [
    (make_pdf(PAGES, user_password="pw"), InvalidInput, "encrypted and needs a password"),
    (b"%PDF-1.7\n%%EOF\n", InvalidInput, "broken or unreadable PDF"),
])
def test_unreadable_pdfs(data, error, words):
    with pytest.raises(error, match=words):
        list(pdf_pages(data, text=True))


def test_read_pdf_takes_base64_and_data_uris_and_checks_the_header():
    data = make_pdf(PAGES)
    encoded = base64.b64encode(data).decode()
    assert read_pdf(encoded) == read_pdf("data:application/pdf;base64," + encoded) == data
    assert read_pdf(base64.b64encode(b"\xef\xbb\xbf" + data).decode()).endswith(data)
    with pytest.raises(InvalidInput, match="not a PDF"):
        read_pdf(base64.b64encode(b"<html>a web page</html>").decode())
    with pytest.raises(InputTooLarge, match="PDF is larger than the 100-byte limit"):
        read_pdf(encoded, ImageLimits(max_bytes=100))


def test_pages_are_read_safely_from_many_threads():
    """PDFium is not thread-safe: concurrent readers (the API, ingestion) take turns."""
    documents = [make_pdf([f"Document {d}, page {p}." for p in range(3)]) for d in range(4)]

    def read(d: int) -> list[str | None]:
        return [page.text for page in pdf_pages(documents[d % 4], text=True, image=True,
                                                scale=0.5)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(read, range(32)))
    assert results == [[f"Document {d % 4}, page {p}." for p in range(3)] for d in range(32)]


def test_the_page_limit_must_be_positive():
    with pytest.raises(ValueError, match="max_pdf_pages"):
        ImageLimits(max_pdf_pages=0)
