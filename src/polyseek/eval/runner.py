"""`evaluate`: build every pipeline for the models given, index the corpus, run each judged
query through each pipeline, and score the rankings."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from polyseek.eval import metrics
from polyseek.eval.data import Dataset, EvalError, corpus_language, load_dataset
from polyseek.eval.encoders import CachedEncoder, Truncated
from polyseek.eval.pipelines import TOKENISATION, Bm25, Pipeline, Search, prefetch_dim
from polyseek.models import DEFAULT_MODEL_NAME, DEFAULT_MODEL_SOURCE, load_model
from polyseek.retrieval import Store, open_store
from polyseek.retrieval.bm25 import DEFAULT_LANGUAGE, check_language
from polyseek.retrieval.encoders import LocalModel
from polyseek.retrieval.store import default_short_dim

DEFAULT_DIMS = (64, 128, 256)  # curve points for a model without trained Matryoshka dims
DEFAULT_TOP_K = 100
# the hybrid pipelines per model: fusion, and (dense, sparse) weights (None: equal). The
# weighted one shows what leaning on the dense list does: on eval/sv-en DBSF 2:1 beat RRF at
# 1:2, 2:1 and 3:1; DBSF 3:1 came closer still to dense search, never above it.
HYBRIDS: tuple[tuple[str, tuple[float, float] | None], ...] = (
    ("rrf", None), ("dbsf", None), ("dbsf", (2.0, 1.0)))


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
    language: str | None = None,
    progress: bool = False,
) -> dict:
    """Compare BM25 and, per model (NAME=SOURCE), dense search, short-vector prefetch,
    MaxSim (multi-vector models), a reranker (NAME=SOURCE), a Matryoshka curve over `dims`,
    and the engine's sparse (BM25) and hybrid modes, on the BEIR dataset in `data` (default
    model: the embedded default). `language`: the collections' BM25 language (default: the
    one the corpus declares, see `bm25_language`). Everything is indexed into a throw-away
    store; the result is JSON-ready."""
    if top_k < 1:
        raise EvalError("top_k must be at least 1")
    if dims and min(dims) < 1:
        raise EvalError(f"dims must be positive (got {min(dims)})")
    if language is not None:
        language = check_language(language)
    dataset = load_dataset(data, split)
    language, language_source = bm25_language(dataset, language)
    specs = [parse_spec(s) for s in models or [f"{DEFAULT_MODEL_NAME}={DEFAULT_MODEL_SOURCE}"]]
    if len({name for name, _ in specs}) < len(specs):
        raise EvalError("each --model needs its own NAME")
    scorer = _reranker(rerank) if rerank else None
    with tempfile.TemporaryDirectory(prefix="polyseek-eval-") as tmp, open_store(tmp) as store:
        pipelines: list[Pipeline] = [Bm25()]
        for name, source in specs:
            pipelines += model_pipelines(name, source, store, scorer, dims, len(pipelines),
                                         language)
        rankings, latencies = asyncio.run(_run(pipelines, dataset, top_k, progress))
    results = _results(dataset, split, top_k, pipelines, rankings, latencies)
    return {**results, "bm25_language": language, "bm25_language_source": language_source}


def bm25_language(dataset: Dataset, language: str | None = None) -> tuple[str, str]:
    """The BM25 language of the eval collections and where it comes from: `language` when
    given, else the one the corpus declares (`corpus_language`: the language of most of its
    documents), else polyseek's default (English), as `polyseek index` would build them."""
    if language is not None:
        return language, "--language"
    if declared := corpus_language(dataset):
        counts = ", ".join(f"{n} {lang}" for lang, n in dataset.languages.items())
        return declared, f"corpus metadata.lang: {counts}"
    return DEFAULT_LANGUAGE, "polyseek's default; the corpus declares no metadata.lang"


def _reranker(spec: str) -> LocalModel:
    name, source = parse_spec(spec)
    scorer = LocalModel(load_model(source, name=name))
    if scorer.capabilities.reranker is None:
        raise EvalError(f"--rerank {spec!r}: this model cannot rerank")
    return scorer


