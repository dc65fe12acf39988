"""Training data: JSONL pairs or a BEIR directory, grouped by query and split (seeded) into
training examples and a held-out evaluation set in the BEIR shape `polyseek eval` reads.

A JSONL item (query, positive, each negative) is a text or, for a model that reads images,
`{"image": "path"}` (the `/v1/embeddings` item form; a relative path is relative to the JSONL
file's folder). An image is checked when the file is read and keyed in the corpus by
`image:<resolved path>`; it is decoded again (within the project's image limits) each time it
is embedded.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from polyseek.errors import InputTooLarge, InvalidInput, PolyseekError
from polyseek.eval.data import Dataset, EvalError, load_dataset
from polyseek.inputs.images import ImageLimits, decode_image_bytes, read_local_file


class TrainDataError(PolyseekError):
    """The training data is missing, malformed or empty, or a setting does not fit it."""


IMAGE_LIMITS = ImageLimits(allow_local_paths=True)  # the default limits, local files allowed


@dataclass(frozen=True)
class ImageItem:
    """An image of the training data: its resolved file path (what it is compared and keyed
    by) and, for error messages, where it was first read ("pairs.jsonl line 3")."""

    path: Path
    where: str = field(default="", compare=False)

    @property
    def doc_id(self) -> str:
        return f"image:{self.path}"

    def load(self) -> Image.Image:
        """The decoded, upright RGB image; TrainDataError (naming the line) if it cannot be."""
        if not self.path.is_file():
            raise TrainDataError(f"{self.where}: image file {str(self.path)!r} not found")
        try:
            return decode_image_bytes(read_local_file(self.path, IMAGE_LIMITS.max_bytes),
                                      IMAGE_LIMITS)
        except (InvalidInput, InputTooLarge) as exc:
            raise TrainDataError(f"{self.where}: image {str(self.path)!r}: {exc}") from exc


Item = str | ImageItem  # a training item: a text or an image


def model_inputs(items: list[Item]) -> list[str | Image.Image]:
    """Items as models take them: texts as they are, images decoded."""
    return [item.load() if isinstance(item, ImageItem) else item for item in items]


@dataclass
class Query:
    """One query with every passage judged relevant to it and the hard negatives given."""

    id: str
    text: Item
    positives: list[str]  # doc ids
    negatives: list[str] = field(default_factory=list)  # doc ids


@dataclass
class TrainingData:
    corpus: dict[str, Item]  # doc id -> text or image
    queries: list[Query]
    name: str = "data"
    first_image: ImageItem | None = None  # the first image item read, if any


@dataclass
class Example:
    """One training row: a query, one positive passage, its hard negatives (texts or
    images)."""

    query: Item
    positive: Item
    negatives: list[Item]
    positives: frozenset[Item]  # every positive item of the query (never a negative for it)


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


ITEM_FORM = 'a non-empty string or {"image": "path"}'


def _item(value: object, key: str, where: str, folder: Path) -> Item:
    """A text, or an image item resolved against `folder` (its file is checked later)."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, dict) and set(value) == {"image"} and \
            isinstance(value["image"], str) and value["image"].strip():
        return ImageItem((folder / value["image"]).resolve(), where)
    raise TrainDataError(f"{where}: {key!r} must be {ITEM_FORM}")


def _row_items(row: dict, where: str, folder: Path) -> tuple[Item, Item, list[Item]]:
    """(query, positive, negatives) of one JSONL row."""
    query = _item(row.get("query"), "query", where, folder)
    positive = _item(row.get("positive"), "positive", where, folder)
    negatives = row.get("negatives") or []
    if not isinstance(negatives, list):
        raise TrainDataError(f"{where}: 'negatives' must be a list, each {ITEM_FORM}")
    return query, positive, [_item(t, "negatives", where, folder) for t in negatives]


def read_jsonl(path: Path) -> TrainingData:
    """Rows grouped by query; passages deduplicated (texts by text, images by resolved path)
    into a corpus. Every image is decoded once here, so a bad one fails naming its line."""
    corpus: dict[str, Item] = {}
    ids: dict[Item, str] = {}
    queries: dict[Item, Query] = {}
    checked: set[ImageItem] = set()
    first_image: ImageItem | None = None

    def doc_id(item: Item) -> str:
        if item not in ids:
            ids[item] = item.doc_id if isinstance(item, ImageItem) else f"d{len(ids)}"
            corpus[ids[item]] = item
        return ids[item]

    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path.name} line {n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainDataError(f"{where}: not valid JSON ({exc})") from exc
            if not isinstance(row, dict):
                raise TrainDataError(f"{where}: expected a JSON object with query, positive "
                                     "and optional negatives")
            query, positive, negatives = _row_items(row, where, path.parent)
            for item in (query, positive, *negatives):
                if isinstance(item, ImageItem) and item not in checked:
                    item.load()
                    checked.add(item)
                    first_image = first_image or item
            entry = queries.setdefault(query, Query(f"q{len(queries)}", query, []))
            if (pid := doc_id(positive)) not in entry.positives:
                entry.positives.append(pid)
            entry.negatives += [doc_id(t) for t in negatives if doc_id(t) not in entry.negatives]
    if not queries:
        raise TrainDataError(f"{path.name} holds no training rows")
    for entry in queries.values():
        entry.negatives = [d for d in entry.negatives if d not in entry.positives]
    return TrainingData(corpus, list(queries.values()), path.stem, first_image)


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
        for did, item in dataset.corpus.items():
            f.write(json.dumps(beir_row(did, item), ensure_ascii=False) + "\n")
    with (directory / "queries.jsonl").open("w", encoding="utf-8") as f:
        for qid, item in dataset.queries.items():
            f.write(json.dumps(beir_row(qid, item), ensure_ascii=False) + "\n")
    lines = ["query-id\tcorpus-id\tscore"] + [
        f"{q}\t{d}\t{s}" for q, docs in dataset.qrels.items() for d, s in docs.items()]
    (directory / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")


def beir_row(item_id: str, item: Item) -> dict:
    """A corpus or query row: {"_id", "text"}, or for an image {"_id", "image": path}."""
    if isinstance(item, ImageItem):
        return {"_id": item_id, "image": str(item.path)}
    return {"_id": item_id, "text": item}


def examples(data: TrainingData, queries: list[Query]) -> list[Example]:
    """One example per (query, positive) pair, with the query's hard negatives."""
    out = []
    for q in queries:
        positives = frozenset(data.corpus[d] for d in q.positives)
        negatives = [data.corpus[d] for d in q.negatives]
        out += [Example(q.text, data.corpus[d], negatives, positives) for d in q.positives]
    return out
