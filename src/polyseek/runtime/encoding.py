"""Output encodings of an embedding, as Jina's and OpenAI's clients decode them.

- float: list of numbers
- base64: little-endian float32 bytes, base64 encoded
- ubinary: sign bits (> 0) packed 8 per byte, most significant first, as uint8
- binary: the same bytes as int8 (ubinary - 128)
"""

from __future__ import annotations

import base64
from typing import Literal

import numpy as np

EmbeddingType = Literal["float", "base64", "binary", "ubinary"]


def encode_vector(vector: np.ndarray, kind: EmbeddingType):
    """One vector [D] in one encoding (a numpy array where the JSON is a list)."""
    if kind == "float":
        return vector
    if kind == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    packed = np.packbits(vector > 0)  # uint8 [ceil(D / 8)]
    if kind == "ubinary":
        return packed
    if kind == "binary":
        return (packed.astype(np.int16) - 128).astype(np.int8)
    raise ValueError(f"unknown embedding type {kind!r}")


def encode_embedding(vector: np.ndarray, kinds: EmbeddingType | list[EmbeddingType]):
    """Encode [D] (or per-token [T, D]) as one type, or as a dict keyed by each type asked."""
    if isinstance(kinds, list):
        return {kind: encode_embedding(vector, kind) for kind in kinds}
    if vector.ndim == 2:
        return [encode_vector(row, kinds) for row in vector]
    return encode_vector(vector, kinds)
