"""A BEIR-layout dataset from a directory: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from polyseek.errors import PolyseekError
from polyseek.retrieval.bm25 import LANGUAGES as BM25_LANGUAGES
from polyseek.retrieval.bm25 import MULTILINGUAL


class EvalError(PolyseekError):
    """The dataset is missing a file, malformed or inconsistent, or an option is wrong."""


@dataclass
class Dataset:
    name: str
    corpus: dict[str, str]  # doc id -> title and text
    queries: dict[str, str]  # query id -> text, only queries judged in the split
    qrels: dict[str, dict[str, int]]  # query id -> doc id -> relevance
    groups: dict[str, str]  # query id -> group (metadata.group or metadata.lang), if any
    languages: dict[str, int] = field(default_factory=dict)  # corpus metadata.lang: documents


def load_dataset(directory: str | Path, split: str = "test") -> Dataset:
    """Read and check a BEIR dataset; EvalError says what is wrong."""
    root = Path(directory)
    if not root.is_dir():
        raise EvalError(f"dataset directory {str(root)!r} not found")
    documents = _jsonl(root / "corpus.jsonl")
    corpus = {d["_id"]: _document_text(d) for d in documents}
    rows = {q["_id"]: q for q in _jsonl(root / "queries.jsonl")}
    qrels = _qrels(root / "qrels" / f"{split}.tsv")
    _check(qrels, corpus, rows)
    queries = {qid: str(rows[qid]["text"]) for qid in qrels}
    groups = {qid: g for qid in qrels if (g := _group(rows[qid]))}
    languages = dict(Counter(str(lang) for d in documents
                             if (lang := (d.get("metadata") or {}).get("lang"))))
    return Dataset(root.resolve().name, corpus, queries, qrels, groups, languages)


# ISO 639-1 codes of the BM25 languages (polyseek.retrieval.bm25.LANGUAGES)
ISO_LANGUAGES = {
    "ar": "arabic", "az": "azerbaijani", "eu": "basque", "bn": "bengali", "ca": "catalan",
    "zh": "chinese", "da": "danish", "nl": "dutch", "en": "english", "fi": "finnish",
    "fr": "french", "de": "german", "el": "greek", "he": "hebrew", "hu": "hungarian",
    "id": "indonesian", "it": "italian", "ja": "japanese", "kk": "kazakh", "ne": "nepali",
    "no": "norwegian", "nb": "norwegian", "nn": "norwegian", "pt": "portuguese",
    "ro": "romanian", "ru": "russian", "sl": "slovene", "es": "spanish", "sv": "swedish",
    "tg": "tajik", "tr": "turkish",
}


def corpus_language(dataset: Dataset) -> str | None:
    """The BM25 language the corpus declares through its documents' `metadata.lang` (an ISO
    639-1 code or a name): the one most documents are in (ties: the first seen), or
    "multilingual" when BM25 has no stemmer for it; None when no document declares one.

    A mixed corpus gets its main language rather than "multilingual": on eval/sv-en (README,
    "Search quality") each language's stemmer and stop words helped that language's queries
    and cost the other's nothing against "multilingual", which matches every function word.
    """
    if not dataset.languages:
        return None
    code = max(dataset.languages, key=dataset.languages.__getitem__).lower()
    name = ISO_LANGUAGES.get(code.replace("_", "-").split("-")[0], code)
    return name if name in BM25_LANGUAGES else MULTILINGUAL


def _document_text(doc: dict) -> str:
    title, text = str(doc.get("title") or "").strip(), str(doc["text"]).strip()
    return f"{title}\n{text}" if title else text


def _group(query: dict) -> str | None:
    metadata = query.get("metadata") or {}
    return metadata.get("group") or metadata.get("lang")


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise EvalError(f"missing {path.name} in {str(path.parent)!r}")
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                row["_id"] = str(row["_id"])
                row["text"]  # noqa: B018 - required field
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise EvalError(f"{path.name} line {n}: expected a JSON object with "
                                    f"_id and text ({exc})") from exc
            rows.append(row)
    if not rows:
        raise EvalError(f"{path.name} is empty")
    return rows


def _qrels(path: Path) -> dict[str, dict[str, int]]:
    if not path.is_file():
        splits = sorted(p.stem for p in path.parent.glob("*.tsv"))
        raise EvalError(f"no qrels for split {path.stem!r} (found: "
                            f"{', '.join(splits) or 'none'})")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.DictReader(f, delimiter="\t"), start=2):
            try:
                qid, did, score = row["query-id"], row["corpus-id"], int(row["score"])
            except (KeyError, TypeError, ValueError) as exc:
                raise EvalError(f"qrels/{path.name} line {n}: expected query-id, "
                                    "corpus-id and an integer score") from exc
            if score > 0:
                qrels.setdefault(qid, {})[did] = score
    if not qrels:
        raise EvalError(f"split {path.stem!r} has no relevant (score > 0) judgements")
    return qrels


def _check(qrels: dict[str, dict[str, int]], corpus: dict[str, str],
           queries: dict[str, dict]) -> None:
    for qid, docs in qrels.items():
        if qid not in queries:
            raise EvalError(f"qrels query-id {qid!r} is not in queries.jsonl")
        missing = sorted(set(docs) - set(corpus))
        if missing:
            raise EvalError(f"qrels corpus-id {missing[0]!r} (query {qid!r}) is not in "
                                "corpus.jsonl")
