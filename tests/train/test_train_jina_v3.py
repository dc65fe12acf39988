"""`train embedder --lora --task NAME` on a tiny random jina-embeddings-v3: a sixth task row in
the released layout, the other tasks and the base bit-identical, served by the real server."""

import json

import httpx
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from polyseek import load_model
from polyseek.train.data import TrainDataError
from polyseek.train.embedder import EmbedderSettings, train_embedder

from support import serve_checkpoint, write_tiny_jina_clip_v2, write_tiny_jina_v3

TASKS = ("retrieval.query", "retrieval.passage", "separation", "classification", "text-matching")
TEXTS = ["what does a kettle do", "A compass points north using a magnetised needle."]


def settings(data, output, model, **overrides) -> EmbedderSettings:
    base = dict(model=str(model), lora=True, task="facts", batch_size=8, max_length=128,
                heldout=0.25, learning_rate=5e-2, epochs=6, seed=1, prompt="q: ")
    return EmbedderSettings(str(data), output, **{**base, **overrides})


@pytest.fixture(scope="module")
def tiny_v3(tmp_path_factory):
    return write_tiny_jina_v3(tmp_path_factory.mktemp("tiny-v3"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, pairs_file, tiny_v3):
    output = tmp_path_factory.mktemp("v3-facts")
    return output, train_embedder(settings(pairs_file, output, tiny_v3))


def test_the_loss_falls_and_the_report_names_the_task(trained):
    _, report = trained
    losses = [row["loss"] for row in report["losses"]]
    assert report["mode"] == "lora" and report["task"] == "facts"
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    assert set(report["losses"][0]) >= {"loss@8", "loss@16", "loss@32", "loss@64"}
    assert 0 < report["adapter_mb"] < 0.2


def test_the_output_is_a_v3_checkpoint_with_a_sixth_task(trained, tiny_v3):
    output, _ = trained
    config = json.loads((output / "config.json").read_text())
    assert config["lora_adaptations"] == [*TASKS, "facts"]
    assert config["task_instructions"]["facts"] == "q: "
    assert (output / "tokenizer.json").exists() and not (output / "checkpoint.pt").exists()
    model = load_model(str(output))
    caps = model.capabilities
    assert (caps.family, caps.tasks) == ("jina-embeddings-v3", (*TASKS, "facts"))
    assert caps.matryoshka_dims == (8, 16, 32, 64)


def test_only_the_new_rows_changed(trained, tiny_v3):
    output, _ = trained
    before = load_file(tiny_v3 / "model.safetensors")
    after = load_file(output / "model.safetensors")
    assert set(before) == set(after)
    for key, tensor in before.items():
        if ".lora_" in key:
            assert after[key].shape[0] == tensor.shape[0] + 1
            assert torch.equal(after[key][:-1], tensor), key
        else:
            assert torch.equal(after[key], tensor), key
    new_b = [after[k][-1] for k in after if k.endswith(".lora_B") and "pooler" not in k]
    assert all(b.abs().max() > 0 for b in new_b)  # trained off its zeros (not the unused pooler)


def test_the_new_task_changes_embeddings_and_the_old_ones_do_not(trained, tiny_v3):
    output, _ = trained
    base, tuned = load_model(str(tiny_v3)), load_model(str(output))
    for task in (*TASKS, None):
        np.testing.assert_array_equal(tuned.encode(TEXTS, task=task),
                                      base.encode(TEXTS, task=task))
    facts = tuned.encode(TEXTS, task="facts")
    for task in ("retrieval.query", None):
        assert not np.allclose(facts, base.encode(TEXTS, task=task), atol=1e-3)


def test_a_second_run_adds_a_seventh_task(tmp_path, trained, pairs_file):
    output, _ = trained
    report = train_embedder(settings(pairs_file, tmp_path / "more", output, task="other",
                                     prompt=None, max_steps=2))
    assert report["steps"] == 2
    model, first = load_model(str(tmp_path / "more")), load_model(str(output))
    assert model.capabilities.tasks == (*TASKS, "facts", "other")
    assert model.prompts["other"] == model.prompts["retrieval.query"]  # the default prompt
    np.testing.assert_array_equal(model.encode(TEXTS, task="facts"),
                                  first.encode(TEXTS, task="facts"))


def test_the_new_task_is_served(trained):
    output, _ = trained
    local = load_model(str(output))
    with serve_checkpoint("v3-facts", output) as url:
        listed = httpx.get(f"{url}/v1/models").json()["data"]
        caps = next(m for m in listed if m["id"] == "v3-facts")["capabilities"]
        assert caps["tasks"] == [*TASKS, "facts"] and caps["matryoshka_dims"] == [8, 16, 32, 64]
        response = httpx.post(f"{url}/v1/embeddings", timeout=60, json={
            "model": "v3-facts", "input": TEXTS, "task": "facts", "dimensions": 32})
        assert response.status_code == 200, response.text
        got = np.array([row["embedding"] for row in response.json()["data"]])
        np.testing.assert_allclose(got, local.encode(TEXTS, task="facts", truncate_dim=32),
                                   atol=1e-5)


def test_bad_requests_are_clear_errors(tmp_path, pairs_file, tiny_v3):
    with pytest.raises(TrainDataError, match="already exists"):
        train_embedder(settings(pairs_file, tmp_path / "a", tiny_v3, task="text-matching"))
    with pytest.raises(TrainDataError, match="--lora --task NAME"):
        train_embedder(settings(pairs_file, tmp_path / "b", tiny_v3, lora=False, task=None))
    with pytest.raises(TrainDataError, match="rank of the model's adapters"):
        train_embedder(settings(pairs_file, tmp_path / "r", tiny_v3, lora_rank=8))
    (tmp_path / "clip").mkdir()
    clip = write_tiny_jina_clip_v2(tmp_path / "clip")
    with pytest.raises(TrainDataError, match="jina-clip-v2 has no task adapters"):
        train_embedder(settings(pairs_file, tmp_path / "c", clip))  # clip trains in full only