def model_pipelines(name: str, source: str, store: Store, scorer: LocalModel | None,
                    dims: Sequence[int] | None, start: int,
                    language: str = DEFAULT_LANGUAGE) -> list[Search]:
    """Dense, prefetch, MaxSim, rerank, one pipeline per curve dim, and the engine's sparse
    and hybrid modes for one model; `start` numbers its collections, built with BM25
    `language`."""
    encoder = LocalModel(load_model(source, name=name))
    cached, caps = CachedEncoder(encoder), encoder.capabilities
    if caps.kind != "embedding":
        raise EvalError(f"--model {name}={source}: a {caps.kind} model, not an embedding model")
    multi = caps.multivector
    n = itertools.count(start)

    def dense(label: str, kind: str, indexer, query, **kw) -> Search:
        info = {"kind": kind, "mode": "dense", "model": name, "dim": query.capabilities.dim}
        return Search(f"{name}: {label}", info, store, f"eval-{next(n)}", indexer, query,
                      source=source, language=language, **kw)

    full = dense("full", "dense", Truncated(cached, caps.dim) if multi else cached,
                 Truncated(encoder, caps.dim) if multi else encoder)
    out = [full]
    if multi:
        out.append(dense("full → maxsim", "maxsim", cached, encoder))
    if short := prefetch_dim(caps):
        out.append(dense(f"short{short} → full" + (" → maxsim" if multi else ""), "prefetch",
                         cached, encoder, short_dim=short))
    out += mode_pipelines(name, default_layout(out, caps))
    if scorer is not None:
        out.append(reusing(full, f"{name}: full → rerank {scorer.name}",
                           {"kind": "rerank", "reranker": scorer.name}, reranker=scorer))
    for dim in curve_dims(caps, dims):
        out.append(dense(f"full@{dim}", "matryoshka", Truncated(cached, dim),
                         Truncated(encoder, dim)))
    return out


def default_layout(pipelines: list[Search], capabilities) -> Search:
    """The dense pipeline whose collection is laid out as `polyseek index` lays one out for
    this model: a short vector only for trained Matryoshka dims, token vectors when the model
    has them."""
    short = default_short_dim(capabilities.matryoshka_dims, capabilities.dim)
    kind = "prefetch" if short else "maxsim" if capabilities.multivector else "dense"
    return next(p for p in pipelines if p.info["kind"] == kind)


def mode_pipelines(name: str, base: Search) -> list[Search]:
    """The engine's BM25 alone and fused with `base`'s dense list (the HYBRIDS), on `base`'s
    collection: nothing is embedded again."""
    sparse = reusing(base, f"{name}: sparse", {"kind": "sparse", "mode": "sparse",
                                               "dense": base.name}, mode="sparse")
    del sparse.info["dim"]  # no embedding involved
    out = [sparse]
    for fusion, weights in HYBRIDS:
        label = f"hybrid {fusion}" + (f" {weights[0]:g}:{weights[1]:g}" if weights else "")
        out.append(reusing(base, f"{name}: {label}",
                           {"kind": "hybrid", "mode": "hybrid", "fusion": fusion,
                            "weights": list(weights or (1.0, 1.0)), "dense": base.name},
                           mode="hybrid", fusion=fusion, weights=weights))
    return out


def reusing(base: Search, name: str, info: dict, **options) -> Search:
    """A pipeline that searches `base`'s collection differently: it indexes nothing."""
    return replace(base, name=name, info={**base.info, **info}, reuse=True, **options)


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
    # sparse and hybrid against the dense pipeline on their collection
    versus = {p.name: p.info["dense"] for p in pipelines if "dense" in p.info}
    significance, against_dense = metrics.significance(dataset.qrels, rankings, versus)
    rows = []
    for p in pipelines:
        by_group = {g: metrics.scores(_subset(dataset, g), rankings[p.name]) for g in groups}
        row = {"name": p.name, **p.info,
               "metrics": metrics.scores(dataset.qrels, rankings[p.name]),
               "groups": by_group, "latency_ms": metrics.latency(latencies[p.name]),
               "significance": significance.get(p.name, {})}
        if p.name in versus:
            row["significance_vs_dense"] = against_dense[p.name]
        rows.append(row)
    return {"dataset": dataset.name, "split": split, "documents": len(dataset.corpus),
            "queries": len(dataset.queries),
            "groups": {g: sum(v == g for v in dataset.groups.values()) for g in groups},
            "top_k": top_k, "metrics": metrics.METRICS, "baseline": pipelines[0].name,
            "stat_test": f"paired t-test (ranx '{metrics.STAT_TEST}'), p < {metrics.MAX_P}",
            "bm25_tokenisation": TOKENISATION, "pipelines": rows}


def _subset(dataset: Dataset, group: str) -> dict[str, dict[str, int]]:
    return {q: d for q, d in dataset.qrels.items() if dataset.groups.get(q) == group}
