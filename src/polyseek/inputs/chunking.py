"""Splitting text into chunks that keep to its structure, in any script.

One chunker serves ingestion (chunk length in model tokens, with overlap) and /v1/segment
(chunk length in characters). A chunk that is too long is split at the strongest boundary it
holds, level by level:

1. paragraphs: blank lines, and Markdown heading lines;
2. sentences: Latin `.!?…` before a space; CJK `。！？` with or without one; Devanagari
   `।॥`, Arabic `؟۔`, Armenian, Ethiopic, Myanmar and Tibetan ends; line breaks, but those
   that wrap a sentence (a lower-case word goes on after them);
3. lines; 4. clauses: `,;:` and CJK `，、；：`; 5. words;
6. single characters or tokens (CJK text has no spaces), never before a combining mark.

Pieces that fit are merged greedily within the level they were split at, so a chunk never
mixes two paragraphs unless both fit. Chunks are (start, end) character spans of the text
without surrounding whitespace."""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import Protocol

Span = tuple[int, int]
Offsets = Callable[[str], list[tuple[int, int]]]

_CLOSERS = "\"'”’»)\\]」』）】》〉〕"
# each level's separators; a piece ends where a separator match ends (whitespace is trimmed)
PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n\s*"  # a blank line
                       r"|\n(?=[ \t]{0,3}#{1,6}\s)"  # the break before a Markdown heading
                       r"|(?m:^[ \t]{0,3}#{1,6}[ \t][^\n]*\n)")  # and the heading line
SENTENCE = re.compile(
    rf"[.!?…‽][{_CLOSERS}]*\s+"  # Latin, Cyrillic, Greek, ...: a space after the end
    rf"|[。！？｡︒﹒﹖﹗．][{_CLOSERS}]*\s*"  # CJK: none needed
    r"|[।॥؟۔։።။།፧᙮]\s*"  # Devanagari and other Indic, Arabic/Urdu, Armenian, Ethiopic, ...
    r"|\n\s*(?=[^\sa-zß-ÿа-яα-ω])"  # a line break, unless a lower-case word goes on after it
)
LINE = re.compile(r"\n\s*")
CLAUSE = re.compile(rf"[,;:][{_CLOSERS}]*\s+|[，、；：︐︑︔﹐﹑﹔][{_CLOSERS}]*\s*")
WORD = re.compile(r"\s+")
LEVELS = (PARAGRAPH, SENTENCE, LINE, CLAUSE, WORD)

# characters written without spaces between words: each is a word of its own
_NO_SPACE_SCRIPTS = ("\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f"
                     "\uff00-\uffef\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f\u1780-\u17ff")
_WORDS = re.compile(rf"[{_NO_SPACE_SCRIPTS}]|[^\s{_NO_SPACE_SCRIPTS}]+")


class Lengths(Protocol):
    """How chunk length is measured, and where a piece may be cut when nothing else fits."""

    def __call__(self, start: int, end: int) -> int: ...

    def cuts(self, start: int, end: int) -> list[int]: ...

    def reach(self, start: int, end: int, limit: int) -> int:
        """The furthest cut (or `end`) a piece from `start` reaches within `limit`; past
        `start` even when one unit is over it."""
        ...


class CharLengths:
    """Length in characters; any character boundary is a cut, but never before a combining
    mark (a Devanagari vowel sign stays with its consonant)."""

    def __init__(self, text: str):
        self.text = text

    def __call__(self, start: int, end: int) -> int:
        return end - start

    def _cut_at(self, i: int) -> bool:
        return not unicodedata.category(self.text[i]).startswith("M")

    def cuts(self, start: int, end: int) -> list[int]:
        return [i for i in range(start + 1, end) if self._cut_at(i)]

    def reach(self, start: int, end: int, limit: int) -> int:
        stop = min(start + limit, end)
        back = stop
        while start + 1 < back < end and not self._cut_at(back):
            back -= 1
        if back > start + 1 or stop == end or self._cut_at(back):
            return back
        while stop < end and not self._cut_at(stop):  # a character with many marks
            stop += 1
        return stop


class TokenLengths:
    """Length in tokens: the tokens that start inside a span; cuts at token starts."""

    def __init__(self, offsets: list[tuple[int, int]]):
        self.starts = sorted(start for start, end in offsets if end > start)

    def __call__(self, start: int, end: int) -> int:
        return bisect_left(self.starts, end) - bisect_left(self.starts, start)

    def cuts(self, start: int, end: int) -> list[int]:
        return self.starts[bisect_right(self.starts, start):bisect_left(self.starts, end)]

    def reach(self, start: int, end: int, limit: int) -> int:
        first = bisect_left(self.starts, start)
        if first + limit >= len(self.starts) or self.starts[first + limit] >= end:
            return end
        stop = self.starts[first + limit]
        if stop > start:
            return stop
        later = bisect_right(self.starts, start)  # tokens sharing a start: past them all
        return self.starts[later] if later < len(self.starts) and self.starts[later] < end \
            else end


