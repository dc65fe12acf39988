"""Held-out scores as `polyseek eval` computes them (ranx nDCG@10 over exact dense search),
for an embedder at several Matryoshka dims (and exact MaxSim with its multi-vector output), and
for a reranker on top of retrieval. Queries and documents may be image items
(`data.ImageItem`): they are decoded a batch at a time and embedded by the model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from polyseek.eval.data import Dataset
from polyseek.eval.metrics import scores
from polyseek.models.base import Embedder, Reranker, truncate_and_normalize
from polyseek.train.data import Item, model_inputs

TOP_K = 100
METRIC = "ndcg@10"


def embed(model: Embedder, items: Sequence[Item], task: str | None,
          batch_size: int = 32) -> np.ndarray:
    """Raw pooled vectors [N, D] (not normalised: truncation re-normalises per dim)."""
    items = list(items)
    if not items:
        return model.encode([], task=task, normalize=False)
    return np.concatenate([
        model.encode(model_inputs(items[i:i + batch_size]), task=task, normalize=False,
                     batch_size=batch_size)
        for i in range(0, len(items), batch_size)])


def embed_tokens(model: Embedder, items: Sequence[Item], task: str | None,
                 batch_size: int = 32) -> list[np.ndarray]:
    """Multi-vector output: one [T_i, P] array of L2-normalised token vectors per item."""
    items = list(items)
    return [tokens for i in range(0, len(items), batch_size)
            for tokens in model.encode(model_inputs(items[i:i + batch_size]), task=task,
                                       multivector=True, batch_size=batch_size)]


def rankings(query_vectors: np.ndarray, doc_vectors: np.ndarray, query_ids: Sequence[str],
             doc_ids: Sequence[str], dim: int | None = None,
             top_k: int = TOP_K) -> dict[str, list[str]]:
    """Exact cosine search of each query over the documents at `dim` (None: full)."""
    q = truncate_and_normalize(query_vectors, dim, True)
    d = truncate_and_normalize(doc_vectors, dim, True)
    similarity = q @ d.T
    k = min(top_k, len(doc_ids))
    best = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return {qid: [doc_ids[j] for j in row] for qid, row in zip(query_ids, best, strict=True)}


def dense_curve(model: Embedder, dataset: Dataset, query_task: str | None,
                doc_task: str | None, dims: Sequence[int],
                doc_vectors: np.ndarray | None = None) -> dict[str, float]:
    """nDCG@10 on `dataset` at each dim of `dims` below the model's size and at full size
    ("full" and str(dim) keys)."""
    full = model.capabilities.dim
    qids, dids = list(dataset.queries), list(dataset.corpus)
    queries = embed(model, [dataset.queries[q] for q in qids], query_task)
    if doc_vectors is None:
        doc_vectors = embed(model, [dataset.corpus[d] for d in dids], doc_task)
    curve = {}
    for dim in sorted({d for d in dims if d < full}) + [full]:
        ranked = rankings(queries, doc_vectors, qids, dids, dim)
        curve["full" if dim == full else str(dim)] = scores(dataset.qrels, ranked)[METRIC]
    return curve


def rerank_scores(reranker: Reranker, dataset: Dataset, candidates: dict[str, list[str]],
                  depth: int) -> dict[str, float]:
    """nDCG@10 of the retrieval `candidates` and of the top `depth` reranked."""
    reranked = {}
    for qid, docs in candidates.items():
        head = docs[:depth]
        relevance = reranker.score(dataset.queries[qid], [dataset.corpus[d] for d in head])
        order = np.argsort(-np.asarray(relevance), kind="stable")
        reranked[qid] = [head[i] for i in order] + docs[depth:]
    return {"retrieval": scores(dataset.qrels, candidates)[METRIC],
            "reranked": scores(dataset.qrels, reranked)[METRIC]}


def maxsim_rankings(query_tokens: Sequence[np.ndarray], doc_tokens: Sequence[np.ndarray],
                    query_ids: Sequence[str], doc_ids: Sequence[str],
                    top_k: int = TOP_K) -> dict[str, list[str]]:
    """Exact late-interaction search: each query's documents by MaxSim (per query token its
    best document token's dot product, summed). Token vectors [T_i, P], L2-normalised."""
    stacked = np.concatenate(doc_tokens)  # [sum T_d, P]
    starts = np.cumsum([0] + [len(d) for d in doc_tokens[:-1]])  # first row of each document
    k = min(top_k, len(doc_ids))
    ranked = {}
    for qid, tokens in zip(query_ids, query_tokens, strict=True):
        dots = tokens @ stacked.T  # [T_q, sum T_d]
        scores = np.maximum.reduceat(dots, starts, axis=1).sum(0)  # [documents]
        best = np.argsort(-scores, kind="stable")[:k]
        ranked[qid] = [doc_ids[j] for j in best]
    return ranked


def maxsim_ndcg(model: Embedder, dataset: Dataset, query_task: str | None,
                doc_task: str | None, batch_size: int = 32) -> float:
    """nDCG@10 on `dataset` of exact MaxSim search with the model's multi-vector output."""
    qids, dids = list(dataset.queries), list(dataset.corpus)
    queries = embed_tokens(model, [dataset.queries[q] for q in qids], query_task, batch_size)
    docs = embed_tokens(model, [dataset.corpus[d] for d in dids], doc_task, batch_size)
    return scores(dataset.qrels, maxsim_rankings(queries, docs, qids, dids))[METRIC]
