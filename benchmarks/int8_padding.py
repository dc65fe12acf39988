"""What batch order costs the int8 backend, beside sentence-transformers' ONNX int8 one.

In one process, on the sentences of `embed_throughput.py`, 32 per batch: polyseek's int8 and
torch models on batches of globally length-sorted sentences, then on batches in arrival order
(as requests bring them), beside (b), sentence-transformers' ONNX int8 (which sorts globally).

    make bench-venv
    PYTHONPATH=src:tests:benchmarks .venv/bin/python benchmarks/int8_padding.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import time

import embed_throughput as bench

from polyseek.models import load_model, resolve_source

BATCH = 32


def sentences_per_second(model, sentences: list[str], task: str, in_order: bool) -> float:
    """Throughput over batches of BATCH: length-sorted ones, or in arrival order."""
    if not in_order:
        sentences = sorted(sentences, key=len)
    began = time.perf_counter()
    for start in range(0, len(sentences), BATCH):
        model.encode(sentences[start:start + BATCH], task=task, batch_size=BATCH)
    return len(sentences) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    spec = bench.MODELS["e5"]
    sentences = bench.make_sentences(args.sentences)
    models = {backend: load_model(f"{spec.source}@{backend}") for backend in ("int8", "torch")}
    for round_ in range(1, args.rounds + 1):
        baseline = bench.run_st_onnx(spec, resolve_source(spec.source), sentences, BATCH)
        if baseline is not None:
            print(f"round {round_}: (b) sentence-transformers ONNX int8, sorted: "
                  f"{len(sentences) / baseline.seconds:.1f} sent/s")
        for backend, model in models.items():
            for in_order in (False, True):
                rate = sentences_per_second(model, sentences, spec.task, in_order)
                order = "arrival order" if in_order else "sorted"
                print(f"round {round_}: polyseek {backend}, {order}: {rate:.1f} sent/s",
                      flush=True)


if __name__ == "__main__":
    main()
