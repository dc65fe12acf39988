"""Sampling parameters and next-token choice, shared by generative models."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()  # stop strings (matched on decoded text by the caller)
    stop_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")

    def generator(self) -> torch.Generator | None:
        return torch.Generator().manual_seed(self.seed) if self.seed is not None else None


def next_tokens(logits: Tensor, params: SamplingParams,
                generator: torch.Generator | None = None) -> Tensor:
    """logits [B, V] -> token ids [B]: greedy at temperature 0, else nucleus sampling."""
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    # shifted so the best logit is 0, in float64: a tiny temperature (5e-324) sends the others
    # to -inf instead of overflowing (inf / inf is NaN) or rounding to a zero divisor
    shifted = logits.double() - logits.double().amax(dim=-1, keepdim=True)
    probs = torch.softmax(shifted / params.temperature, dim=-1)
    if params.top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of strictly better tokens
        outside = before >= params.top_p
        outside[..., 0] = False  # the most likely token always stays, however small top_p is
        sorted_probs = sorted_probs.masked_fill(outside, 0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
