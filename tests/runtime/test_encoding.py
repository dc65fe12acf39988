"""Output encodings and Matryoshka truncation, on vectors whose answers are known."""

from __future__ import annotations

import base64

import numpy as np

from polyseek.models.base import truncate_and_normalize
from polyseek.runtime.encoding import encode_embedding, encode_vector

VECTOR = np.array([0.5, -1.0, 2.0, 0.0, -0.25, 3.0, 1.0, -2.0, 0.125], dtype=np.float32)
# signs > 0: 1 0 1 0 0 1 1 0 | 1 -> bytes 0b10100110 = 166, 0b10000000 = 128
SIGN_BYTES = [166, 128]


def test_ubinary_packs_signs_most_significant_bit_first():
    assert encode_vector(VECTOR, "ubinary").tolist() == SIGN_BYTES


def test_binary_is_ubinary_minus_128():
    assert encode_vector(VECTOR, "binary").tolist() == [166 - 128, 128 - 128]


def test_base64_is_little_endian_float32():
    raw = base64.b64decode(encode_vector(VECTOR, "base64"))
    assert raw == VECTOR.astype("<f4").tobytes() and len(raw) == 4 * len(VECTOR)


def test_list_of_types_gives_a_dict_and_multivectors_encode_per_row():
    encoded = encode_embedding(VECTOR, ["float", "ubinary"])
    assert set(encoded) == {"float", "ubinary"}
    rows = encode_embedding(np.stack([VECTOR, -VECTOR]), "ubinary")
    assert [r.tolist() for r in rows] == [SIGN_BYTES, [0b01001001, 0]]  # 0.0 stays 0 either way


def test_truncate_then_normalise():
    out = truncate_and_normalize(np.array([[3.0, 4.0, 12.0]]), 2, normalize=True)
    np.testing.assert_allclose(out, [[0.6, 0.8]])
    assert out.dtype == np.float32
    raw = truncate_and_normalize(np.array([[3.0, 4.0, 12.0]]), None, normalize=False)
    np.testing.assert_allclose(raw, [[3.0, 4.0, 12.0]])
    assert np.isfinite(truncate_and_normalize(np.zeros((1, 4)), None, True)).all()


def test_late_chunking_windows_record_each_input_span():
    from polyseek.inputs.text import late_chunking_windows

    (window,) = late_chunking_windows([[5, 6], [7], [8, 9, 10]], [101], [102], 10, False)
    assert window == ([101, 5, 6, 7, 8, 9, 10, 102], [(1, 3), (3, 4), (4, 7)])
    # over the context: several windows with truncate, an input cut to the window size
    windows = late_chunking_windows([[1] * 5, [2] * 5, [3] * 12], [0], [0], 10, True)
    assert [spans for _, spans in windows] == [[(1, 6)], [(1, 6)], [(1, 9)]]
    assert all(len(ids) <= 10 for ids, _ in windows)
