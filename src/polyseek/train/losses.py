"""Contrastive losses: InfoNCE with in-batch and hard negatives, over Matryoshka prefixes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F


def info_nce(queries: torch.Tensor, documents: torch.Tensor, mask: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """InfoNCE: query i's positive is document i; every other document is a negative, except
    where `mask` [B, N] is True (another copy of one of its positives).

    queries [B, D], documents [N, D] (N >= B: the B positives first, then hard negatives),
    both L2-normalised."""
    return info_nce_logits(queries @ documents.T, mask, temperature)


def info_nce_logits(similarity: torch.Tensor, mask: torch.Tensor,
                    temperature: float) -> torch.Tensor:
    """InfoNCE on a query-document similarity matrix [B, N] (positives on the diagonal)."""
    logits = (similarity / temperature).masked_fill(mask, float("-inf"))
    labels = torch.arange(len(similarity))
    return F.cross_entropy(logits, labels)


def matryoshka_info_nce(queries: torch.Tensor, documents: torch.Tensor, mask: torch.Tensor,
                        temperature: float, dims: Sequence[int],
                        weights: Mapping[int, float] | None = None
                        ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """The weighted sum of InfoNCE on each prefix of the embeddings (each dim in `dims`, and
    the full size; weight 1 where `weights` names none), each prefix re-normalised; returns
    (total, unweighted term per dim).

    queries [B, D], documents [N, D]: pooled, not yet normalised."""
    full = queries.shape[-1]
    terms = {}
    for dim in sorted({*(d for d in dims if d < full), full}):
        q = F.normalize(queries[:, :dim], dim=-1)
        d = F.normalize(documents[:, :dim], dim=-1)
        terms[dim] = info_nce(q, d, mask, temperature)
    weights = weights or {}
    total = torch.stack([weights.get(dim, 1.0) * term for dim, term in terms.items()]).sum()
    return total, terms


def false_negative_mask(positives: Sequence[frozenset[str]], documents: Sequence[str]
                        ) -> torch.Tensor:
    """[B, N] True where document j (not i's own, j != i) is one of query i's positives."""
    mask = torch.zeros(len(positives), len(documents), dtype=torch.bool)
    for i, texts in enumerate(positives):
        for j, doc in enumerate(documents):
            mask[i, j] = j != i and doc in texts
    return mask


def maxsim(queries: torch.Tensor, query_mask: torch.Tensor, documents: torch.Tensor,
           document_mask: torch.Tensor) -> torch.Tensor:
    """Late-interaction scores [B, N]: for each query token its best document token's dot
    product, summed over the query's tokens (ColBERT's MaxSim).

    queries [B, Lq, P], documents [N, Ld, P]: L2-normalised token vectors; masks [B, Lq],
    [N, Ld] true on real tokens."""
    dots = torch.einsum("bqp,ndp->bnqd", queries, documents)  # [B, N, Lq, Ld]
    dots = dots.masked_fill(~document_mask.bool()[None, :, None, :], float("-inf"))
    best = dots.max(dim=-1).values  # [B, N, Lq]
    return (best * query_mask.to(best.dtype)[:, None, :]).sum(-1)


def late_interaction_info_nce(queries: torch.Tensor, query_mask: torch.Tensor,
                              documents: torch.Tensor, document_mask: torch.Tensor,
                              mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE on MaxSim divided by the query's token count (a mean in [-1, 1], so the
    temperature means what it means for cosine); arguments as `maxsim` and `info_nce`."""
    scores = maxsim(queries, query_mask, documents, document_mask)
    return info_nce_logits(scores / query_mask.sum(-1, keepdim=True), mask, temperature)
