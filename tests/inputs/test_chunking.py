"""Chunkers for late chunking, and late chunking a document with the real default model."""

from __future__ import annotations

import numpy as np

from polyseek.inputs.chunking import hf_offsets, split_by_tokens, split_sentences

DOCUMENT = ("Berlin is the capital of Germany. It has about 3.8 million inhabitants! "
            "Is it the largest city?  Yes.\n\nA new paragraph starts here. 北京是首都。很大。")


def test_split_sentences():
    assert split_sentences(DOCUMENT) == [
        "Berlin is the capital of Germany.", "It has about 3.8 million inhabitants!",
        "Is it the largest city?", "Yes.", "A new paragraph starts here.", "北京是首都。",
        "很大。"]
    assert split_sentences("  ") == []


def test_split_by_tokens_covers_the_text_in_order(minilm):
    chunks = split_by_tokens(DOCUMENT, hf_offsets(minilm.tokenizer), chunk_tokens=8)
    counts = [len(minilm.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in chunks]
    assert all(n <= 8 for n in counts) and len(chunks) >= 5
    assert " ".join(chunks).replace(" ", "") == DOCUMENT.replace(" ", "").replace("\n", "")


def test_late_chunked_sentences_know_their_context(minilm):
    chunks = split_sentences(DOCUMENT)[:4]
    late = minilm.encode(chunks, late_chunking=True)
    alone = minilm.encode(chunks)
    assert late.shape == alone.shape == (4, 384)
    # "It has about 3.8 million inhabitants!" moves towards Berlin when it sees the first sentence
    berlin = minilm.encode(["Berlin"])[0]
    assert late[1] @ berlin > alone[1] @ berlin
    assert not np.allclose(late, alone, atol=1e-3)
