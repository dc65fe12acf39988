"""The prompt of a grounded answer: numbered sources above the question, page images of PDF
hits for models that read images."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

from polyseek.errors import InvalidInput
from polyseek.models.base import ChatMessage
from polyseek.retrieval.grounding import (
    NO_SOURCES,
    SOURCE_CHARS,
    ground,
    question_of,
    source_images,
    sources_of,
)
from polyseek.retrieval.search import Hit

sys.path.insert(0, str(Path(__file__).parent))
from test_retrieval import make_pdf  # noqa: E402


def hit(path: str, text: str, page: int | None = None, mime: str = "text/plain",
        score: float = 0.5) -> Hit:
    return Hit(f"id-{path}-{page}", score, path, page, 0, text, mime)


def test_sources_are_numbered_in_the_system_message_before_the_callers_own():
    messages = [ChatMessage("system", ["Be brief."]), ChatMessage("user", ["What is a tide?"]),
                ChatMessage("assistant", ["A rise of the sea."]),
                ChatMessage("user", ["What ", "causes it?"])]
    sources = sources_of([hit("tides.txt", "The Moon pulls\n the oceans.", score=0.9),
                          hit("report.pdf", "x" * (SOURCE_CHARS + 50), page=3)])
    assert [s.number for s in sources] == [1, 2]
    grounded = ground(messages, sources)
    assert grounded[1:] == messages[1:]  # the turns as they were
    (system,) = grounded[0].content
    assert grounded[0].role == "system" and system.endswith("\n\nBe brief.")
    one = system.index("[1] tides.txt\nThe Moon pulls the oceans.")
    two = system.index("[2] report.pdf, page 3\n" + "x" * (SOURCE_CHARS - 1) + "…\n")
    assert "like [1]" in system[:one] and one < two


def test_no_system_message_no_hits_and_no_question():
    grounded = ground([ChatMessage("user", ["Anything?"])], [])
    assert [m.role for m in grounded] == ["system", "user"]
    assert NO_SOURCES in grounded[0].content[0] and grounded[1].content == ["Anything?"]
    with pytest.raises(InvalidInput) as error:
        question_of([ChatMessage("user", ["hi"]), ChatMessage("user", [" "])])
    assert error.value.loc == ("messages", 1, "content")


def test_page_images_of_pdf_and_image_hits_one_per_page_best_first(tmp_path):
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(make_pdf(["first page", "second page"]))
    picture = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), "red").save(picture)
    sources = sources_of([
        hit(str(pdf), "second page", page=2, mime="application/pdf"),
        hit(str(pdf), "second page again", page=2, mime="application/pdf"),  # same page
        hit(str(tmp_path / "gone.pdf"), "no file", page=1, mime="application/pdf"),
        hit("a-document-id", "text only"),
        hit(str(picture), "", mime="image/png"),
        hit(str(pdf), "first page", page=1, mime="application/pdf"),
    ])
    found = source_images(sources, limit=3)
    assert [s.number for s, _ in found] == [1, 5, 6]
    page, photo, _ = (image for _, image in found)
    assert page.size == (918, 1188) and photo.size == (40, 30)  # 612x792 pt at 1.5
    grounded = ground([ChatMessage("user", ["When?"])], sources, found[:1])
    assert grounded[1].content == ["Page image of source [1]:\n", page, "\nWhen?"]
