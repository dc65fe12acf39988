"""Quality sanity on the real bundled models: meaning, not just shapes."""

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


@pytest.fixture(params=["e5", "minilm"])
def model(request):
    """The embedded default (e5) and the small English model (MiniLM)."""
    return request.getfixturevalue(request.param)


def task(model, name: str) -> str | None:
    """`name` if the model declares it (e5's prompts), else no task (MiniLM)."""
    return name if name in model.capabilities.tasks else None


def test_paraphrases_score_higher_than_unrelated_text(model):
    for left, right in PARAPHRASES:
        a, b, c = model.encode([left, right, UNRELATED], task=task(model, "text-matching"))
        # e5's cosines sit in a narrow band (unrelated texts score ~0.7), hence 0.1
        assert a @ b > a @ c + 0.1, (left, right, a @ b, a @ c)


@pytest.mark.parametrize("dim", [384, 256, 128, 64])
def test_truncated_dimensions_keep_the_ranking(model, dim):
    queries = model.encode(list(QUERIES), task(model, "retrieval.query"), truncate_dim=dim)
    documents = model.encode(DOCUMENTS, task(model, "retrieval.passage"), truncate_dim=dim)
    top1 = (queries @ documents.T).argmax(axis=1)
    accuracy = np.mean(top1 == np.array(list(QUERIES.values())))
    assert accuracy == 1.0, f"top-1 accuracy {accuracy:.2f} at {dim} dimensions"
