"""Reranker training on a tiny random cross-encoder: loss, distillation, serving."""

import httpx
import numpy as np

from polyseek import load_model
from polyseek.train.reranker import RerankerSettings, train_reranker

from support import serve_subprocess, write_tiny_cross_encoder


def settings(data, output, model, retriever, **overrides) -> RerankerSettings:
    base = dict(model=str(model), retriever=str(retriever), batch_size=8, max_length=48,
                heldout=0.25, learning_rate=1e-3, depth=10, seed=2)
    return RerankerSettings(str(data), output, **{**base, **overrides})


def test_a_trained_reranker_is_served_by_v1_rerank(tmp_path, pairs_file, tiny_encoder):
    start = write_tiny_cross_encoder(tmp_path / "start")
    out = tmp_path / "reranker"
    report = train_reranker(settings(pairs_file, out, start, tiny_encoder, max_steps=24,
                                     mine_negatives=1))
    losses = [row["loss"] for row in report["losses"]]
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    assert set(report["ndcg@10"]) == {"retrieval", "before", "after"}
    model = load_model(str(out))
    assert model.capabilities.reranker == "cross-encoder"
    query, docs = "what does a kettle do", ["A kettle boils water for tea on the stove.",
                                            "A tractor pulls ploughs and trailers on farms."]
    expected = model.score(query, docs)
    with serve_subprocess("--model", f"tuned={out}") as url:
        body = httpx.post(f"{url}/v1/rerank", json={
            "model": "tuned", "query": query, "documents": docs}).json()
    scores = {r["index"]: r["relevance_score"] for r in body["results"]}
    np.testing.assert_allclose([scores[0], scores[1]], expected, atol=1e-5)


def test_an_encoder_gets_a_head_and_learns_from_a_teacher(tmp_path, pairs_file, tiny_encoder):
    teacher = write_tiny_cross_encoder(tmp_path / "teacher", hidden_size=48)
    report = train_reranker(settings(pairs_file, tmp_path / "student", tiny_encoder,
                                     tiny_encoder, distill_from=str(teacher), max_steps=4))
    assert report["steps"] == 4 and report["distill_from"] == str(teacher)
    assert load_model(str(tmp_path / "student")).capabilities.family == "cross-encoder"
