"""Readers of HTML (main text only), DOCX and EPUB on real files, and the chunker on them."""

from __future__ import annotations

import zipfile

import pytest
from sample_documents import (
    DOCX_HEADER,
    DOCX_PARAGRAPHS,
    EPUB_CHAPTERS,
    EPUB_NAV,
    HTML_CHROME,
    HTML_PAGE,
    HTML_TEXTS,
    write_docx,
    write_epub,
)

from polyseek.inputs.chunking import chunk_spans
from polyseek.inputs.formats import docx_text, epub_text, html_text
from polyseek.retrieval.documents import classify


def test_html_keeps_the_main_text_in_paragraphs():
    text = html_text(HTML_PAGE)
    assert all(t in text for t in HTML_TEXTS)
    assert not [chrome for chrome in HTML_CHROME if chrome in text]
    paragraphs = text.split("\n\n")
    assert paragraphs[:2] == ["Lighthouses", "How lighthouses guide ships"]
    # source line breaks inside a paragraph are spaces, as a browser shows them
    assert "A lighthouse flashes a pattern of light that sailors read on their charts, so " \
        "each tower can be told apart at night." in paragraphs


def test_html_without_main_reads_the_body_but_its_chrome():
    page = ("<html><body><nav>Menu Home About</nav><h1>Alps</h1><p>Glaciers carve "
            "valleys &amp; peaks.</p><ul><li>Eiger</li><li>Jungfrau</li></ul>"
            "<div role='navigation'>Breadcrumbs</div><p hidden>secret</p>"
            "<footer>Imprint</footer></body></html>")
    assert html_text(page) == "Alps\n\nGlaciers carve valleys & peaks.\n\nEiger\nJungfrau"
    assert html_text(page.encode("utf-8")) == html_text(page)
    latin1 = '<meta charset="iso-8859-1"><p>caf\xe9</p>'.encode("latin-1")
    assert html_text(latin1) == "café"
    assert html_text("") == html_text("<script>x()</script>") == ""


def test_docx_paragraphs_and_tables_without_page_headers(tmp_path):
    text = docx_text(write_docx(tmp_path / "bees.docx"))
    assert text.split("\n\n")[:3] == DOCX_PARAGRAPHS
    assert "Hive part | Purpose\nBrood box | where the queen lays eggs" in text
    assert DOCX_HEADER not in text


def test_epub_chapters_in_spine_order_without_the_navigation(tmp_path):
    text = epub_text(write_epub(tmp_path / "comets.epub"))
    (first_title, first), (second_title, second) = reversed(EPUB_CHAPTERS.values())
    assert text.index(first[0]) < text.index(second[0])  # the spine's order, not the files'
    assert all(p in text for p in [*first, *second])
    assert EPUB_NAV not in text
    # the chunker cuts the Japanese chapter at its sentence ends
    spans = chunk_spans(text, 16)
    assert [text[s:e] for s, e in spans][:3] == ["彗星", *first]


def test_broken_files_raise(tmp_path):
    (tmp_path / "bad.docx").write_bytes(b"not a zip")
    (tmp_path / "bad.epub").write_bytes(b"PK\x03\x04 truncated")
    with zipfile.ZipFile(tmp_path / "nocontainer.epub", "w") as archive:
        archive.writestr("mimetype", "application/epub+zip")
    with pytest.raises(Exception, match="not a zip|Package not found|File is not"):
        docx_text(tmp_path / "bad.docx")
    with pytest.raises(zipfile.BadZipFile):
        epub_text(tmp_path / "bad.epub")
    with pytest.raises(ValueError, match="no META-INF/container.xml"):
        epub_text(tmp_path / "nocontainer.epub")


def test_formats_are_classified_by_extension(tmp_path):
    for name, mime in [("a.docx", "application/vnd.openxmlformats-officedocument."
                                  "wordprocessingml.document"),
                       ("a.epub", "application/epub+zip"), ("a.html", "text/html")]:
        (tmp_path / name).write_bytes(b"PK\x03\x04")
        assert classify(tmp_path / name, ("text",)) == (mime, "")
