"""Source files to chunks: text and Markdown by tokens, PDFs by page, images whole."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from polyseek.inputs.chunking import hf_offsets
from polyseek.inputs.images import load_image

TEXT_TYPES = {".txt": "text/plain", ".md": "text/markdown", ".markdown": "text/markdown"}
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".webp": "image/webp"}
PDF_TYPE = "application/pdf"
PDF_RENDER_SCALE = 1.5  # 108 dpi: page images of a size image encoders tile well
THUMBNAIL_SCALE = 0.4  # 29 dpi: a page preview for search results

Offsets = Callable[[str], list[tuple[int, int]]]


@dataclass
class Chunk:
    """One point's content: a text piece or an image, with where it came from."""

    mime: str
    text: str = ""
    image: Image.Image | None = None
    page: int | None = None  # 1-based, for PDFs
    thumbnail: Image.Image | None = None  # preview of the source: the image or the PDF page

    @property
    def content_hash(self) -> str:
        if self.image is not None:
            return hashlib.sha256(self.image.tobytes()).hexdigest()
        return hashlib.sha256(self.text.encode()).hexdigest()


def mime_type(path: Path) -> str | None:
    """The mime type of a supported file, None for anything else."""
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return PDF_TYPE
    return TEXT_TYPES.get(suffix) or IMAGE_TYPES.get(suffix)


def discover(paths: Iterable[str | Path], modalities: tuple[str, ...]) -> list[Path]:
    """Supported files under `paths` (files or folders), resolved, sorted, without duplicates.

    Images are listed only for image-capable models; hidden files and folders are skipped.
    """
    found: set[Path] = set()
    for root in map(Path, paths):
        candidates = [root] if root.is_file() else root.rglob("*")
        for path in candidates:
            rel = path.relative_to(root).parts if path != root else ()
            if any(part.startswith(".") for part in rel) or not path.is_file():
                continue
            mime = mime_type(path)
            if mime and (not mime.startswith("image/") or "image" in modalities):
                found.add(path.resolve())
    return sorted(found)


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_fields(path: Path) -> dict:
    """What every chunk of a file records to be filtered on: extension, size (bytes) and
    modification time (Unix seconds)."""
    stat = path.stat()
    return {"extension": path.suffix.lower(), "size": stat.st_size, "modified": stat.st_mtime}


def token_windows(text: str, offsets: Offsets, size: int, overlap: int) -> list[str]:
    """Chunks of at most `size` tokens, each starting `size - overlap` tokens after the last."""
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, {size}) (got {overlap})")
    spans = offsets(text)
    chunks = []
    for start in range(0, max(len(spans) - overlap, 1), size - overlap):
        window = spans[start : start + size]
        if window:
            chunks.append(text[window[0][0] : window[-1][1]].strip())
    return [c for c in chunks if c]


def whitespace_offsets(text: str) -> list[tuple[int, int]]:
    """Word offsets, for models without a fast tokenizer."""
    return [m.span() for m in re.finditer(r"\S+", text)]


def offsets_for(model) -> Offsets:
    tokenizer = getattr(model, "tokenizer", None)
    return hf_offsets(tokenizer) if getattr(tokenizer, "is_fast", False) else whitespace_offsets


def text_chunks(text: str, model, size: int, overlap: int,
                mime: str = "text/plain") -> list[Chunk]:
    """Overlapping token windows of `text`, each a chunk."""
    return [Chunk(mime, text=c) for c in token_windows(text, offsets_for(model), size, overlap)]


def read_chunks(path: Path, model, size: int, overlap: int) -> list[Chunk]:
    """The chunks of one file for `model`; raises on an unreadable or corrupt file."""
    mime = mime_type(path)
    modalities = model.capabilities.modalities
    if mime in TEXT_TYPES.values():
        return text_chunks(path.read_text(encoding="utf-8"), model, size, overlap, mime)
    if mime == PDF_TYPE:
        return list(pdf_chunks(path, model, size, overlap))
    if mime and mime.startswith("image/") and "image" in modalities:
        picture = load_image(path.read_bytes())  # upright RGB, within the default limits
        return [Chunk(mime, image=picture, thumbnail=picture)]
    raise ValueError(f"unsupported file type for this model: {path.name}")


def pdf_chunks(path: Path, model, size: int, overlap: int) -> Iterator[Chunk]:
    """Text-layer chunks (text models) and page images (image models), page by page."""
    import pypdfium2 as pdfium

    modalities = model.capabilities.modalities
    offsets = offsets_for(model)
    pdf = pdfium.PdfDocument(path)
    try:
        for number, page in enumerate(pdf, start=1):
            preview = page.render(scale=THUMBNAIL_SCALE).to_pil().convert("RGB")
            if "text" in modalities:
                text = page.get_textpage().get_text_range().replace("\r\n", "\n")
                for piece in token_windows(text, offsets, size, overlap):
                    yield Chunk(PDF_TYPE, text=piece, page=number, thumbnail=preview)
            if "image" in modalities:
                image = page.render(scale=PDF_RENDER_SCALE).to_pil().convert("RGB")
                yield Chunk(PDF_TYPE, image=image, page=number, thumbnail=preview)
    finally:
        pdf.close()
