"""PDFs → pages: each page's text layer and/or a rendering of it, with pypdfium2.

Used by the embeddings API (`{"pdf": ...}` inputs: a reference read like an image's, within
the same `ImageLimits`, plus `max_pdf_pages`) and by ingestion (`retrieval.documents`).
PDFium is not thread-safe, so every call into it holds `PDFIUM_LOCK`; the lock is released
between pages, so a slow consumer of `pdf_pages` does not stall other PDFs.

A file that is not a PDF, is damaged, or needs a password raises `InvalidInput` (HTTP 422);
a PDF with more pages than allowed raises `InputTooLarge` (413).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pypdfium2 as pdfium
from PIL import Image

from polyseek.errors import InputTooLarge, InvalidInput
from polyseek.inputs.images import DEFAULT_LIMITS, ImageLimits, data_uri_type, read_reference

PDFIUM_LOCK = threading.RLock()
RENDER_SCALE = 1.5  # 108 dpi: page images of a size image encoders tile well
_PASSWORD_ERROR = 4  # FPDF_ERR_PASSWORD
_PDF_TYPES = frozenset({"", "application/pdf", "application/x-pdf", "application/octet-stream"})


@dataclass
class PdfPage:
    """One page: its 1-based number, and what was asked for of it."""

    number: int
    text: str | None = None  # the text layer, "\r\n" made "\n"
    image: Image.Image | None = None  # RGB rendering
    thumbnail: Image.Image | None = None  # a small RGB rendering


def read_pdf(source: str, limits: ImageLimits = DEFAULT_LIMITS) -> bytes:
    """The bytes of a PDF reference (an http(s) URL, a data URI or base64), fetched and
    bounded as images are; refused unless they start like a PDF."""
    data, origin = read_reference(source, limits, kind="PDF")
    declared = data_uri_type(source) if source.strip()[:5].lower() == "data:" else ""
    if declared not in _PDF_TYPES:
        raise InvalidInput(f"{origin}: declared type {declared} is not application/pdf")
    if b"%PDF-" not in data[:1024]:
        raise InvalidInput(f"{origin}: not a PDF (no %PDF- header)")
    return data


def pdf_pages(source: bytes | str | Path, *, text: bool = False, image: bool = False,
              scale: float = RENDER_SCALE, thumbnail_scale: float | None = None,
              max_pixels: int | None = None, max_pages: int | None = None
              ) -> Iterator[PdfPage]:
    """The pages of a PDF (bytes or a file path), in order, with their text layer (`text`),
    a rendering at `scale` (`image`) and/or at `thumbnail_scale`.

    max_pixels: a page whose rendering would be larger is rendered at the scale that fits.
    max_pages: more pages than this raises `InputTooLarge` before any page is read.
    """
    with PDFIUM_LOCK:
        document = _open(source)
    try:
        with PDFIUM_LOCK:
            count = len(document)
        if max_pages is not None and count > max_pages:
            raise InputTooLarge(f"PDF has {count} pages, over the {max_pages}-page limit")
        if count == 0:
            raise InvalidInput("PDF has no pages")
        for index in range(count):
            with PDFIUM_LOCK:
                page = _read_page(document, index, text, image, scale, thumbnail_scale,
                                  max_pixels)
            yield page
    finally:
        with PDFIUM_LOCK:
            document.close()


def _open(source: bytes | str | Path) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(source)
    except pdfium.PdfiumError as error:
        if getattr(error, "err_code", None) == _PASSWORD_ERROR:
            raise InvalidInput("PDF is encrypted and needs a password to open") from None
        raise InvalidInput(f"broken or unreadable PDF ({_reason(error)})") from None


def _read_page(document: pdfium.PdfDocument, index: int, text: bool, image: bool,
               scale: float, thumbnail_scale: float | None, max_pixels: int | None) -> PdfPage:
    number = index + 1
    try:
        page = document[index]
    except pdfium.PdfiumError as error:
        raise InvalidInput(f"page {number} of the PDF is broken ({_reason(error)})") from None
    try:
        out = PdfPage(number)
        if text:
            textpage = page.get_textpage()
            out.text = textpage.get_text_range().replace("\r\n", "\n")
            textpage.close()
        if image:
            out.image = _render(page, number, scale, max_pixels)
        if thumbnail_scale is not None:
            out.thumbnail = _render(page, number, thumbnail_scale, max_pixels)
        return out
    except pdfium.PdfiumError as error:
        raise InvalidInput(f"page {number} of the PDF is broken ({_reason(error)})") from None
    finally:
        page.close()


def _render(page: pdfium.PdfPage, number: int, scale: float,
            max_pixels: int | None) -> Image.Image:
    """The page as RGB at `scale` (1 = 72 dpi), or smaller to stay within `max_pixels`."""
    width, height = page.get_size()
    if not (width > 0 and height > 0 and math.isfinite(width * height)):
        raise InvalidInput(f"page {number} of the PDF has no area ({width}x{height} points)")
    if max_pixels is not None:
        scale = min(scale, math.sqrt(max_pixels / (width * height)) * 0.999)
    return page.render(scale=scale).to_pil().convert("RGB")


def _reason(error: Exception) -> str:
    """PDFium's reason without pypdfium2's "Failed to load document (PDFium: ...)" wrapping."""
    message = str(error)
    inner = message.partition("PDFium: ")[2].rstrip(").")
    return inner or message
