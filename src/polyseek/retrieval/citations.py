"""Citations in a grounded answer: `[1]`-style markers kept only when they name a source.

A small model cites loosely: numbers past the last source, `[Source 2]`, `[1, 9]`. The
filter below rewrites every marker to the canonical `[n]` form with only the numbers that
map to a returned source, and drops a marker (and the space before it) that names none, so
every citation left in the text refers to a source. It works on a stream: text is held back
only from a `[` until the marker closes or cannot be one.

An answer that cites nothing valid (the bundled 135M model rarely cites) is attributed when it
ends: the sources that hold most of the words of one of its sentences are cited at its end
(the text before is already streamed).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Sequence

from polyseek.models.base import TextDelta

# [1], [1, 2], [1][2] (two markers), [Source 1], [sources 1; 2], [ref 3]
MARKER = re.compile(r"\[\s*(?:(?:sources?|refs?|ref\.)\s*)?(\d{1,4}(?:\s*[,;]\s*(?:(?:sources?|"
                    r"refs?)\s*)?\d{1,4})*)\s*\]", re.IGNORECASE)
NUMBER = re.compile(r"\d+")
MAX_MARKER = 48  # characters held back while a `[` may still open a marker
WORD = re.compile(r"\w{3,}")  # words that carry content (most function words are shorter)
SENTENCE = re.compile(r"[^.!?\n。！？]+[.!?。！？]?")
SUPPORT = 0.7  # share of a sentence's words one source must hold to be cited for it
MIN_WORDS = 3  # shorter sentences are not attributed


def supporting_sources(answer: str, texts: Sequence[str]) -> list[int]:
    """The numbers (from 1) of the sources that hold at least SUPPORT of the words of a
    sentence of `answer`, one per sentence (the best), in the order of the sentences."""
    vocabularies = [{w.lower() for w in WORD.findall(text)} for text in texts]
    found: list[int] = []
    for sentence in SENTENCE.findall(answer):
        words = {w.lower() for w in WORD.findall(sentence)}
        if len(words) < MIN_WORDS or not vocabularies:
            continue
        shared = [len(words & vocabulary) for vocabulary in vocabularies]
        best = max(range(len(shared)), key=shared.__getitem__)
        if shared[best] / len(words) >= SUPPORT and best + 1 not in found:
            found.append(best + 1)
    return found


def citation_numbers(text: str) -> list[int]:
    """Every number cited in `text` by a marker, in order of appearance, with repeats."""
    return [int(n) for m in MARKER.finditer(text) for n in NUMBER.findall(m.group(1))]


class CitationFilter:
    """Rewrites citation markers in streamed text for `count` sources (numbered from 1);
    `cited` collects the numbers kept. With the sources' `texts`, an answer that cites none
    is attributed when it ends (`supporting_sources`)."""

    def __init__(self, count: int, texts: Sequence[str] = ()):
        self.count = count
        self.texts = texts
        self.cited: set[int] = set()
        self._written: list[str] = []  # the text released so far
        self._space = ""  # whitespace held back: dropped with a marker that names nothing
        self._marker = ""  # text from a `[` on, while it may still be a marker

    def feed(self, text: str) -> str:
        """The text that can be released after `text` arrives."""
        out: list[str] = []
        for char in text:
            self._take(char, out)
        released = "".join(out)
        self._written.append(released)
        return released

    def flush(self) -> str:
        """The text still held back (the stream ended)."""
        out: list[str] = []
        while self._marker:  # released text may open another `[`: read until none is held
            held, self._marker = self._marker, ""
            out.append(self._space)
            self._space = ""
            self._release(held, out)
        out.append(self._space)
        self._space = ""
        if not self.cited and self.texts:
            numbers = supporting_sources("".join(self._written + out), self.texts)
            if numbers:
                self.cited.update(numbers)
                out.append(" [" + ", ".join(map(str, numbers)) + "]")
        released = "".join(out)
        self._written.append(released)
        return released

    def _take(self, char: str, out: list[str]) -> None:
        if self._marker:
            self._marker += char
            if char == "]":
                held, self._marker = self._marker, ""
                self._close(held, out)
            elif char in "[\n" or len(self._marker) > MAX_MARKER:
                held, self._marker = self._marker, ""
                out.append(self._space)
                self._space = ""
                self._release(held, out)
        elif char == "[":
            self._marker = char
        elif char in " \t":
            self._space += char
        else:
            out.append(self._space + char)
            self._space = ""

    def _release(self, held: str, out: list[str]) -> None:
        """`held` is not a marker: its `[` goes out as text, the rest is read again."""
        out.append(held[0])
        for char in held[1:]:
            self._take(char, out)

    def _close(self, held: str, out: list[str]) -> None:
        match = MARKER.fullmatch(held)
        if match is None:  # e.g. a Markdown link's [text]
            out.append(self._space)
            self._space = ""
            self._release(held, out)
            return
        numbers = [int(n) for n in NUMBER.findall(match.group(1))]
        kept = list(dict.fromkeys(n for n in numbers if 1 <= n <= self.count))
        if not kept:  # names no source: the marker and the space before it go
            self._space = ""
            return
        self.cited.update(kept)
        out.append(self._space + "[" + ", ".join(map(str, kept)) + "]")
        self._space = ""


def filter_citations(text: str, count: int) -> tuple[str, set[int]]:
    """`text` with its markers rewritten for `count` sources, and the numbers kept."""
    citations = CitationFilter(count)
    return citations.feed(text) + citations.flush(), citations.cited


async def cite(deltas: AsyncGenerator[TextDelta, None], citations: CitationFilter
               ) -> AsyncGenerator[TextDelta, None]:
    """`deltas` with their text through `citations`; what is held back goes out with the
    last delta."""
    try:
        async for delta in deltas:
            text = citations.feed(delta.text)
            if delta.finish_reason is not None:
                text += citations.flush()
            yield TextDelta(text, delta.finish_reason, delta.prompt_tokens,
                            delta.completion_tokens)
    finally:  # a consumer that stops listening stops the generation too
        await deltas.aclose()
