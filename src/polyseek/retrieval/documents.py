"""Source files to chunks: text, Markdown, HTML, DOCX, EPUB and PDF text by the chunker
(paragraphs and sentences kept whole where they fit), PDF pages and images whole.

Which files are read: PDFs, images (for image models), Word documents (`.docx`), EPUBs, and
text: `.txt` and Markdown, HTML (its main text: no navigation, page chrome, scripts or
styles), and any other file whose first bytes are UTF-8 text without NULs (source code,
reStructuredText, JSON, CSV, README, LICENSE, ...). Everything else is skipped with a reason
(`classify`); hidden files and folders are not looked at.
"""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from polyseek.inputs.chunking import TokenLengths, chunk_with_overlap, hf_offsets, word_offsets
from polyseek.inputs.formats import docx_text, epub_text, html_text
from polyseek.inputs.images import load_image
from polyseek.inputs.pdf import RENDER_SCALE, pdf_pages

TEXT_TYPES = {".txt": "text/plain", ".md": "text/markdown", ".markdown": "text/markdown"}
HTML_TYPE = "text/html"
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
# mime types recorded for other text files by extension; any other text file is text/plain
TEXT_LIKE_TYPES = {".rst": "text/x-rst", ".py": "text/x-python", ".json": "application/json",
                   ".csv": "text/csv", ".tsv": "text/tab-separated-values",
                   ".xml": "application/xml", ".yaml": "application/yaml",
                   ".yml": "application/yaml", ".toml": "application/toml",
                   ".js": "text/javascript", ".css": "text/css"}
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".webp": "image/webp", ".gif": "image/gif", ".bmp": "image/bmp",
               ".tif": "image/tiff", ".tiff": "image/tiff"}
PDF_TYPE = "application/pdf"
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
EPUB_TYPE = "application/epub+zip"
DOCUMENT_TYPES = {".pdf": PDF_TYPE, ".docx": DOCX_TYPE, ".epub": EPUB_TYPE}
PDF_RENDER_SCALE = RENDER_SCALE  # 108 dpi: page images of a size image encoders tile well
THUMBNAIL_SCALE = 0.4  # 29 dpi: a page preview for search results
SNIFF_BYTES = 8192  # how much of a file of unknown type is read to tell text from binary

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
    """The mime type of a file by its name: PDF, DOCX, EPUB, images and the text types known by
    extension; None for anything else (which may still be text: see `classify`)."""
    suffix = path.suffix.lower()
    if suffix in DOCUMENT_TYPES:
        return DOCUMENT_TYPES[suffix]
    if suffix in HTML_SUFFIXES:
        return HTML_TYPE
    return TEXT_TYPES.get(suffix) or IMAGE_TYPES.get(suffix)


def looks_like_text(path: Path) -> bool:
    """Whether the file's first bytes are UTF-8 without NULs (an empty file is text)."""
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if b"\0" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # may end mid-char
    except UnicodeDecodeError:
        return False
    return True


def classify(path: Path, modalities: tuple[str, ...]) -> tuple[str | None, str]:
    """(mime type, "") for a file that indexing reads with a model of `modalities`, or
    (None, why it is skipped)."""
    mime = mime_type(path)
    if mime and mime.startswith("image/"):
        return (mime, "") if "image" in modalities else (None, "image; the model reads text only")
    if mime:
        return mime, ""
    try:
        text = looks_like_text(path)
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    if text:
        return TEXT_LIKE_TYPES.get(path.suffix.lower(), "text/plain"), ""
    return None, "binary file (not UTF-8 text)"


def survey(paths: Iterable[str | Path],
           modalities: tuple[str, ...]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The files under `paths` (files or folders) that indexing reads, resolved and sorted,
    and the (path, reason) of those it skips. Hidden files and folders are neither."""
    found: set[Path] = set()
    skipped: dict[Path, str] = {}
    for root in map(Path, paths):
        candidates = [root] if root.is_file() else root.rglob("*")
        for path in candidates:
            rel = path.relative_to(root).parts if path != root else ()
            if any(part.startswith(".") for part in rel) or not path.is_file():
                continue
            mime, reason = classify(path, modalities)
            if mime:
                found.add(path.resolve())
            else:
                skipped[path.resolve()] = reason
    return sorted(found), [(str(p), skipped[p]) for p in sorted(skipped)]


def discover(paths: Iterable[str | Path], modalities: tuple[str, ...]) -> list[Path]:
    """The files under `paths` that indexing reads (see `survey`)."""
    return survey(paths, modalities)[0]


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


whitespace_offsets = word_offsets  # for models without a fast tokenizer


def offsets_for(model) -> Offsets:
    tokenizer = getattr(model, "tokenizer", None)
    return hf_offsets(tokenizer) if getattr(tokenizer, "is_fast", False) else word_offsets


def chunk_texts(text: str, offsets: Offsets, size: int, overlap: int) -> list[str]:
    """`text` cut by the chunker into pieces of at most `size` tokens, each after the first
    starting with up to `overlap` tokens of the one before."""
    lengths = TokenLengths(offsets(text))
    return [text[s:e] for s, e in chunk_with_overlap(text, size, overlap, lengths)]


def text_chunks(text: str, model, size: int, overlap: int,
                mime: str = "text/plain") -> list[Chunk]:
    """The chunks of `text` for `model`: see `chunk_texts`."""
    return [Chunk(mime, text=c) for c in chunk_texts(text, offsets_for(model), size, overlap)]


def read_chunks(path: Path, model, size: int, overlap: int) -> list[Chunk]:
    """The chunks of one file for `model`; raises on an unreadable or corrupt file."""
    mime, reason = classify(path, model.capabilities.modalities)
    if mime is None:
        raise ValueError(f"{path.name}: {reason}")
    if mime == PDF_TYPE:
        return list(pdf_chunks(path, model, size, overlap))
    if mime.startswith("image/"):
        picture = load_image(path.read_bytes())  # upright RGB, within the default limits
        return [Chunk(mime, image=picture, thumbnail=picture)]
    return text_chunks(file_text(path, mime), model, size, overlap, mime)


def file_text(path: Path, mime: str) -> str:
    """The text of a text, HTML, DOCX or EPUB file."""
    if mime == DOCX_TYPE:
        return docx_text(path)
    if mime == EPUB_TYPE:
        return epub_text(path)
    if mime == HTML_TYPE:
        return html_text(path.read_bytes())
    return path.read_text(encoding="utf-8")


def pdf_chunks(path: Path, model, size: int, overlap: int) -> Iterator[Chunk]:
    """Text-layer chunks (text models) and page images (image models), page by page."""
    modalities = model.capabilities.modalities
    offsets = offsets_for(model)
    for page in pdf_pages(path, text="text" in modalities, image="image" in modalities,
                          scale=PDF_RENDER_SCALE, thumbnail_scale=THUMBNAIL_SCALE):
        if page.text is not None:
            for piece in chunk_texts(page.text, offsets, size, overlap):
                yield Chunk(PDF_TYPE, text=piece, page=page.number, thumbnail=page.thumbnail)
        if page.image is not None:
            yield Chunk(PDF_TYPE, image=page.image, page=page.number, thumbnail=page.thumbnail)
