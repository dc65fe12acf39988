"""Small real documents for the format tests (tests/inputs/test_formats.py,
tests/retrieval/test_formats_indexing.py): an HTML page with navigation around its
article, a DOCX written with python-docx, an EPUB in its zip layout."""

from __future__ import annotations

import zipfile
from pathlib import Path

NAVIGATION = "Subscribe to the lighthouse newsletter"  # in the page's chrome, never indexed
HTML_PAGE = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Lighthouses</title>
<style>body {{ font-family: serif; }} .menu {{ color: #123; }}</style>
<script>window.trackingPixel = "analytics beacon";</script></head>
<body>
<header class="site"><nav><a href="/">Home</a> <a href="/shop">Gift shop</a></nav>
  <p>{NAVIGATION}</p></header>
<div class="layout">
  <aside><h3>Related</h3><a href="/ads">Cheap ferry tickets</a></aside>
  <main><article>
    <h1>How lighthouses guide ships</h1>
    <p>A lighthouse flashes a pattern of light that sailors read on their charts,
       so each tower can be told apart at night.</p>
    <p>Fresnel lenses bend the beam of a small lamp into a ray seen thirty kilometres away.</p>
  </article></main>
</div>
<footer><p>Cookie settings and legal notice</p></footer>
</body></html>"""
HTML_TEXTS = ["How lighthouses guide ships", "Fresnel lenses bend the beam"]
HTML_CHROME = [NAVIGATION, "Gift shop", "Cheap ferry tickets", "Cookie settings", "analytics",
               "font-family"]

DOCX_PARAGRAPHS = ["Beekeeping basics",
                   "Honey bees build wax combs of hexagonal cells to store nectar and pollen.",
                   "A queen lays up to two thousand eggs a day in spring."]
DOCX_TABLE = [["Hive part", "Purpose"], ["Brood box", "where the queen lays eggs"]]
DOCX_HEADER = "Confidential draft header"


def write_docx(path: Path) -> Path:
    """A Word document: a heading, paragraphs, a table, and a page header."""
    import docx

    document = docx.Document()
    document.sections[0].header.paragraphs[0].text = DOCX_HEADER
    document.add_heading(DOCX_PARAGRAPHS[0], level=1)
    for text in DOCX_PARAGRAPHS[1:]:
        document.add_paragraph(text)
    table = document.add_table(rows=len(DOCX_TABLE), cols=2)
    for row, values in zip(table.rows, DOCX_TABLE, strict=True):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    document.save(str(path))
    return path


EPUB_CHAPTERS = {
    "chapter1.xhtml": ("The comet", ["Halley's comet returns to the inner solar system about "
                                     "every seventy-six years.",
                                     "Its tail of gas and dust always points away from the "
                                     "Sun."]),
    "chapter2.xhtml": ("彗星", ["彗星は氷と塵でできている。", "太陽に近づくと尾が伸びる。"]),
}
EPUB_NAV = "Table of contents entry for the comet"


def _xhtml(title: str, body: str) -> str:
    return ('<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html>\n'
            '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">'
            f"<head><title>{title}</title></head><body>{body}</body></html>")


def write_epub(path: Path) -> Path:
    """An EPUB 3: mimetype first and stored, the container, a package document whose spine
    lists the chapters in reverse file order, a navigation document, two chapters."""
    manifest = "".join(f'<item id="c{i}" href="text/{name}" media-type="application/xhtml+xml"/>'
                       for i, name in enumerate(EPUB_CHAPTERS, start=1))
    spine = "".join(f'<itemref idref="c{i}"/>' for i in range(len(EPUB_CHAPTERS), 0, -1))
    package = f"""<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">
  <metadata xmlns:dc="http://purl.org/dc/elements/1.1/">
    <dc:identifier id="id">urn:uuid:12345678-1234-1234-1234-123456789012</dc:identifier>
    <dc:title>Comets</dc:title><dc:language>en</dc:language>
  </metadata>
  <manifest>
    <item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>
    {manifest}
  </manifest>
  <spine><itemref idref="nav"/>{spine}</spine>
</package>"""
    container = """<?xml version="1.0"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles><rootfile full-path="OEBPS/content.opf"
    media-type="application/oebps-package+xml"/></rootfiles>
</container>"""
    nav = _xhtml("Contents", f'<nav epub:type="toc"><ol><li><a href="text/chapter1.xhtml">'
                             f"{EPUB_NAV}</a></li></ol></nav>")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        archive.writestr("META-INF/container.xml", container)
        archive.writestr("OEBPS/content.opf", package)
        archive.writestr("OEBPS/nav.xhtml", nav)
        for name, (title, paragraphs) in EPUB_CHAPTERS.items():
            body = f"<h1>{title}</h1>" + "".join(f"<p>{p}</p>" for p in paragraphs)
            archive.writestr(f"OEBPS/text/{name}", _xhtml(title, body),
                             compress_type=zipfile.ZIP_DEFLATED)
    return path
