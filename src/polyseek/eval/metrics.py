"""Scores from ranx: the metrics per pipeline and per query group, significance tests
(against the first pipeline, and between chosen pairs), and latency percentiles."""

from __future__ import annotations

import warnings

import numpy as np
from ranx import Qrels, Run, compare, evaluate

METRICS = ["ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100"]
STAT_TEST = "student"  # paired t-test
MAX_P = 0.05

Rankings = dict[str, list[str]]  # query id -> doc ids, best first


def to_run(rankings: Rankings, name: str) -> Run:
    """A ranx run; scores only encode the rank (ties cannot reorder anything)."""
    return Run({qid: {doc: float(len(docs) - i) for i, doc in enumerate(docs)}
                for qid, docs in rankings.items() if docs}, name=name)


def scores(qrels: dict[str, dict[str, int]], rankings: Rankings) -> dict[str, float]:
    """METRICS of one pipeline over the queries in `qrels` (a query it missed scores 0)."""
    values = evaluate(Qrels(qrels), _full_run(rankings, qrels, "run"), METRICS)
    return {m: round(float(values[m]), 4) for m in METRICS}


def significance(qrels: dict[str, dict[str, int]], runs: dict[str, Rankings],
                 pairs: dict[str, str] | None = None) -> tuple[dict, dict]:
    """The paired t-test of every pipeline against the first one (pipeline name -> metric ->
    p-value and verdict; absent for the first one, and when there is only one), and of each
    pipeline named in `pairs` against the pipeline it maps to."""
    names = list(runs)
    if len(names) < 2:
        return {}, {}
    report = compare(Qrels(qrels), [_full_run(runs[n], qrels, n) for n in names], METRICS,
                     stat_test=STAT_TEST, max_p=MAX_P).to_dict()

    def test(name: str, reference: str) -> dict[str, dict]:
        p_values = report[reference]["comparisons"][name]
        return {m: {"p_value": round(float(p_values[m]), 4),
                    "significant": bool(p_values[m] < MAX_P)} for m in METRICS}

    return ({name: test(name, names[0]) for name in names[1:]},
            {name: {"against": reference, **test(name, reference)}
             for name, reference in (pairs or {}).items()})


def _full_run(rankings: Rankings, qrels: dict[str, dict[str, int]], name: str) -> Run:
    """A run with every judged query (a query with no results gets one irrelevant entry,
    so every run holds the same queries)."""
    filled = {q: rankings.get(q) or ["\0none"] for q in qrels}
    return to_run(filled, name)


def compile_kernels() -> None:
    """Run every ranx kernel polyseek uses once, so numba compiles them into its on-disk
    cache (`make setup` does this; otherwise the first eval of each process tree pays it)."""
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    runs = {"x": {"q1": ["a", "b"], "q2": ["a", "b"]}, "y": {"q1": ["b", "a"], "q2": ["b"]}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's notes on ranx's casts, printed while compiling
        scores(qrels, runs["x"])
        significance(qrels, runs, {"y": "x"})


def latency(milliseconds: list[float]) -> dict[str, float]:
    p50, p95 = np.percentile(milliseconds, [50, 95]) if milliseconds else (0.0, 0.0)
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2)}
