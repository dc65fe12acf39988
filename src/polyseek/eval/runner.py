"""`evaluate`: build every pipeline for the models given, index the corpus, run each judged
query through each pipeline, and score the rankings."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from polyseek.eval import metrics
from polyseek.eval.data import Dataset, EvalError, load_dataset
from polyseek.eval.encoders import CachedEncoder, Truncated
from polyseek.eval.pipelines import TOKENISATION, Bm25, Dense, Pipeline, prefetch_dim
from polyseek.models import DEFAULT_MODEL_NAME, DEFAULT_MODEL_SOURCE, load_model
from polyseek.retrieval import Store, open_store
from polyseek.retrieval.encoders import LocalModel

DEFAULT_DIMS = (64, 128, 256)  # curve points for a model without trained Matryoshka dims
DEFAULT_TOP_K = 100


def parse_spec(text: str) -> tuple[str, str]:
    """NAME=SOURCE, or a bare SOURCE named after its last path component."""
    name, sep, source = text.partition("=")
    if not sep:
        name, source = text.rstrip("/").rsplit("/", 1)[-1], text
    if not name or not source:
        raise EvalError(f"expected NAME=SOURCE, got {text!r}")
    return name, source


def evaluate(
    data: str | Path,
    models: Sequence[str] | None = None,
    *,
    rerank: str | None = None,
    dims: Sequence[int] | None = None,
    split: str = "test",
    top_k: int = DEFAULT_TOP_K,
    progress: bool = False,
) -> dict:
    """Compare BM25 and, per model (NAME=SOURCE), dense search, short-vector prefetch,
    MaxSim (multi-vector models), a reranker (NAME=SOURCE) and a Matryoshka curve over
    `dims`, on the BEIR dataset in `data` (default model: the embedded default). Everything
    is indexed into a throw-away store; the result is JSON-ready."""
    if top_k < 1:
        raise EvalError("top_k must be at least 1")
    if dims and min(dims) < 1:
        raise EvalError(f"dims must be positive (got {min(dims)})")
    dataset = load_dataset(data, split)
    specs = [parse_spec(s) for s in models or [f"{DEFAULT_MODEL_NAME}={DEFAULT_MODEL_SOURCE}"]]
    if len({name for name, _ in specs}) < len(specs):
        raise EvalError("each --model needs its own NAME")
    scorer = _reranker(rerank) if rerank else None
    with tempfile.TemporaryDirectory(prefix="polyseek-eval-") as tmp, open_store(tmp) as store:
        pipelines: list[Pipeline] = [Bm25()]
        for name, source in specs:
            pipelines += model_pipelines(name, source, store, scorer, dims, len(pipelines))
        rankings, latencies = asyncio.run(_run(pipelines, dataset, top_k, progress))
    return _results(dataset, split, top_k, pipelines, rankings, latencies)


def _reranker(spec: str) -> LocalModel:
    name, source = parse_spec(spec)
    scorer = LocalModel(load_model(source, name=name))
    if scorer.capabilities.reranker is None:
        raise EvalError(f"--rerank {spec!r}: this model cannot rerank")
    return scorer


def model_pipelines(name: str, source: str, store: Store, scorer: LocalModel | None,
                    dims: Sequence[int] | None, start: int) -> list[Dense]:
    """Dense, prefetch, MaxSim, rerank and one pipeline per curve dim for one model;
    `start` numbers its collections."""
    encoder = LocalModel(load_model(source, name=name))
    cached, caps = CachedEncoder(encoder), encoder.capabilities
    if caps.kind != "embedding":
        raise EvalError(f"--model {name}={source}: a {caps.kind} model, not an embedding model")
    multi = caps.multivector
    n = itertools.count(start)

    def dense(label: str, kind: str, indexer, query, **kw) -> Dense:
        info = {"kind": kind, "model": name, "dim": query.capabilities.dim}
        return Dense(f"{name}: {label}", info, store, f"eval-{next(n)}", indexer, query,
                     source=source, **kw)

    full = dense("full", "dense", Truncated(cached, caps.dim) if multi else cached,
                 Truncated(encoder, caps.dim) if multi else encoder)
    out = [full]
    if multi:
        out.append(dense("full → maxsim", "maxsim", cached, encoder))
    if short := prefetch_dim(caps):
        out.append(dense(f"short{short} → full" + (" → maxsim" if multi else ""), "prefetch",
                         cached, encoder, short_dim=short))
    if scorer is not None:
        out.append(Dense(f"{name}: full → rerank {scorer.name}",
                         {**full.info, "kind": "rerank", "reranker": scorer.name}, store,
                         full.collection, full.indexer, full.encoder, source=source,
                         reranker=scorer, reuse=True))
    for dim in curve_dims(caps, dims):
        out.append(dense(f"full@{dim}", "matryoshka", Truncated(cached, dim),
                         Truncated(encoder, dim)))
    return out


def curve_dims(capabilities, dims: Sequence[int] | None) -> list[int]:
    """Curve points below the full dim: given, else the trained Matryoshka dims, else
    DEFAULT_DIMS."""
    wanted = dims or capabilities.matryoshka_dims or DEFAULT_DIMS
    return sorted({d for d in wanted if d < capabilities.dim})


async def _run(pipelines: list[Pipeline], dataset: Dataset, top_k: int, show: bool):
    rankings: dict[str, dict[str, list[str]]] = {}
    latencies: dict[str, list[float]] = {}
    with _progress(show) as bar:
        for p in pipelines:
            task = bar.add_task(f"indexing {p.name}", total=len(dataset.corpus))
            await p.index(dataset.corpus, lambda k, t=task: bar.advance(t, k))
        for p in pipelines:
            task = bar.add_task(f"querying {p.name}", total=len(dataset.queries))
            rankings[p.name], latencies[p.name] = {}, []
            await p.rank(next(iter(dataset.queries.values())), top_k)  # untimed warm-up
            for qid, text in dataset.queries.items():
                start = time.perf_counter()
                rankings[p.name][qid] = (await p.rank(text, top_k))[:top_k]
                latencies[p.name].append((time.perf_counter() - start) * 1000)
                bar.advance(task)
    return rankings, latencies


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True), disable=not enabled)


def _results(dataset: Dataset, split: str, top_k: int, pipelines: list[Pipeline],
             rankings: dict, latencies: dict) -> dict:
    groups = list(dict.fromkeys(dataset.groups.values()))  # in query order
    significance = metrics.significance(dataset.qrels, rankings)
    rows = []
    for p in pipelines:
        by_group = {g: metrics.scores(_subset(dataset, g), rankings[p.name]) for g in groups}
        rows.append({"name": p.name, **p.info,
                     "metrics": metrics.scores(dataset.qrels, rankings[p.name]),
                     "groups": by_group, "latency_ms": metrics.latency(latencies[p.name]),
                     "significance": significance.get(p.name, {})})
    return {"dataset": dataset.name, "split": split, "documents": len(dataset.corpus),
            "queries": len(dataset.queries),
            "groups": {g: sum(v == g for v in dataset.groups.values()) for g in groups},
            "top_k": top_k, "metrics": metrics.METRICS, "baseline": pipelines[0].name,
            "stat_test": f"paired t-test (ranx '{metrics.STAT_TEST}'), p < {metrics.MAX_P}",
            "bm25_tokenisation": TOKENISATION, "pipelines": rows}


def _subset(dataset: Dataset, group: str) -> dict[str, dict[str, int]]:
    return {q: d for q, d in dataset.qrels.items() if dataset.groups.get(q) == group}
