"""Embedder training on a tiny random BERT: loss, Matryoshka terms, resume, LoRA serving."""

import httpx
import numpy as np
import pytest
from safetensors.torch import load_file

from polyseek import load_model
from polyseek.train.embedder import EmbedderSettings, train_embedder

from support import serve_subprocess


def settings(data, output, model, **overrides) -> EmbedderSettings:
    base = dict(model=str(model), batch_size=8, max_length=32, heldout=0.25,
                learning_rate=1e-3, seed=1)
    return EmbedderSettings(str(data), output, **{**base, **overrides})


def test_full_fine_tuning_lowers_the_loss_with_a_matryoshka_term_per_dim(
        tmp_path, pairs_file, tiny_encoder):
    report = train_embedder(settings(pairs_file, tmp_path / "out", tiny_encoder, epochs=6,
                                     matryoshka_dims=(8, 16), train_embeddings=True))
    losses = report["losses"]
    assert report["steps"] == len(losses) == 24
    assert all({"loss@8", "loss@16", "loss@32"} <= set(row) for row in losses)
    for row in losses:  # the loss is the sum of its terms
        assert row["loss"] == pytest.approx(row["loss@8"] + row["loss@16"] + row["loss@32"],
                                            rel=1e-4)
    assert np.mean([r["loss"] for r in losses[-4:]]) < 0.7 * np.mean(
        [r["loss"] for r in losses[:4]])
    scores = report["ndcg@10"]
    assert set(scores["before"]) == set(scores["after"]) == {"8", "16", "full"}
    assert scores["after"]["full"] > scores["before"]["full"]
    tuned = load_model(str(tmp_path / "out"))
    assert tuned.capabilities.matryoshka_dims == (8, 16, 32)
    assert (tmp_path / "out" / "heldout" / "qrels" / "test.tsv").exists()
    assert not (tmp_path / "out" / "checkpoint.pt").exists()  # finished: no checkpoint left


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, pairs_file,
                                                             tiny_encoder):
    whole = train_embedder(settings(pairs_file, tmp_path / "whole", tiny_encoder, epochs=2,
                                    mine_negatives=2, checkpoint_every=2))

    def interrupt(step: int) -> None:
        if step == 5:
            raise KeyboardInterrupt

    cut = settings(pairs_file, tmp_path / "cut", tiny_encoder, epochs=2, mine_negatives=2,
                   checkpoint_every=2, on_step=interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_embedder(cut)
    assert (tmp_path / "cut" / "checkpoint.pt").exists()
    with pytest.raises(Exception, match="--resume"):  # never silently restarted
        train_embedder(settings(pairs_file, tmp_path / "cut", tiny_encoder, epochs=2,
                                mine_negatives=2, checkpoint_every=2))
    resumed = train_embedder(settings(pairs_file, tmp_path / "cut", tiny_encoder, epochs=2,
                                      mine_negatives=2, checkpoint_every=2, resume=True))
    assert [r["loss"] for r in resumed["losses"]] == [r["loss"] for r in whole["losses"]]
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "model.safetensors")
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert resumed["ndcg@10"] == whole["ndcg@10"]


def test_a_lora_task_is_served_by_polyseek_serve(tmp_path, pairs_file, tiny_encoder):
    out = tmp_path / "lora"
    report = train_embedder(settings(pairs_file, out, tiny_encoder, lora=True, task="facts",
                                     prompt="query: ", epochs=2))
    assert report["adapter_mb"] < 1
    assert (out / "adapters" / "facts" / "adapter_model.safetensors").exists()
    model = load_model(str(out))
    assert model.capabilities.tasks == ("facts",)
    text = "what does a kettle do"
    plain, tuned = model.encode([text])[0], model.encode([text], task="facts")[0]
    assert not np.allclose(plain, tuned, atol=1e-4)  # the adapter changes the vectors
    base = load_model(str(tiny_encoder))
    np.testing.assert_allclose(plain, base.encode([text])[0], atol=1e-5)  # base untouched
    with serve_subprocess("--model", f"tuned={out}") as url:
        listed = httpx.get(f"{url}/v1/models").json()["data"]
        assert next(m for m in listed if m["id"] == "tuned")["capabilities"]["tasks"] == [
            "facts"]
        body = httpx.post(f"{url}/v1/embeddings", json={
            "model": "tuned", "input": [text], "task": "facts"}).json()
        np.testing.assert_allclose(body["data"][0]["embedding"], tuned, atol=1e-4)
        wrong = httpx.post(f"{url}/v1/embeddings", json={
            "model": "tuned", "input": [text], "task": "fact"})
        assert wrong.status_code == 422 and "facts" in wrong.text
