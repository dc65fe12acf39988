"""BM25 term weights, from Qdrant's own BM25 model (`qdrant_edge.Bm25`), for both store
adapters: a document's term frequencies go into the sparse ``bm25`` vector, and the engine
applies IDF at query time (the vector is declared with the IDF modifier).

A collection has one language, which picks the Snowball stemmer and stop words. "multilingual"
tokenises every script (CJK without spaces included) and neither stems nor drops stop words:
the choice for a language without a stemmer here. A corpus mixing languages that have one is
better served by its main language: on eval/sv-en (README, "Search quality") Swedish and
English BM25 each helped their own queries and cost the other language's nothing, while
"multilingual" ranked worst, matching every function word.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import qdrant_edge as qe

from polyseek.errors import InvalidInput

DEFAULT_LANGUAGE = "english"
MULTILINGUAL = "multilingual"
LANGUAGES = (
    "arabic", "azerbaijani", "basque", "bengali", "catalan", "chinese", "danish", "dutch",
    "english", "finnish", "french", "german", "greek", "hebrew", "hinglish", "hungarian",
    "indonesian", "italian", "japanese", "kazakh", "nepali", "norwegian", "portuguese",
    "romanian", "russian", "slovene", "spanish", "swedish", "tajik", "turkish", MULTILINGUAL,
)


@dataclass
class SparseVector:
    indices: list[int]
    values: list[float]


def check_language(language: str) -> str:
    """`language` (lower-cased) if BM25 supports it."""
    language = language.lower()
    if language not in LANGUAGES:
        raise InvalidInput(f"unsupported BM25 language {language!r}; use one of "
                           f"{', '.join(LANGUAGES)}", ("language",))
    return language


@cache
def _model(language: str) -> qe.Bm25:
    if language == MULTILINGUAL:
        return qe.Bm25(qe.Bm25Config(tokenizer=qe.TokenizerType.Multilingual,
                                     stemmer=qe.DisabledStemmer(),
                                     stopwords=qe.StopwordsSet(custom=set())))
    return qe.Bm25(qe.Bm25Config(language=language))


def document_vector(text: str, language: str) -> SparseVector | None:
    """The term weights of a stored text; None when it has no terms."""
    vector = _model(language).embed_document(text)
    return SparseVector(vector.indices, vector.values) if vector.indices else None


def query_vector(text: str, language: str) -> SparseVector | None:
    """Each term of the query once; None when it has no terms (e.g. only stop words)."""
    vector = _model(language).embed_query(text)
    return SparseVector(vector.indices, vector.values) if vector.indices else None
