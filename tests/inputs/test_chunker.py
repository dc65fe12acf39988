"""The chunker shared by ingestion and /v1/segment: boundaries in several scripts, lengths in
characters or tokens, overlap."""

from __future__ import annotations

import unicodedata

import pytest

from polyseek.inputs.chunking import (
    CharLengths,
    TokenLengths,
    chunk_spans,
    chunk_with_overlap,
    word_offsets,
)


def chunks(text: str, limit: int, lengths=None) -> list[str]:
    return [text[s:e] for s, e in chunk_spans(text, limit, lengths)]


def test_paragraphs_before_sentences_before_words():
    text = "First one. Second one.\n\nThird one here. Fourth."
    assert chunks(text, 100) == [text]
    assert chunks(text, 30) == ["First one. Second one.", "Third one here. Fourth."]
    assert chunks(text, 16) == ["First one.", "Second one.", "Third one here.", "Fourth."]
    assert chunks(text, 6) == ["First", "one.", "Second", "one.", "Third", "one", "here.",
                               "Fourth", "."]


def test_markdown_headings_start_paragraphs_and_wrapped_lines_continue_sentences():
    text = "# Tides\nThe Moon pulls the\nocean. Twice a day\nit rises."
    assert chunks(text, 40) == ["# Tides", "The Moon pulls the\nocean.", "Twice a day\nit rises."]
    assert chunks("Intro.\n## Part\nBody.", 12) == ["Intro.", "## Part", "Body."]
    # a line break before a capital (a list, a new line of verse) ends a piece
    assert chunks("Milk\nEggs\nFlour", 5) == ["Milk", "Eggs", "Flour"]


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("北京是首都。上海很大！广州呢？", 9, ["北京是首都。", "上海很大！广州呢？"]),
    ("吾輩は猫である。名前はまだ無い。", 10, ["吾輩は猫である。", "名前はまだ無い。"]),
    ("서울은 수도이다. 부산은 항구이다.", 12, ["서울은 수도이다.", "부산은 항구이다."]),
    ("भारत विशाल है। दिल्ली राजधानी है।", 18, ["भारत विशाल है।", "दिल्ली राजधानी है।"]),
    ("ما هي العاصمة؟ القاهرة.", 15, ["ما هي العاصمة؟", "القاهرة."]),
    ("Привет, мир. Как дела?", 12, ["Привет, мир.", "Как дела?"]),
    ("苹果、香蕉、橙子和葡萄都是水果", 6, ["苹果、香蕉、", "橙子和葡萄都", "是水果"]),
])
def test_sentence_and_clause_ends_in_several_scripts(text, limit, expected):
    assert chunks(text, limit) == expected


def test_a_cut_inside_a_word_never_separates_a_combining_mark():
    text = "क्षत्रिय"  # consonants with viramas and vowel signs
    pieces = chunks(text, 2)
    assert "".join(pieces) == text
    assert len(pieces) > 2 and all(unicodedata.category(p[0])[0] != "M" for p in pieces)


def test_reach_is_the_furthest_cut_that_fits():
    def brute(lengths, start, end, limit):
        cuts = [*lengths.cuts(start, end), end]
        fitting = [c for c in cuts if lengths(start, c) <= limit]
        return fitting[-1] if fitting else cuts[0]

    for text in ["नमस्ते दुनिया। यह", "北京是中国的首都", "a\u0301\u0301bc d"]:
        lengths = CharLengths(text)
        for start in range(len(text)):
            for end in range(start + 1, len(text) + 1):
                for limit in range(1, 5):
                    assert lengths.reach(start, end, limit) == brute(lengths, start, end, limit)
    tokens = TokenLengths([(0, 1), (0, 2), (2, 3), (3, 5), (5, 6), (7, 9), (9, 10)])
    for start in range(10):
        for end in range(start + 1, 11):
            for limit in range(1, 5):
                assert tokens.reach(start, end, limit) == brute(tokens, start, end, limit)


def test_token_lengths_and_overlap():
    text = "One two three. Four five six. Seven eight nine. Ten eleven twelve."
    lengths = TokenLengths(word_offsets(text))
    spans = chunk_with_overlap(text, 7, 3, lengths)
    got = [text[s:e] for s, e in spans]
    assert got == ["One two three.", "One two three. Four five six.",
                   "Four five six. Seven eight nine.", "Seven eight nine. Ten eleven twelve."]
    assert all(lengths(s, e) <= 7 for s, e in spans)
    # CJK words are single characters to the fallback tokenizer
    assert word_offsets("北京 is") == [(0, 1), (1, 2), (3, 5)]
    with pytest.raises(ValueError, match="overlap"):
        chunk_with_overlap(text, 4, 4, lengths)
    with pytest.raises(ValueError, match="limit"):
        chunk_spans(text, 0)
    assert chunk_spans(" \n ", 5) == []
