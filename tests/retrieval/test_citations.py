"""Citations in grounded answers: every marker left in the text names a returned source,
however the text arrives in pieces, and text that is not a marker passes unchanged."""

from __future__ import annotations

import asyncio
import random

import pytest

from polyseek.models.base import TextDelta
from polyseek.retrieval.citations import (
    CitationFilter,
    citation_numbers,
    cite,
    filter_citations,
    supporting_sources,
)


@pytest.mark.parametrize("text,count,expected,cited", [
    ("The Moon pulls the sea [1].", 3, "The Moon pulls the sea [1].", {1}),
    ("The Moon pulls the sea [7].", 3, "The Moon pulls the sea.", set()),
    ("Tides [1, 7] and bread [2][9].", 3, "Tides [1] and bread [2].", {1, 2}),
    ("See [Source 2] and [sources 1; 3].", 3, "See [2] and [1, 3].", {1, 2, 3}),
    ("Twice [2] [2, 2].", 2, "Twice [2] [2].", {2}),
    ("Nothing [0] here [12].", 5, "Nothing here.", set()),
    ("A [link](https://x.org), list[i] and [note]", 3,
     "A [link](https://x.org), list[i] and [note]", set()),
    ("Glued to a word: sea[2], code[0].", 3, "Glued to a word: sea[2], code.", {2}),
    ("Open [1 and more", 3, "Open [1 and more", set()),
    ("[[1]] nested", 1, "[[1]] nested", {1}),
    ("Unclosed [2", 3, "Unclosed [2", set()),
    ("Spaces  kept\tand\nlines [1]\n", 1, "Spaces  kept\tand\nlines [1]\n", {1}),
    ("No sources at all [1].", 0, "No sources at all.", set()),
])
def test_markers_keep_only_numbers_that_name_a_source(text, count, expected, cited):
    assert filter_citations(text, count) == (expected, cited)
    assert set(citation_numbers(expected)) <= set(range(1, count + 1))


def test_a_stream_in_any_pieces_gives_the_same_text():
    rng = random.Random(7)
    text = ("Tides come from the Moon [1][4]. Bread needs a starter [Source 2], ovens [2, 9] "
            "and time [x]. Chess [3 ] castles; see [link](u) [12] and [ 1 ;3].  End [5]")
    whole, cited = filter_citations(text, 3)
    assert whole == ("Tides come from the Moon [1]. Bread needs a starter [2], ovens [2] "
                     "and time [x]. Chess [3] castles; see [link](u) and [1, 3].  End")
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 30)))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        citations = CitationFilter(3)
        out = "".join(citations.feed(p) for p in pieces) + citations.flush()
        assert (out, citations.cited) == (whole, cited)


def test_text_is_held_back_only_while_a_marker_may_be_open():
    citations = CitationFilter(2)
    assert citations.feed("The Moon") == "The Moon"
    assert citations.feed(" [") == ""  # the space and the bracket wait for the marker
    assert citations.feed("1") == ""
    assert citations.feed("] pulls") == " [1] pulls"
    assert citations.feed(" [see the") == ""
    assert citations.feed(" notes]") == " [see the notes]"
    assert citations.feed(" [" + "x" * 60) == " [" + "x" * 60  # too long to be a marker


def test_cite_rewrites_a_delta_stream_and_flushes_with_the_last_delta():
    async def deltas():
        yield TextDelta("Moon [")
        yield TextDelta("3] and [1")
        yield TextDelta("", finish_reason="stop", prompt_tokens=9, completion_tokens=3)

    async def run() -> list[TextDelta]:
        return [d async for d in cite(deltas(), CitationFilter(2))]

    out = asyncio.run(run())
    assert "".join(d.text for d in out) == "Moon and [1"
    assert (out[-1].finish_reason, out[-1].prompt_tokens, out[-1].completion_tokens) == (
        "stop", 9, 3)


SOURCES = ["Tides are caused by the gravitational pull of the Moon on the oceans.",
           "Lava is molten rock that flows from an erupting volcano."]


def test_an_answer_that_cites_nothing_cites_the_sources_that_hold_its_sentences():
    answer = ("The tides are caused by the gravitational pull of the Moon. The Earth is a "
              "ball about 12700 km wide. Lava is molten rock.")
    assert supporting_sources(answer, SOURCES) == [1, 2]
    citations = CitationFilter(2, SOURCES)
    out = citations.feed(answer[:40]) + citations.feed(answer[40:] + " [9]") + citations.flush()
    assert out == answer + " [1, 2]" and citations.cited == {1, 2}
    # unsupported sentences, or an answer that already cites, get nothing added
    assert filter_citations("The Earth is a ball about 12700 km wide.", 2) == (
        "The Earth is a ball about 12700 km wide.", set())
    cited = CitationFilter(2, SOURCES)
    assert cited.feed("Lava is molten rock [1].") + cited.flush() == "Lava is molten rock [1]."
    unsupported = CitationFilter(2, SOURCES)
    assert unsupported.feed("The Earth is round and wide.") + unsupported.flush() == \
        "The Earth is round and wide."
    assert supporting_sources("Yes. Moon.", SOURCES) == []  # too short to attribute
