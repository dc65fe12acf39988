"""jina-embeddings-v2 parity: module tree vs the released manifest, tiny model vs reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from polyseek.errors import InputTooLarge, InvalidInput
from polyseek.models.base import Embedder
from polyseek.models.checkpoint import load_strict
from polyseek.models.families import family_named, family_of, jina_bert_key
from polyseek.models.jina_v2 import (
    JinaBertModel,
    JinaEmbeddingsV2,
    alibi_bias,
    alibi_slopes,
    build_jina_v2,
    mean_pool,
)

from support import FIXTURES, maxdiff, serve_in_thread

V2 = FIXTURES / "jina-embeddings-v2"
FIXTURE_DIR = V2  # read by the conftest fixtures
pytestmark = pytest.mark.skipif(not V2.is_dir(), reason=f"jina-embeddings-v2 fixtures missing "
                                                        f"at {V2}")
ATOL = 1e-4  # README: a float64 re-run differs by < 1.4e-6; recommended atol 1e-4
ATOL_UNIT = 1e-5  # on normalised embeddings
SERVED_MAX_TOKENS = 64  # the tiny checkpoint's context: longer than its 32 positions (ALiBi)


def tiny_config() -> dict:
    return json.loads((V2 / "tiny_config.json").read_text())






@pytest.fixture(scope="module")
def tiny() -> JinaBertModel:
    model = build_jina_v2(tiny_config())
    load_strict(model, load_file(V2 / "tiny_weights.safetensors"))
    return model.eval()


@pytest.fixture(scope="module")
def output(tiny, golden):
    with torch.inference_mode():
        return tiny(golden["input_ids"], golden["attention_mask"], golden["token_type_ids"],
                    output_hidden_states=True)


# --- module tree vs the released checkpoint ---------------------------------------------------


def test_family_is_recognised_from_config_fields(manifest):
    real = manifest["config"]
    assert real["model_type"] == "bert" and real["architectures"] == ["JinaBertForMaskedLM"]
    assert family_of(real).name == family_of(tiny_config()).name == "jina-embeddings-v2"
    assert family_of({"model_type": "bert", "position_embedding_type": "absolute"}).name == (
        "hf-encoder")


def test_meta_build_matches_the_manifest(manifest):
    with torch.device("meta"):
        module = build_jina_v2(manifest["config"])
    shapes = {k: list(v.shape) for k, v in module.state_dict().items()}
    assert shapes == {p["key"]: p["shape"] for p in manifest["keys"]}
    assert len(shapes) == manifest["num_keys"] == 186
    assert sum(p.numel() for p in module.parameters()) == manifest["total_numel"] == 137_368_320
    assert all(p.device.type == "meta" for p in module.parameters())


def test_alibi_slopes_and_bias(manifest, golden, golden_json):
    real = manifest["derived"]["alibi_slopes_12_heads (bias[h,i,j] = -slope[h]*|i-j|)"]
    np.testing.assert_allclose(alibi_slopes(12), real, rtol=1e-6)
    assert alibi_slopes(4) == golden_json["alibi_slopes"]
    bias = alibi_bias(4, golden_json["seq_len"])  # 53 > the 32 positions of the tiny config
    assert torch.equal(bias, golden["debug.alibi_bias_first_layer"])


# --- loading ----------------------------------------------------------------------------------


def test_tiny_weights_load_strictly(tiny):
    weights = load_file(V2 / "tiny_weights.safetensors")
    assert set(tiny.state_dict()) == set(weights)
    assert all(torch.equal(tiny.state_dict()[k], v) for k, v in weights.items())
    with pytest.raises(ValueError, match="missing"):
        load_strict(build_jina_v2(tiny_config()),
                    {k: v for k, v in weights.items() if "mlp.wo" not in k})
    with pytest.raises(ValueError, match="shapes"):
        load_strict(build_jina_v2({**tiny_config(), "intermediate_size": 64}), weights)


def test_bert_prefix_and_missing_pooler_are_accepted(tmp_path, golden):
    weights = load_file(V2 / "tiny_weights.safetensors")
    masked_lm = {f"bert.{k}": v for k, v in weights.items() if not k.startswith("pooler.")}
    masked_lm["cls.predictions.bias"] = torch.zeros(262)
    mapped = {jina_bert_key(k) for k in masked_lm} - {None}
    assert mapped == set(weights) - {"pooler.dense.weight", "pooler.dense.bias"}
    (tmp_path / "config.json").write_text(json.dumps(tiny_config()))
    save_file(masked_lm, tmp_path / "model.safetensors")
    model = family_named("jina-embeddings-v2").load_module(tmp_path)
    assert model.pooler is None
    with torch.inference_mode():
        out = model(golden["input_ids"], golden["attention_mask"])
    assert out.pooler_output is None
    assert maxdiff(mean_pool(out.last_hidden_state, golden["attention_mask"]),
                   golden["mean_pooled"]) < ATOL


# --- reference outputs ------------------------------------------------------------------------


def test_hidden_states_at_every_stage(output, golden):
    real = golden["attention_mask"].bool()  # pad rows are implementation detail
    assert len(output.hidden_states) == golden["hidden_states"].shape[0] == 3
    for stage, (ours, ref) in enumerate(zip(output.hidden_states, golden["hidden_states"],
                                            strict=True)):
        assert maxdiff(ours[real], ref[real]) < ATOL, f"stage {stage}"
    assert maxdiff(output.last_hidden_state[real], golden["last_hidden_state"][real]) < ATOL


def test_pooled_outputs(output, golden):
    assert maxdiff(output.pooler_output, golden["pooler_output"]) < ATOL
    pooled = mean_pool(output.last_hidden_state, golden["attention_mask"])
    assert maxdiff(pooled, golden["mean_pooled"]) < ATOL
    assert maxdiff(pooled, golden["embedding_unnormalized"]) < ATOL
    assert maxdiff(F.normalize(pooled, dim=-1), golden["embedding_normalized"]) < ATOL_UNIT


def test_long_row_alone_equals_its_batch_row(tiny, golden, output):
    length = int(golden["attention_mask"][1].sum())
    assert length == 53  # longer than max_position_embeddings (32): ALiBi extrapolation
    with torch.inference_mode():
        alone = tiny(golden["input_ids"][1:2, :length]).last_hidden_state[0]
    assert maxdiff(alone, output.last_hidden_state[1, :length]) < 1e-5
    assert maxdiff(alone, golden["last_hidden_state"][1, :length]) < ATOL


# --- the Embedder, end to end from a checkpoint directory --------------------------------------


def byte_to_char() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (what ByteLevel pre-tokenises to)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = iter(range(256, 512))
    return {b: chr(b if b in printable else next(extra)) for b in range(256)}


def write_toy_tokenizer(directory: Path) -> None:
    """The fixtures' toy tokenizer as a `tokenizers` file: [CLS]=2, byte b -> 5 + b, [SEP]=3."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    specials = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    vocab = {**specials, **{char: 5 + b for b, char in byte_to_char().items()}}
    tokenizer = Tokenizer(models.BPE(vocab, [], unk_token="[UNK]"))  # no merges: one per byte
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer.add_special_tokens(list(specials))
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "[PAD]", "unk_token": "[UNK]",
        "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]",
        "model_max_length": 8192,
    }))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """The tiny model laid out as a released checkpoint directory."""
    directory = tmp_path_factory.mktemp("jina-v2")
    (directory / "config.json").write_text((V2 / "tiny_config.json").read_text())
    save_file(load_file(V2 / "tiny_weights.safetensors"), directory / "model.safetensors")
    (directory / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": SERVED_MAX_TOKENS}))
    write_toy_tokenizer(directory)
    return directory


@pytest.fixture(scope="module")
def embedder(checkpoint) -> JinaEmbeddingsV2:
    return JinaEmbeddingsV2.from_pretrained(checkpoint, name="v2-tiny")


def test_capabilities(embedder):
    caps = embedder.capabilities
    assert isinstance(embedder, Embedder)
    assert (caps.kind, caps.family, caps.modalities, caps.tasks) == (
        "embedding", "jina-embeddings-v2", ("text",), ())
    assert (caps.dim, caps.min_dim, caps.max_tokens) == (64, 32, SERVED_MAX_TOKENS)
    assert (caps.multivector, caps.reranker, caps.pooling) == (False, "bi-encoder", "mean")


def test_encode_matches_golden(embedder, golden, golden_json):
    texts = golden_json["texts"]
    jobs = embedder.prepare(texts)
    for job, ids, mask in zip(jobs, golden["input_ids"], golden["attention_mask"], strict=True):
        assert job.ids == ids[mask.bool()].tolist()  # the toy tokenizer of the reference
    raw = embedder.encode(texts, normalize=False)
    assert maxdiff(raw, golden["embedding_unnormalized"]) < ATOL
    assert maxdiff(embedder.encode(texts), golden["embedding_normalized"]) < ATOL_UNIT
    one_by_one = np.concatenate([embedder.encode([t], normalize=False) for t in texts])
    assert maxdiff(one_by_one, golden["embedding_unnormalized"]) < ATOL


def test_invalid_requests(embedder):
    with pytest.raises(InvalidInput, match="no tasks"):
        embedder.prepare(["x"], task="retrieval.query")
    with pytest.raises(InvalidInput, match="dimensions"):
        embedder.encode(["x"], truncate_dim=16)
    with pytest.raises(InvalidInput, match="multi-vector"):
        embedder.prepare(["x"], multivector=True)
    with pytest.raises(InputTooLarge, match="64-token context"):
        embedder.prepare(["y" * 100], truncate=False)


def test_late_chunking_pools_spans_of_one_window(embedder):
    texts = ["short text", "mid length one", "x" * 20]
    (job,) = embedder.prepare(texts, late_chunking=True, truncate=False)
    assert job.ids[0] == 2 and job.ids[-1] == 3 and job.spans == [(1, 11), (11, 25), (25, 45)]
    vectors = embedder.encode(texts, late_chunking=True)
    assert vectors.shape == (3, 64)
    assert not np.allclose(vectors, embedder.encode(texts), atol=1e-3)  # context-aware
    with pytest.raises(InputTooLarge, match="late chunking"):
        embedder.prepare(texts * 2, late_chunking=True, truncate=False)


def test_served_over_v1_embeddings(checkpoint, embedder):
    """Truncation, late chunking, and refused task / dimensions through the HTTP route."""
    import httpx

    from polyseek.api.app import ServerSettings, create_app
    from polyseek.runtime.registry import ModelSpec

    settings = ServerSettings(models=[ModelSpec("v2-tiny", str(checkpoint))])
    with serve_in_thread(create_app(settings)) as url:
        def embed(**body):
            return httpx.post(f"{url}/v1/embeddings", json={"model": "v2-tiny", **body},
                              timeout=60)

        long_text = "This sentence is deliberately longer than 32 bytes. " * 4  # 210 tokens
        assert embed(input=long_text).status_code == 413
        cut = embed(input=[long_text, "short text"], truncate=True)
        assert cut.status_code == 200, cut.text
        got = np.array([d["embedding"] for d in cut.json()["data"]])
        head = long_text[: SERVED_MAX_TOKENS - 2]  # one token per byte, plus [CLS] and [SEP]
        np.testing.assert_allclose(got, embedder.encode([head, "short text"]), atol=1e-5)
        assert cut.json()["usage"]["total_tokens"] == SERVED_MAX_TOKENS + 12

        texts = ["short text", "mid length one", "x" * 20]
        chunked = embed(input=texts, late_chunking=True)
        assert chunked.status_code == 200, chunked.text
        got = np.array([d["embedding"] for d in chunked.json()["data"]])
        assert [d["index"] for d in chunked.json()["data"]] == [0, 1, 2]
        np.testing.assert_allclose(got, embedder.encode(texts, late_chunking=True), atol=1e-5)

        assert len(embed(input="short text", dimensions=32).json()["data"][0]["embedding"]) == 32
        assert embed(input="short text", task="retrieval.query").status_code == 422
        assert embed(input="short text", dimensions=16).status_code == 422
