"""Training data: JSONL and BEIR, the held-out split, clear errors."""

import json

import pytest

from polyseek.train.data import (
    TrainDataError,
    examples,
    load_training_data,
    split_heldout,
)

from support import REPO


def test_heldout_split_is_seeded_and_disjoint_from_training(pairs_file):
    data = load_training_data(pairs_file)
    train, heldout = split_heldout(data, 0.25, seed=3)
    assert len(heldout) == round(len(data.queries) * 0.25)
    train_texts = {row.query for row in examples(data, train)}
    assert train_texts.isdisjoint(q.text for q in heldout)
    assert {q.id for q in train} | {q.id for q in heldout} == {q.id for q in data.queries}
    again = split_heldout(load_training_data(pairs_file), 0.25, seed=3)[1]
    assert [q.text for q in again] == [q.text for q in heldout]
    other = split_heldout(load_training_data(pairs_file), 0.25, seed=4)[1]
    assert [q.text for q in other] != [q.text for q in heldout]


def test_rows_of_one_query_are_grouped_and_passages_deduplicated(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"query": "q", "positive": "a", "negatives": ["b"]},
        {"query": "q", "positive": "c"},
        {"query": "r", "positive": "b", "negatives": ["a"]}]) + "\n\n")
    data = load_training_data(path)
    assert len(data.corpus) == 3 and len(data.queries) == 2
    q = data.queries[0]
    assert [data.corpus[d] for d in q.positives] == ["a", "c"]
    assert [data.corpus[d] for d in q.negatives] == ["b"]


def test_a_beir_directory_is_read(tmp_path):
    data = load_training_data(REPO / "eval" / "sv-en", split="test")
    assert len(data.queries) == 67 and len(data.corpus) == 106


@pytest.mark.parametrize(("content", "message"), [
    ('{"query": "q", "positive": "p"}\n{"query": "q", "positive": \n', "line 2: not valid JSON"),
    ('{"query": "q"}\n', "line 1: 'positive' must be a non-empty string"),
    ('{"query": "q", "positive": "p", "negatives": "n"}\n', "line 1: 'negatives' must be"),
    ("[1, 2]\n", "line 1: expected a JSON object"),
    ("\n\n", "holds no training rows"),
])
def test_bad_data_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(TrainDataError, match=message):
        load_training_data(path)


def test_missing_data_and_too_few_queries(tmp_path):
    with pytest.raises(TrainDataError, match="not found"):
        load_training_data(tmp_path / "nope.jsonl")
    path = tmp_path / "one.jsonl"
    path.write_text('{"query": "q", "positive": "p"}\n')
    with pytest.raises(TrainDataError, match="at least 2 distinct queries"):
        split_heldout(load_training_data(path), 0.1, 0)
