"""The kinds of item an embedding request can carry."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextItem:
    text: str


@dataclass(frozen=True)
class ImageItem:
    """An image by reference: an http(s) URL, a data URI, raw base64, or a local path."""

    source: str


@dataclass(frozen=True)
class PdfItem:
    """A PDF by reference (an http(s) URL, a data URI or raw base64): one input per page."""

    source: str


Item = TextItem | ImageItem | PdfItem


def is_image_string(value: str) -> bool:
    """A bare string in `input` is an image when it is a data URI of an image."""
    return value.startswith("data:image/")


def is_pdf_string(value: str) -> bool:
    """A bare string in `input` is a PDF when it is a data URI of a PDF."""
    return value.startswith("data:application/pdf")
