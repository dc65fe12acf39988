"""The text of document formats: HTML (its main text), DOCX and EPUB.

Paragraphs come out separated by blank lines and other blocks (list items, table rows) by
line breaks, so the chunker sees the document's structure. HTML and XML are parsed with lxml
(no network, no entity expansion), DOCX with python-docx; an EPUB is read as the zip of XHTML
chapters it is, in its spine's reading order.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from pathlib import Path
from urllib.parse import unquote

import lxml.html
from lxml import etree

# what a reader skips: code, page chrome and navigation, forms, hidden elements
_DROPPED_TAGS = {"script", "style", "noscript", "template", "nav", "aside", "form", "button",
                 "select", "textarea", "iframe", "object", "svg", "canvas", "dialog", "menu"}
_DROPPED_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "menu",
                  "menubar", "toolbar", "dialog"}
_CHROME = {"header", "footer"}  # page chrome unless inside the main content or an article
# blocks that end a paragraph, and blocks that only end a line
_PARAGRAPHS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul",
               "ol", "dl", "figure", "section", "article", "main", "div", "hr", "address",
               "details", "summary", "title"}
_LINES = {"br", "li", "tr", "dt", "dd", "figcaption", "caption"}
_CELLS = {"td", "th"}

MAX_EPUB_BYTES = 256 * 1024 * 1024  # uncompressed size of an EPUB's chapters (zip bombs)
_XML = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
_CONTAINER_NS = {"c": "urn:oasis:names:tc:opendocument:xmlns:container"}
_OPF_NS = {"opf": "http://www.idpf.org/2007/opf"}
_XHTML_TYPES = {"application/xhtml+xml", "text/html"}


def _hidden(element) -> bool:
    role = (element.get("role") or "").strip().lower()
    return (element.tag in _DROPPED_TAGS or role in _DROPPED_ROLES
            or element.get("hidden") is not None
            or (element.get("aria-hidden") or "").lower() == "true"
            or (element.tag in _CHROME and not any(
                a.tag in ("main", "article") or (a.get("role") or "") == "main"
                for a in element.iterancestors())))


def _parse_html(html: str | bytes):
    if isinstance(html, bytes):
        try:  # UTF-8 unless the bytes say otherwise (libxml2 would assume Latin-1)
            html = html.decode("utf-8")
        except UnicodeDecodeError:
            return lxml.html.document_fromstring(html)
    html = re.sub(r"^\s*<\?xml[^>]*\?>", "", html.lstrip("\ufeff"))  # lxml refuses str with
    # an encoding declaration
    return lxml.html.document_fromstring(html or "<html></html>")


def _roots(document) -> list:
    """The main content: <main> (or role=main) elements, else <article>s, else the body."""
    for query in ("//main | //*[@role='main']", "//article"):
        found = document.xpath(query)
        if found:
            return [e for e in found if not any(a in found for a in e.iterancestors())]
    body = document.find("body")
    return [body if body is not None else document]


def _add(out: list, piece: str | int) -> None:
    """Append text, or a break of `piece` newlines; breaks in a row (and the whitespace
    between them) make one, the longest."""
    if isinstance(piece, str):
        if piece and not (piece.isspace() and (not out or isinstance(out[-1], int))):
            out.append(piece)
        return
    if not piece:
        return
    while out and isinstance(out[-1], str) and out[-1].isspace():
        out.pop()
    if out and isinstance(out[-1], int):
        out[-1] = max(out[-1], piece)
    else:
        out.append(piece)


def _text(element, out: list, pre: bool = False) -> None:
    """Append the visible text under `element`, and its block breaks, to `out`."""
    def flow(text: str | None) -> str:  # HTML collapses source whitespace, but in <pre>
        return (text if pre else re.sub(r"\s+", " ", text)) if text else ""

    if not isinstance(element.tag, str) or _hidden(element):  # comments, processing instr.
        _add(out, flow(element.tail))
        return
    tag = element.tag.lower()
    brk = 2 if tag in _PARAGRAPHS else 1 if tag in _LINES else 0
    _add(out, brk)
    _add(out, flow(element.text))
    for child in element:
        _text(child, out, pre or tag == "pre")
    _add(out, brk if brk else " " if tag in _CELLS else "")
    _add(out, flow(element.tail))


def _tidy(parts: list) -> str:
    """The text of `_text`'s parts: spaces trimmed around line breaks."""
    raw = "".join("\n" * p if isinstance(p, int) else p for p in parts)
    return "\n".join(line.strip(" \t") for line in raw.split("\n")).strip()


