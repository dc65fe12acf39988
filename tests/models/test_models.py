"""Model loading: the bundled default, tiny random BERT / XLM-R checkpoints, prompts as tasks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from polyseek import build_module, load_model
from polyseek.api.app import ServerSettings, create_app
from polyseek.errors import InvalidInput
from polyseek.models import resolve_source
from polyseek.runtime.registry import ModelRegistry, ModelSpec

from support import MINILM_SOURCE, serve_in_thread

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                   "special_tokens_map.json")


def test_default_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    texts = ["Paris is the capital of France.", "short", "word " * 400]
    reference = SentenceTransformer(str(resolve_source(MINILM_SOURCE)), device="cpu")
    np.testing.assert_allclose(minilm.encode(texts), reference.encode(texts), atol=1e-5)


def test_build_module_on_meta_matches_the_checkpoint(minilm):
    config = json.loads((resolve_source(MINILM_SOURCE) / "config.json").read_text())
    with torch.device("meta"):
        module = build_module(config)
    built = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    loaded = {k: tuple(v.shape) for k, v in minilm.model.state_dict().items()}
    assert built == loaded
    assert all(p.device.type == "meta" for p in module.parameters())


def _tiny_checkpoint(directory: Path, model_type: str, pooling: str, **config) -> Path:
    """A tiny random encoder of the real architecture, with MiniLM's tokenizer files."""
    from transformers import AutoConfig, AutoModel

    cfg = AutoConfig.for_model(model_type, vocab_size=30522, hidden_size=32,
                               num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=64, **config)
    torch.manual_seed(0)
    AutoModel.from_config(cfg).save_pretrained(directory)
    source = resolve_source(MINILM_SOURCE)
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, directory / name)
    (directory / "1_Pooling").mkdir()
    (directory / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
    }))
    (directory / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
    ]))
    return directory


def test_cls_pooling_bert_checkpoint(tmp_path):
    model = load_model(str(_tiny_checkpoint(tmp_path, "bert", "cls")))
    assert model.capabilities.pooling == "cls" and model.capabilities.dim == 32
    texts = ["cls pooled", "another, longer input text"]
    got = model.encode(texts, normalize=False)
    for text, vector in zip(texts, got, strict=True):
        ids = model.tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            first = model.model(input_ids=ids).last_hidden_state[0, 0].numpy()
        np.testing.assert_allclose(vector, first, atol=1e-5)


def test_xlm_roberta_checkpoint_context_excludes_the_padding_offset(tmp_path):
    model = load_model(str(_tiny_checkpoint(tmp_path, "xlm-roberta", "mean",
                                            max_position_embeddings=66, pad_token_id=1)))
    assert model.capabilities.max_tokens == 64
    vectors = model.encode(["token " * 200, "short"])  # truncated to 64, must not overflow
    assert vectors.shape == (2, 32) and np.isfinite(vectors).all()


def _prompted_copy(directory: Path) -> Path:
    """The bundled MiniLM with named prompts, as sentence-transformers stores them."""
    shutil.copytree(resolve_source(MINILM_SOURCE), directory, dirs_exist_ok=True)
    (directory / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "query: ", "passage": "passage: "}})
    )
    return directory


def test_prompts_become_tasks(tmp_path):
    model = load_model(str(_prompted_copy(tmp_path)))
    assert model.capabilities.tasks == ("query", "passage")
    np.testing.assert_allclose(model.encode(["x"], task="query"), model.encode(["query: x"]),
                               atol=1e-6)
    with pytest.raises(InvalidInput, match="valid tasks: query, passage"):
        model.encode(["x"], task="retrieval.query")


def test_tasks_over_http_and_several_models(tmp_path):
    directory = _prompted_copy(tmp_path)
    specs = [ModelSpec("prompted", str(directory)), ModelSpec.parse("minilm=" + str(directory))]
    with serve_in_thread(create_app(ServerSettings(models=specs))) as url:
        listed = httpx.get(f"{url}/v1/models").json()["data"]
        assert [m["id"] for m in listed] == ["prompted", "minilm"]
        assert listed[0]["capabilities"]["tasks"] == ["query", "passage"]
        ok = httpx.post(f"{url}/v1/embeddings",
                        json={"model": "prompted", "input": "x", "task": "passage"})
        assert ok.status_code == 200
        bad = httpx.post(f"{url}/v1/embeddings",
                         json={"model": "prompted", "input": "x", "task": "nope"})
        assert bad.status_code == 422
        assert "valid tasks: query, passage" in bad.json()["detail"][0]["msg"]


def test_model_spec_parsing():
    assert ModelSpec.parse("name=/some/dir") == ModelSpec("name", "/some/dir")
    assert ModelSpec.parse("/models/e5-small/") == ModelSpec("e5-small", "/models/e5-small/")
    with pytest.raises(ValueError, match="NAME=SOURCE"):
        ModelSpec.parse("name=")


def test_duplicate_model_names_are_refused():
    with pytest.raises(ValueError, match="unique"):
        ModelRegistry([ModelSpec("a", "x"), ModelSpec("a", "y")])


def test_unusable_sources_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_model(str(tmp_path / "missing"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="unsupported model family"):
        load_model(str(tmp_path))


@pytest.mark.parametrize("model_type", ["bert", "xlm-roberta"])
def test_packed_forward_equals_the_padded_transformers_forward(tmp_path, model_type):
    extra = {"pad_token_id": 1} if model_type == "xlm-roberta" else {}
    model = load_model(str(_tiny_checkpoint(tmp_path, model_type, "mean", **extra)))
    assert model.packed
    jobs = model.prepare(["a", "a much longer input with many more tokens in it", "mid"])
    packed = model.hidden_states(jobs)
    model.packed = False
    padded = model.hidden_states(jobs)
    for p, q, job in zip(packed, padded, jobs, strict=True):
        assert p.shape == (job.n_tokens, 32)
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-5)
