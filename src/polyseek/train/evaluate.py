"""Held-out scores as `polyseek eval` computes them (ranx nDCG@10 over exact dense search),
for an embedder at several Matryoshka dims, and for a reranker on top of retrieval."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from polyseek.eval.data import Dataset
from polyseek.eval.metrics import scores
from polyseek.models.base import Embedder, Reranker, truncate_and_normalize

TOP_K = 100
METRIC = "ndcg@10"


def embed(model: Embedder, texts: Sequence[str], task: str | None,
          batch_size: int = 32) -> np.ndarray:
    """Raw pooled vectors [N, D] (not normalised: truncation re-normalises per dim)."""
    return model.encode(list(texts), task=task, normalize=False, batch_size=batch_size)


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
