"""Training data: JSONL pairs or a BEIR directory, grouped by query and split (seeded) into
training examples and a held-out evaluation set in the BEIR shape `polyseek eval` reads."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from polyseek.errors import PolyseekError
from polyseek.eval.data import Dataset, EvalError, load_dataset


class TrainDataError(PolyseekError):
    """The training data is missing, malformed or empty, or a setting does not fit it."""


@dataclass
class Query:
    """One query with every passage judged relevant to it and the hard negatives given."""

    id: str
    text: str
    positives: list[str]  # doc ids
    negatives: list[str] = field(default_factory=list)  # doc ids


@dataclass
class TrainingData:
    corpus: dict[str, str]  # doc id -> text
    queries: list[Query]
    name: str = "data"

    def text(self, doc_id: str) -> str:
        return self.corpus[doc_id]


@dataclass
class Example:
    """One training row: a query, one positive passage, its hard negatives (all text)."""

    query: str
    positive: str
    negatives: list[str]
    positives: frozenset[str]  # every positive text of the query (never a negative for it)


def load_training_data(path: str | Path, split: str = "train") -> TrainingData:
    """JSONL of {"query", "positive", "negatives"?} (a file), or a BEIR directory (its
    `split` qrels); TrainDataError says what is wrong."""
    path = Path(path)
    if path.is_dir():
        try:
            dataset = load_dataset(path, split)
        except EvalError as exc:
            raise TrainDataError(str(exc)) from exc
        return from_beir(dataset)
    if not path.is_file():
        raise TrainDataError(f"training data {str(path)!r} not found (a .jsonl file or a BEIR "
                             "directory)")
    return read_jsonl(path)


def from_beir(dataset: Dataset) -> TrainingData:
    queries = [Query(qid, text, sorted(dataset.qrels[qid]))
               for qid, text in dataset.queries.items()]
    return TrainingData(dict(dataset.corpus), queries, dataset.name)


def _field(row: dict, key: str, n: int, path: Path) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise TrainDataError(f"{path.name} line {n}: {key!r} must be a non-empty string")
    return value


def read_jsonl(path: Path) -> TrainingData:
    """Rows grouped by query text; passages deduplicated by text into a corpus."""
    corpus: dict[str, str] = {}
    ids: dict[str, str] = {}
    queries: dict[str, Query] = {}

    def doc_id(text: str) -> str:
        if text not in ids:
            ids[text] = f"d{len(ids)}"
            corpus[ids[text]] = text
        return ids[text]

    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainDataError(f"{path.name} line {n}: not valid JSON ({exc})") from exc
            if not isinstance(row, dict):
                raise TrainDataError(f"{path.name} line {n}: expected a JSON object with "
                                     "query, positive and optional negatives")
            query, positive = _field(row, "query", n, path), _field(row, "positive", n, path)
            negatives = row.get("negatives") or []
            if not isinstance(negatives, list) or not all(
                    isinstance(t, str) and t.strip() for t in negatives):
                raise TrainDataError(f"{path.name} line {n}: 'negatives' must be a list of "
                                     "non-empty strings")
            entry = queries.setdefault(query, Query(f"q{len(queries)}", query, []))
            if (pid := doc_id(positive)) not in entry.positives:
                entry.positives.append(pid)
            entry.negatives += [doc_id(t) for t in negatives if doc_id(t) not in entry.negatives]
    if not queries:
        raise TrainDataError(f"{path.name} holds no training rows")
    for entry in queries.values():
        entry.negatives = [d for d in entry.negatives if d not in entry.positives]
    return TrainingData(corpus, list(queries.values()), path.stem)


def split_heldout(data: TrainingData, fraction: float, seed: int
                  ) -> tuple[list[Query], list[Query]]:
    """(training queries, held-out queries): a seeded shuffle, at least one of each."""
    if not 0 < fraction < 1:
        raise TrainDataError(f"the held-out fraction must be between 0 and 1 (got {fraction})")
    if len(data.queries) < 2:
        raise TrainDataError(f"{data.name}: need at least 2 distinct queries (one to train on, "
                             f"one to hold out), found {len(data.queries)}")
    order = list(data.queries)
    random.Random(seed).shuffle(order)
    size = min(max(1, round(len(order) * fraction)), len(order) - 1)
    return order[size:], order[:size]


def heldout_dataset(data: TrainingData, heldout: list[Query]) -> Dataset:
    """The held-out queries against the whole corpus, as `polyseek eval` reads a dataset."""
    return Dataset(f"{data.name}-heldout", dict(data.corpus),
                   {q.id: q.text for q in heldout},
                   {q.id: {d: 1 for d in q.positives} for q in heldout}, {})


def write_beir(dataset: Dataset, directory: Path) -> None:
    """`dataset` as a BEIR directory (qrels split `test`), for `polyseek eval`."""
    (directory / "qrels").mkdir(parents=True, exist_ok=True)
    with (directory / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for did, text in dataset.corpus.items():
            f.write(json.dumps({"_id": did, "text": text}, ensure_ascii=False) + "\n")
    with (directory / "queries.jsonl").open("w", encoding="utf-8") as f:
        for qid, text in dataset.queries.items():
            f.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    lines = ["query-id\tcorpus-id\tscore"] + [
        f"{q}\t{d}\t{s}" for q, docs in dataset.qrels.items() for d, s in docs.items()]
    (directory / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")


def examples(data: TrainingData, queries: list[Query]) -> list[Example]:
    """One example per (query, positive) pair, with the query's hard negatives."""
    out = []
    for q in queries:
        positives = frozenset(data.corpus[d] for d in q.positives)
        negatives = [data.corpus[d] for d in q.negatives]
        out += [Example(q.text, data.corpus[d], negatives, positives) for d in q.positives]
    return out
