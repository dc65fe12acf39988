"""A new jina-embeddings-v4 task adapter trained on the tiny random v4: both heads, the
released layout, other tasks untouched, served by the real server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from polyseek import load_model
from polyseek.train.data import TrainDataError
from polyseek.train.embedder import EmbedderSettings, train_embedder
from polyseek.train.evaluate import maxsim_rankings
from polyseek.train.losses import maxsim

from support import FIXTURES, serve_checkpoint

pytestmark = pytest.mark.skipif(not (FIXTURES / "jina-embeddings-v4").is_dir(),
                                reason="jina-embeddings-v4 fixtures missing")
BASE_TASKS = ("retrieval.query", "retrieval.passage", "code.query", "code.passage",
              "text-matching")
TEXTS = ["what does a kettle do", "A kettle boils water for tea on the stove."]


def settings(data: Path, output: Path, model: Path, **overrides) -> EmbedderSettings:
    base = dict(model=str(model), lora=True, task="facts", batch_size=8, max_length=32,
                heldout=0.25, learning_rate=2e-3, epochs=4, seed=1)
    return EmbedderSettings(str(data), output, **{**base, **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, pairs_file, tiny_jina_v4) -> tuple[dict, Path]:
    output = tmp_path_factory.mktemp("trained") / "out"
    return train_embedder(settings(pairs_file, output, tiny_jina_v4)), output


def test_both_heads_train_and_the_report_has_both_scores(trained):
    report, _ = trained
    losses = report["losses"]
    assert report["steps"] == len(losses) == 16
    assert all({"loss@multi", "loss@128"} <= set(row) for row in losses)
    for key in ("loss", "loss@multi"):
        first, last = (np.mean([r[key] for r in part]) for part in (losses[:4], losses[-4:]))
        assert last < first, key
    assert set(report["ndcg@10"]["before"]) == {"8", "16", "32", "64", "full"}
    multi = report["maxsim_ndcg@10"]
    assert set(multi) == {"before", "after"} and all(0 <= v <= 1 for v in multi.values())
    assert 0 < report["adapter_mb"] < 1


def test_the_output_is_the_released_layout_with_the_new_task(trained, tiny_jina_v4):
    _, out = trained
    config = json.loads((out / "config.json").read_text())
    assert config["task_names"] == ["retrieval", "text-matching", "code", "facts"]
    base_adapters = load_file(tiny_jina_v4 / "adapters" / "adapter_model.safetensors")
    adapters = load_file(out / "adapters" / "adapter_model.safetensors")
    new = {k for k in adapters if ".facts." in k}
    assert set(adapters) == set(base_adapters) | new
    assert len(new) == 2 * (2 * 7 + 1)  # A and B of 2 layers x 7 projections + the projector
    assert all(np.array_equal(adapters[k], base_adapters[k]) for k in base_adapters)
    base = load_file(tiny_jina_v4 / "model.safetensors")
    assert (out / "model.safetensors").stat().st_ino == (tiny_jina_v4 / "model.safetensors").stat(
    ).st_ino or all(np.array_equal(load_file(out / "model.safetensors")[k], base[k])
                    for k in base)
    for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        assert (out / name).read_bytes() == (tiny_jina_v4 / name).read_bytes()


def test_the_new_task_changes_both_outputs_and_the_others_stay(trained, tiny_jina_v4):
    _, out = trained
    tuned, base = load_model(str(out)), load_model(str(tiny_jina_v4))
    caps = tuned.capabilities
    assert caps.tasks == (*BASE_TASKS, "facts", "facts.query", "facts.passage")
    assert caps.multivector
    for task in BASE_TASKS:  # every released task: bit for bit the same vectors
        np.testing.assert_array_equal(tuned.encode(TEXTS, task=task),
                                      base.encode(TEXTS, task=task))
        for a, b in zip(tuned.encode(TEXTS, task=task, multivector=True),
                        base.encode(TEXTS, task=task, multivector=True), strict=True):
            np.testing.assert_array_equal(a, b)
    # the new task starts as a copy of retrieval: training moved it away
    single = tuned.encode(TEXTS, task="facts.query")
    assert not np.allclose(single, base.encode(TEXTS, task="retrieval.query"), atol=1e-4)
    multi = tuned.encode(TEXTS, task="facts.query", multivector=True)
    reference = base.encode(TEXTS, task="retrieval.query", multivector=True)
    assert [m.shape for m in multi] == [r.shape for r in reference]
    assert not all(np.allclose(m, r, atol=1e-4) for m, r in zip(multi, reference, strict=True))
    # "facts" is the query side ("Query: "), "facts.passage" the document side ("Passage: ")
    np.testing.assert_array_equal(tuned.encode(TEXTS, task="facts"), single)
    assert not np.allclose(tuned.encode(TEXTS, task="facts.passage"), single, atol=1e-4)


def test_the_trained_directory_is_served(trained):
    _, out = trained
    tuned = load_model(str(out))
    with serve_checkpoint("tuned", out) as url:
        listed = httpx.get(f"{url}/v1/models").json()["data"]
        tasks = next(m for m in listed if m["id"] == "tuned")["capabilities"]["tasks"]
        assert "facts" in tasks and "facts.passage" in tasks
        body = httpx.post(f"{url}/v1/embeddings", json={
            "model": "tuned", "input": TEXTS, "task": "facts"}).json()
        vectors = np.array([row["embedding"] for row in body["data"]])
        np.testing.assert_allclose(vectors, tuned.encode(TEXTS, task="facts"), atol=1e-5)
        body = httpx.post(f"{url}/v1/embeddings", json={
            "model": "tuned", "input": TEXTS, "task": "facts", "return_multivector": True})
        assert body.status_code == 200, body.text
        served = [np.array(row["embeddings"]) for row in body.json()["data"]]
        for a, b in zip(served, tuned.encode(TEXTS, task="facts", multivector=True),
                        strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_bad_requests_are_refused(tmp_path, tiny_jina_v4, pairs_file):
    with pytest.raises(TrainDataError, match="already a task"):
        train_embedder(settings(pairs_file, tmp_path / "a", tiny_jina_v4, task="retrieval"))
    with pytest.raises(TrainDataError, match="already a task"):
        train_embedder(settings(pairs_file, tmp_path / "b", tiny_jina_v4, task="code"))
    with pytest.raises(TrainDataError, match="add --lora --task NAME"):
        train_embedder(settings(pairs_file, tmp_path / "c", tiny_jina_v4, lora=False, task=None))
    with pytest.raises(TrainDataError, match="name is letters"):
        train_embedder(settings(pairs_file, tmp_path / "d", tiny_jina_v4, task="facts.query"))
    with pytest.raises(TrainDataError, match="rank of the model's adapters"):
        train_embedder(settings(pairs_file, tmp_path / "e", tiny_jina_v4, lora_rank=16))


def test_exact_maxsim_search_ranks_as_the_loss_scores():
    generator = torch.Generator().manual_seed(0)
    queries = [F.normalize(torch.randn(n, 4, generator=generator), dim=-1) for n in (3, 5)]
    docs = [F.normalize(torch.randn(n, 4, generator=generator), dim=-1) for n in (2, 6, 1, 4)]
    width = max(len(d) for d in docs)
    padded = torch.stack([F.pad(d, (0, 0, 0, width - len(d))) for d in docs])  # [4, 6, 4]
    mask = torch.tensor([[i < len(d) for i in range(width)] for d in docs])
    ids = ["a", "b", "c", "d"]
    ranked = maxsim_rankings([q.numpy() for q in queries], [d.numpy() for d in docs],
                             ["q0", "q1"], ids)
    for qid, q in zip(("q0", "q1"), queries, strict=True):
        scores = maxsim(q[None], torch.ones(1, len(q)), padded, mask)[0]  # [4]
        assert ranked[qid] == [ids[j] for j in torch.argsort(-scores).tolist()]
