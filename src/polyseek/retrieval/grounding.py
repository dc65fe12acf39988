"""Grounded answers: search hits become numbered sources in the chat prompt.

The question (the last user turn's text) is searched; its hits are numbered from 1 and put in
the system message with an instruction to cite them as `[1]` (a small model answers the
question better there than with the sources in its turn). For a chat model
that reads images, the pages of PDF hits (and image hits) go in as images too. What the model
writes is then checked by `citations.CitationFilter`. No model and no HTTP here: the caller
searches and generates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from polyseek.errors import InvalidInput
from polyseek.models.base import ChatMessage
from polyseek.retrieval.search import Hit

DEFAULT_SOURCES = 5  # hits put in the prompt
MAX_SOURCES = 20
SOURCE_CHARS = 1500  # of each hit's text in the prompt
MAX_SOURCE_IMAGES = 2  # page images per answer, for chat models that read images
PDF_PAGE_SCALE = 1.5  # 108 dpi, as ingestion renders pages for image models
INSTRUCTION = ("Answer the question using only the numbered sources below. Cite the source of "
               "each fact with its number in square brackets, like [1]. If the sources do not "
               "answer the question, say so.")
NO_SOURCES = ("No documents matched the question. Say that the documents do not answer it.")


@dataclass
class Source:
    """A hit as the answer cites it: `[number]`."""

    number: int
    id: str
    path: str
    page: int | None
    chunk: int
    score: float
    text: str
    mime: str
    thumbnail: str | None = None
    cited: bool = False  # the answer cites it

    def label(self) -> str:
        return self.path + (f", page {self.page}" if self.page is not None else "")

    def as_dict(self) -> dict:
        return asdict(self)


def sources_of(hits: Sequence[Hit]) -> list[Source]:
    """Hits, best first, numbered from 1."""
    return [Source(i, h.id, h.path, h.page, h.chunk, h.score, h.text, h.mime, h.thumbnail)
            for i, h in enumerate(hits, start=1)]


def question_of(messages: Sequence[ChatMessage]) -> tuple[int, str]:
    """The last user turn (its index) and its text: what is searched."""
    index = max(i for i, m in enumerate(messages) if m.role == "user")
    text = "".join(p for p in messages[index].content if isinstance(p, str)).strip()
    if not text:
        raise InvalidInput("a grounded answer needs a question: the last user message has "
                           "no text to search with", ("messages", index, "content"))
    return index, text


def sources_block(sources: Sequence[Source]) -> str:
    """The sources as the prompt lists them: `[n] path, page p` and the text."""
    if not sources:
        return NO_SOURCES
    parts = []
    for source in sources:
        text = " ".join(source.text.split())
        if len(text) > SOURCE_CHARS:
            text = text[: SOURCE_CHARS - 1] + "…"
        parts.append(f"[{source.number}] {source.label()}\n{text or '(an image)'}")
    return "Sources:\n\n" + "\n\n".join(parts)


def ground(messages: Sequence[ChatMessage], sources: Sequence[Source],
           images: Sequence[tuple[Source, Image.Image]] = ()) -> list[ChatMessage]:
    """`messages` with the instruction and the numbered sources in the system message (before
    the caller's own system text, if any), and the sources' page `images`, each captioned with
    its number, before the last user turn's content."""
    index, _ = question_of(messages)
    grounded = list(messages)
    if images:
        pages: list[str | Image.Image] = []
        for source, image in images:
            pages += [f"Page image of source [{source.number}]:\n", image, "\n"]
        grounded[index] = ChatMessage("user", joined([*pages, *messages[index].content]))
    system = f"{INSTRUCTION}\n\n{sources_block(sources)}"
    first = next((i for i, m in enumerate(grounded) if m.role == "system"), None)
    if first is None:
        grounded.insert(0, ChatMessage("system", [system]))
    else:
        grounded[first] = ChatMessage("system", joined([system + "\n\n",
                                                        *grounded[first].content]))
    return grounded


def joined(parts: Sequence[str | Image.Image]) -> list[str | Image.Image]:
    """`parts` with adjacent text in one piece."""
    content: list[str | Image.Image] = []
    for part in parts:
        if isinstance(part, str) and content and isinstance(content[-1], str):
            content[-1] += part
        else:
            content.append(part)
    return content


def source_images(sources: Sequence[Source], limit: int = MAX_SOURCE_IMAGES
                  ) -> list[tuple[Source, Image.Image]]:
    """The page images of PDF hits and the pictures of image hits, best first, one per page,
    at most `limit`; hits whose file is gone are skipped."""
    found: list[tuple[Source, Image.Image]] = []
    seen: set[tuple[str, int | None]] = set()
    for source in sources:
        if len(found) >= limit:
            break
        key = (source.path, source.page)
        if key in seen:
            continue
        seen.add(key)
        image = page_image(Path(source.path), source.mime, source.page)
        if image is not None:
            found.append((source, image))
    return found


def page_image(path: Path, mime: str, page: int | None) -> Image.Image | None:
    """PDF page `page` of `path` rendered, or the picture an image hit came from; None when
    the file is not there (a document given to /v1/index has no file) or cannot be read."""
    if not path.is_file():
        return None
    try:
        if mime == "application/pdf" and page is not None:
            import pypdfium2 as pdfium

            from polyseek.inputs.pdf import PDFIUM_LOCK

            with PDFIUM_LOCK:  # PDFium is not thread-safe
                pdf = pdfium.PdfDocument(path)
                try:
                    return pdf[page - 1].render(scale=PDF_PAGE_SCALE).to_pil().convert("RGB")
                finally:
                    pdf.close()
        if mime.startswith("image/"):
            from polyseek.inputs.images import load_image

            return load_image(path.read_bytes())
    except Exception:  # a file changed or broken since it was indexed: answer without it
        return None
    return None
