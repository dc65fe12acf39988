"""Tokenising from request threads: a fast tokenizer sets truncation on its shared Rust object
for each call, so concurrent calls with and without truncation once used each other's setting
(a truncated input was refused as over the context, an over-long one silently cut)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from polyseek.errors import InputTooLarge
from polyseek.models.text_encoder import tokenize

LONG = "x " * 600  # about 600 tokens, over e5's 512


def test_concurrent_calls_keep_their_own_truncation(e5):
    def one(i: int) -> bool:
        if i % 2:
            return len(tokenize(e5.tokenizer, [LONG], "", 512, True, "e5")[0]) == 512
        try:
            tokenize(e5.tokenizer, [LONG], "", 512, False, "e5")
        except InputTooLarge:
            return True
        return False

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(2000)))
    assert all(results), f"{results.count(False)} calls used another call's truncation"
