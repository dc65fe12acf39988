"""What `evaluate` returns, shown: rich tables for the terminal and a PNG plot."""

from __future__ import annotations

from pathlib import Path

from rich.console import Group
from rich.table import Table

LABELS = {"ndcg@10": "nDCG@10", "mrr@10": "MRR@10", "recall@1": "R@1", "recall@10": "R@10",
          "recall@100": "R@100"}


def table(results: dict) -> Group:
    """The pipelines' kind (the search mode, or the dense variant), metrics and latency; per
    query group when the queries have groups. `*`: significantly different from the first
    pipeline; `†` (sparse, hybrid): from the model's dense pipeline on the same collection."""
    caption = (f"* {results['stat_test']} against {results['baseline']!r}; † the same test "
               "against the model's dense pipeline (sparse, hybrid)\n"
               f"{results['baseline']}: {results['bm25_tokenisation']}")
    if "bm25_language" in results:
        caption += (f"\nsparse, hybrid: the engine's BM25, language {results['bm25_language']} "
                    f"({results['bm25_language_source']})")
    main = Table(title=f"{results['dataset']} ({results['split']}): {results['queries']} "
                 f"queries, {results['documents']} documents", caption=caption)
    main.add_column("pipeline", no_wrap=True)
    main.add_column("kind")
    for metric in results["metrics"]:
        main.add_column(LABELS.get(metric, metric), justify="right")
    main.add_column("p50 ms", justify="right")
    main.add_column("p95 ms", justify="right")
    for row in results["pipelines"]:
        cells = [_cell(row, m) for m in results["metrics"]]
        main.add_row(row["name"], row["kind"], *cells, f"{row['latency_ms']['p50']:.1f}",
                     f"{row['latency_ms']['p95']:.1f}")
    if not results["groups"]:
        return Group(main)
    return Group(main, _groups(results))


def _cell(row: dict, metric: str) -> str:
    mark = "*" if row["significance"].get(metric, {}).get("significant") else ""
    if row.get("significance_vs_dense", {}).get(metric, {}).get("significant"):
        mark += "†"
    return f"{row['metrics'][metric]:.3f}{mark}"


def _groups(results: dict) -> Table:
    groups = results["groups"]
    out = Table(title="nDCG@10 / R@10 per query group")
    out.add_column("pipeline", no_wrap=True)
    for group, count in groups.items():
        out.add_column(f"{group} ({count})", justify="right")
    for row in results["pipelines"]:
        out.add_row(row["name"], *(f"{row['groups'][g]['ndcg@10']:.3f} / "
                                   f"{row['groups'][g]['recall@10']:.2f}" for g in groups))
    return out


def plot(results: dict, path: str | Path) -> None:
    """A PNG: the Matryoshka curve (nDCG@10 by dim, per model) beside nDCG@10 and R@10 of
    every other pipeline."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = results["pipelines"]
    fig, (curve, bars) = plt.subplots(1, 2, figsize=(13, 0.5 * len(rows) + 3))
    _curve(curve, rows)
    _bars(bars, [r for r in rows if r["kind"] != "matryoshka"])
    fig.suptitle(f"{results['dataset']} ({results['split']}, {results['queries']} queries)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curve(ax, rows: list[dict]) -> None:
    dims = sorted({r["dim"] for r in rows if r["kind"] in ("dense", "matryoshka")})
    for model in dict.fromkeys(r["model"] for r in rows if "model" in r):
        points = sorted((r["dim"], r["metrics"]["ndcg@10"]) for r in rows
                        if r.get("model") == model and r["kind"] in ("dense", "matryoshka"))
        ax.plot(*zip(*points, strict=True), marker="o", label=model)
    for r in rows:
        if r["kind"] == "bm25":
            ax.axhline(r["metrics"]["ndcg@10"], linestyle="--", color="grey", label=r["name"])
    ax.set(xscale="log", xlabel="dimensions", ylabel="nDCG@10", title="Matryoshka curve")
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend()


def _bars(ax, rows: list[dict]) -> None:
    names = [r["name"] for r in rows][::-1]
    ys = range(len(names))
    for offset, metric in ((-0.2, "ndcg@10"), (0.2, "recall@10")):
        values = [r["metrics"][metric] for r in rows][::-1]
        ax.barh([y + offset for y in ys], values, height=0.4, label=LABELS[metric])
    ax.set_yticks(list(ys), names)
    ax.set(xlim=(0, 1), title="pipelines")
    ax.grid(axis="x", alpha=0.3)
    ax.legend()
