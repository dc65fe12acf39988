"""Splitting a document into chunks for late chunking: by sentence or by token count."""

from __future__ import annotations

import re
from collections.abc import Callable

# A sentence ends at . ! ? followed by whitespace, right after 。！？, or at a blank line.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])|\n\s*\n")


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, in order, without empty pieces."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def split_by_tokens(text: str, tokenize: Callable[[str], list[tuple[int, int]]],
                    chunk_tokens: int) -> list[str]:
    """Consecutive chunks of at most `chunk_tokens` tokens, cut at token boundaries.

    tokenize: text -> character (start, end) offsets of its tokens.
    """
    if chunk_tokens < 1:
        raise ValueError("chunk_tokens must be at least 1")
    offsets = tokenize(text)
    chunks = []
    for i in range(0, len(offsets), chunk_tokens):
        window = offsets[i : i + chunk_tokens]
        chunks.append(text[window[0][0] : window[-1][1]].strip())
    return [c for c in chunks if c]


def hf_offsets(tokenizer) -> Callable[[str], list[tuple[int, int]]]:
    """A `tokenize` for split_by_tokens from a transformers fast tokenizer."""

    def tokenize(text: str) -> list[tuple[int, int]]:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(o) for o in encoded["offset_mapping"]]

    return tokenize
