"""Deterministic English sentences of mixed length for the embedding benchmarks."""

from __future__ import annotations

import random

SEED = 1234


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


ADJECTIVES = _words(
    "quiet old bright heavy small curious distant careful modern ancient narrow green "
    "sudden patient broken famous gentle rapid hidden simple formal local")
NOUNS = _words(
    "river engineer library committee garden storm teacher market bridge system report "
    "village machine student harbour forest museum network kitchen council doctor island "
    "railway painter budget window experiment festival")
VERBS = _words(
    "visited described repaired ignored measured crossed improved studied followed "
    "announced protected changed discovered questioned built replaced opened reviewed")
PREPOSITIONS = _words("near beside behind across under before after during without within")
ADVERBS = _words("slowly quickly carefully rarely often quietly openly suddenly gladly")
CONNECTORS = (", and", ", but", "; however,", " because", " while", ", so", " although")


def clause(rng: random.Random) -> str:
    """One simple clause: the ADJ NOUN [ADV] VERB the ADJ NOUN PREP the NOUN."""
    adverb = f" {rng.choice(ADVERBS)}" if rng.random() < 0.4 else ""
    return (f"the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}{adverb} {rng.choice(VERBS)} "
            f"the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(PREPOSITIONS)} "
            f"the {rng.choice(NOUNS)}")


def target_words(rng: random.Random) -> int:
    """A sentence length in words: mostly short or medium, some long (5 to 120)."""
    bucket = rng.random()
    if bucket < 0.4:
        return rng.randint(5, 15)
    if bucket < 0.8:
        return rng.randint(16, 40)
    return rng.randint(41, 120)


def sentence(rng: random.Random) -> str:
    """Clauses joined by connectors, cut to the target length, capitalised, with a period."""
    n_words = target_words(rng)
    text = clause(rng)
    while len(text.split()) < n_words:
        text += f"{rng.choice(CONNECTORS)} {clause(rng)}"
    words = text.split()[:n_words]
    words[-1] = words[-1].rstrip(",;")
    return " ".join(words).capitalize() + "."


def make_sentences(n: int, seed: int = SEED) -> list[str]:
    """`n` deterministic English sentences of mixed length."""
    rng = random.Random(seed)
    return [sentence(rng) for _ in range(n)]


def make_queries(n: int, seed: int = SEED + 1) -> list[str]:
    """`n` short queries (one clause cut to 4 to 9 words) for single-query latency."""
    rng = random.Random(seed)
    return [" ".join(clause(rng).split()[: rng.randint(4, 9)]).capitalize() + "?"
            for _ in range(n)]