def _trim(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _pieces(text: str, span: Span, separator: re.Pattern) -> list[Span]:
    """`span` cut after each separator, trimmed, without empty pieces."""
    start, end = span
    found, at = [], start
    for match in separator.finditer(text, start, end):
        if match.end() > at:
            found.append(_trim(text, at, match.end()))
            at = match.end()
    found.append(_trim(text, at, end))
    return [piece for piece in found if piece]


def _hard_split(span: Span, limit: int, lengths: Lengths) -> list[Span]:
    """Greedy cuts at the finest positions: each piece as long as fits (at least one unit)."""
    start, end = span
    out = []
    while start < end:
        stop = lengths.reach(start, end, limit)
        out.append((start, stop))
        start = stop
    return out


def _split(text: str, span: Span, limit: int, lengths: Lengths, level: int) -> list[Span]:
    if lengths(*span) <= limit:
        return [span]
    if level == len(LEVELS):
        return [p for piece in _hard_split(span, limit, lengths)
                if (p := _trim(text, *piece))]
    out: list[Span] = []
    current: Span | None = None
    for piece in _pieces(text, span, LEVELS[level]):
        if lengths(*piece) > limit:
            if current:
                out.append(current)
                current = None
            out.extend(_split(text, piece, limit, lengths, level + 1))
        elif current and lengths(current[0], piece[1]) <= limit:
            current = (current[0], piece[1])
        else:
            if current:
                out.append(current)
            current = piece
    if current:
        out.append(current)
    return out


def chunk_spans(text: str, limit: int, lengths: Lengths | None = None) -> list[Span]:
    """(start, end) spans of `text`'s chunks, each at most `limit` long as `lengths` measures
    (characters by default), cut at the strongest boundaries that make them fit."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    whole = _trim(text, 0, len(text))
    return _split(text, whole, limit, lengths or CharLengths(text), 0) if whole else []


def _overlap_start(text: str, span: Span, budget: int, lengths: Lengths) -> int:
    """Where the tail of `span` at most `budget` long starts, at a sentence, clause or word
    start if one fits, else at a cut; span's end when nothing fits."""
    start, end = span
    if lengths(start, end) <= budget:
        return start
    for separator in (SENTENCE, CLAUSE, WORD):
        starts = [m.end() for m in separator.finditer(text, start, end) if m.end() < end]
        fitting = [s for s in starts if lengths(s, end) <= budget]
        if fitting:
            return fitting[0]
    fitting = [c for c in lengths.cuts(start, end) if lengths(c, end) <= budget]
    return fitting[0] if fitting else end


def chunk_with_overlap(text: str, size: int, overlap: int, lengths: Lengths) -> list[Span]:
    """Chunks of at most `size`, each after the first starting with up to `overlap` of the
    end of the one before (whole sentences or words where they fit)."""
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, {size}) (got {overlap})")
    spans = chunk_spans(text, size - overlap, lengths)
    out = spans[:1]
    for previous, (start, end) in zip(spans, spans[1:], strict=False):
        begin = _overlap_start(text, previous, overlap, lengths) if overlap else start
        out.append((min(begin, start), end))
    return out


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, in order, without empty pieces (paragraphs end sentences)."""
    whole = _trim(text, 0, len(text))
    if not whole:
        return []
    return [text[s:e] for paragraph in _pieces(text, whole, PARAGRAPH)
            for s, e in _pieces(text, paragraph, SENTENCE)]


def word_offsets(text: str) -> list[tuple[int, int]]:
    """Word offsets, for models without a fast tokenizer: runs of non-space characters, and
    each character of scripts written without spaces (CJK, Thai, ...) on its own."""
    return [m.span() for m in _WORDS.finditer(text)]


def split_by_tokens(text: str, tokenize: Offsets, chunk_tokens: int) -> list[str]:
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


def hf_offsets(tokenizer) -> Offsets:
    """A `tokenize` for split_by_tokens from a transformers fast tokenizer."""

    def tokenize(text: str) -> list[tuple[int, int]]:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(o) for o in encoded["offset_mapping"]]

    return tokenize