def html_text(html: str | bytes) -> str:
    """The main text of an HTML page: its title, then the main content (<main>, else the
    articles, else the body) without navigation, page headers and footers, asides, forms,
    scripts, styles or hidden elements."""
    try:
        document = _parse_html(html)
    except (etree.ParserError, ValueError):  # nothing parseable: no text
        return ""
    parts: list[str] = []
    title = document.findtext(".//title")
    body: list = []
    for root in _roots(document):
        _text(root, body)
    text = _tidy(body)
    if title and title.strip() and not text.startswith(title.strip()):
        parts.append(" ".join(title.split()))
    parts.append(text)
    return "\n\n".join(p for p in parts if p)


def docx_text(path: Path) -> str:
    """The body of a Word document: paragraphs and tables in order (a row per line, cells
    separated by " | "); headers, footers and comments are left out."""
    import docx
    from docx.table import Table

    document = docx.Document(str(path))
    blocks: list[str] = []
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            rows = [" | ".join(" ".join(cell.text.split()) for cell in row.cells)
                    for row in block.rows]
            blocks.append("\n".join(r for r in rows if r.strip(" |")))
        else:
            blocks.append(block.text.strip())
    return "\n\n".join(b for b in blocks if b)


def _zip_xml(archive: zipfile.ZipFile, name: str):
    return etree.fromstring(archive.read(name), _XML)


def _spine(archive: zipfile.ZipFile) -> list[str]:
    """The archive paths of an EPUB's XHTML documents in reading order, without the
    navigation document."""
    try:
        container = _zip_xml(archive, "META-INF/container.xml")
    except KeyError:
        raise ValueError("not an EPUB: no META-INF/container.xml") from None
    rootfile = container.find(".//c:rootfile", _CONTAINER_NS)
    if rootfile is None or not rootfile.get("full-path"):
        raise ValueError("not an EPUB: container.xml names no package document")
    opf_path = rootfile.get("full-path")
    package = _zip_xml(archive, opf_path)
    base = posixpath.dirname(opf_path)
    manifest = {}
    for item in package.iterfind(".//opf:manifest/opf:item", _OPF_NS):
        if item.get("media-type") in _XHTML_TYPES and "nav" not in (
                item.get("properties") or "").split():
            href = unquote(item.get("href", "").split("#")[0])
            manifest[item.get("id")] = posixpath.normpath(posixpath.join(base, href))
    return [manifest[ref.get("idref")]
            for ref in package.iterfind(".//opf:spine/opf:itemref", _OPF_NS)
            if ref.get("idref") in manifest]


def epub_text(path: Path) -> str:
    """The text of an EPUB's chapters in reading order, each chapter's main text as in
    `html_text`."""
    with zipfile.ZipFile(path) as archive:
        chapters = _spine(archive)
        names = set(archive.namelist())
        total = sum(archive.getinfo(n).file_size for n in set(chapters) if n in names)
        if total > MAX_EPUB_BYTES:
            raise ValueError(f"EPUB chapters are {total} bytes uncompressed, over "
                             f"{MAX_EPUB_BYTES}")
        texts = [html_text(archive.read(name)) for name in chapters if name in names]
    return "\n\n".join(t for t in texts if t)
