"""The options of a search, and their checks: light enough for the CLI to check them before
it knows whether a server or this process runs the search."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from polyseek.errors import InvalidInput

Mode = Literal["dense", "sparse", "hybrid"]
Fusion = Literal["rrf", "dbsf"]
MODES: tuple[Mode, ...] = ("dense", "sparse", "hybrid")
DEFAULT_MODE: Mode = "hybrid"  # best on the evaluation sets (README, "Search quality")
DEFAULT_FUSION: Fusion = "rrf"


def check_options(mode: str, fusion: str, weights: Sequence[float] | None, top_k: int) -> None:
    if top_k < 1:
        raise InvalidInput("top_k must be at least 1", ("top_k",))
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)} (got {mode!r})", ("mode",))
    if fusion not in ("rrf", "dbsf"):
        raise InvalidInput(f"fusion must be rrf or dbsf (got {fusion!r})", ("fusion",))
    if weights is not None and (len(weights) != 2 or min(weights) < 0 or sum(weights) == 0):
        raise InvalidInput("weights: two non-negative numbers (dense, sparse), not both 0",
                           ("weights",))
