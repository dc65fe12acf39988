"""Contrastive losses: InfoNCE with in-batch and hard negatives, over Matryoshka prefixes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def info_nce(queries: torch.Tensor, documents: torch.Tensor, mask: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """InfoNCE: query i's positive is document i; every other document is a negative, except
    where `mask` [B, N] is True (another copy of one of its positives).

    queries [B, D], documents [N, D] (N >= B: the B positives first, then hard negatives),
    both L2-normalised."""
    logits = queries @ documents.T / temperature  # [B, N]
    logits = logits.masked_fill(mask, float("-inf"))
    labels = torch.arange(len(queries))
    return F.cross_entropy(logits, labels)


def matryoshka_info_nce(queries: torch.Tensor, documents: torch.Tensor, mask: torch.Tensor,
                        temperature: float, dims: Sequence[int]
                        ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """The sum of InfoNCE on each prefix of the embeddings (each dim in `dims`, and the full
    size), each prefix re-normalised; returns (total, term per dim).

    queries [B, D], documents [N, D]: pooled, not yet normalised."""
    full = queries.shape[-1]
    terms = {}
    for dim in sorted({*(d for d in dims if d < full), full}):
        q = F.normalize(queries[:, :dim], dim=-1)
        d = F.normalize(documents[:, :dim], dim=-1)
        terms[dim] = info_nce(q, d, mask, temperature)
    return torch.stack(list(terms.values())).sum(), terms


def false_negative_mask(positives: Sequence[frozenset[str]], documents: Sequence[str]
                        ) -> torch.Tensor:
    """[B, N] True where document j (not i's own, j != i) is one of query i's positives."""
    mask = torch.zeros(len(positives), len(documents), dtype=torch.bool)
    for i, texts in enumerate(positives):
        for j, doc in enumerate(documents):
            mask[i, j] = j != i and doc in texts
    return mask
