"""The options of a search, and their checks: light enough for the CLI to check them before
it knows whether a server or this process runs the search."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from polyseek.errors import InvalidInput

Mode = Literal["dense", "sparse", "hybrid"]
Fusion = Literal["rrf", "dbsf"]
MODES: tuple[Mode, ...] = ("dense", "sparse", "hybrid")
# Dense: `polyseek eval eval/sv-en` (README, "Search quality") ranks the default model's dense
# search above every hybrid (RRF, DBSF, dense weighted 2:1) with every BM25 language tried
# (english, swedish, multilingual): nDCG@10 0.771 against at most 0.714, p < 0.05. Hybrid
# helped only the weaker, English-only MiniLM; measure a collection's own model to choose.
DEFAULT_MODE: Mode = "dense"
DEFAULT_FUSION: Fusion = "rrf"


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)} (got {mode!r})", ("mode",))


def check_options(mode: str | None, fusion: str, weights: Sequence[float] | None,
                  top_k: int) -> None:
    """`mode` None: the collection's default mode."""
    if top_k < 1:
        raise InvalidInput("top_k must be at least 1", ("top_k",))
    if mode is not None:
        check_mode(mode)
    if fusion not in ("rrf", "dbsf"):
        raise InvalidInput(f"fusion must be rrf or dbsf (got {fusion!r})", ("fusion",))
    if weights is not None and (len(weights) != 2 or min(weights) < 0 or sum(weights) == 0):
        raise InvalidInput("weights: two non-negative numbers (dense, sparse), not both 0",
                           ("weights",))
