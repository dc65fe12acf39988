"""Quality sanity on the real default model: meaning, not just shapes."""

from __future__ import annotations

import numpy as np
import pytest

PARAPHRASES = [
    ("A man is playing a guitar.", "Someone is strumming a guitar."),
    ("The weather is lovely today.", "It is a beautiful sunny day."),
    ("How do I reset my password?", "I forgot my password and need to change it."),
    ("The cat sleeps on the sofa.", "A kitten is napping on the couch."),
]
UNRELATED = "Quarterly revenue grew by eight percent."

# query -> index of its relevant document
QUERIES = {
    "how to bake sourdough bread": 0,
    "symptoms of the flu": 1,
    "python list comprehension syntax": 2,
    "best time to visit Japan for cherry blossoms": 3,
    "how do electric cars charge": 4,
    "rules of chess castling": 5,
    "tips for growing tomatoes": 6,
    "what causes ocean tides": 7,
}
DOCUMENTS = [
    "Sourdough needs an active starter, a long fermentation and a very hot oven.",
    "Influenza usually brings fever, cough, sore throat and muscle aches.",
    "In Python, [x * 2 for x in items] builds a new list from an iterable.",
    "Sakura season in Japan peaks from late March to early April.",
    "Battery electric vehicles recharge from wall boxes or fast DC chargers.",
    "Castling moves the king two squares toward a rook, which jumps over it.",
    "Tomato plants want full sun, deep watering and support stakes.",
    "Tides are caused mainly by the Moon's gravitational pull on the oceans.",
    "The stock exchange closed higher after the central bank's announcement.",
    "A marathon is 42.195 kilometres long.",
    "Jazz emerged in New Orleans in the early twentieth century.",
    "The printer on the third floor is out of toner again.",
]


def test_paraphrases_score_higher_than_unrelated_text(minilm):
    for left, right in PARAPHRASES:
        a, b, c = minilm.encode([left, right, UNRELATED])
        assert a @ b > a @ c + 0.2, (left, right)


@pytest.mark.parametrize("dim", [384, 256, 128, 64])
def test_truncated_dimensions_keep_the_ranking(minilm, dim):
    queries = minilm.encode(list(QUERIES), truncate_dim=dim)
    documents = minilm.encode(DOCUMENTS, truncate_dim=dim)
    top1 = (queries @ documents.T).argmax(axis=1)
    accuracy = np.mean(top1 == np.array(list(QUERIES.values())))
    assert accuracy == 1.0, f"top-1 accuracy {accuracy:.2f} at {dim} dimensions"
