"""jina-vlm parity: module tree vs the released manifest, tiny model vs reference outputs."""

from __future__ import annotations

import json
import lzma

import pytest
import torch
from safetensors.torch import load, load_file

from polyseek import build_module
from polyseek.models.jina_vlm import (
    JinaVLMConfig,
    JinaVLMForConditionalGeneration,
    MultimodalInputs,
)
from polyseek.models.sampling import SamplingParams

from support import FIXTURES

VLM = FIXTURES / "jina-vlm"
pytestmark = pytest.mark.skipif(not VLM.is_dir(), reason=f"jina-vlm fixtures missing at {VLM}")
ATOL = 1e-4


def forward_fixture(name: str) -> dict[str, torch.Tensor]:
    return load(lzma.open(VLM / f"forward_{name}.safetensors.xz").read())


def inputs_of(t: dict[str, torch.Tensor]) -> MultimodalInputs:
    return MultimodalInputs(t["input_ids"], t.get("images"), t.get("image_masks"),
                            t.get("image_input_idx"))


@pytest.fixture(scope="module")
def tiny() -> JinaVLMForConditionalGeneration:
    config = JinaVLMConfig.from_dict(json.loads((VLM / "tiny_config.json").read_text()))
    model = JinaVLMForConditionalGeneration(config).eval()
    model.load_state_dict(load_file(VLM / "tiny_weights.safetensors"), strict=True)
    return model


def test_real_config_builds_the_released_state_dict_on_meta():
    manifest = json.loads((VLM / "manifest_real.json").read_text())
    with torch.device("meta"):
        module = build_module(manifest["config"])
    state = module.state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == {
        p["key"]: p["shape"] for p in manifest["keys"]
    }
    assert sum(v.numel() for v in state.values()) == manifest["total_parameters"]
    assert all(p.device.type == "meta" for p in module.parameters())


def test_tying_follows_the_text_config_then_the_top_level_flag():
    config = json.loads((VLM / "tiny_config.json").read_text())
    del config["text_config"]["tie_word_embeddings"], config["tie_word_embeddings"]
    tied = JinaVLMForConditionalGeneration(JinaVLMConfig.from_dict(config))
    assert tied.lm_head.weight is tied.model.language_model.embedding.embedding
    config["tie_word_embeddings"] = False
    untied = JinaVLMForConditionalGeneration(JinaVLMConfig.from_dict(config))
    assert untied.lm_head.weight is not untied.model.language_model.embedding.embedding


@pytest.mark.parametrize("name", ["small", "scene", "wide"])
@torch.inference_mode()
def test_image_forward_matches_reference(tiny, name):
    t = forward_fixture(name)
    inputs = inputs_of(t)
    vision = tiny.model.vision_model

    features = vision.vit_features(inputs.images)[0]
    if name == "wide":  # the fixture keeps crops 0 and 12 only
        features = features[[0, 12]]
    torch.testing.assert_close(features, t["vit_features"], atol=ATOL, rtol=0)

    all_features = vision.vit_features(inputs.images)
    if "connector_pooled" in t:
        pooled = vision.vl_connector.pool(all_features, inputs.image_masks)[0]
        torch.testing.assert_close(pooled, t["connector_pooled"], atol=ATOL, rtol=0)
    output = vision(inputs.images, inputs.image_masks)[0]
    torch.testing.assert_close(output, t["connector_output"], atol=ATOL, rtol=0)
    assert output.shape[1] == 196  # 729 patch tokens pooled 2x2 per crop

    embeds = tiny.embed_inputs(inputs)
    if "lm_input_embeds" in t:
        torch.testing.assert_close(embeds[0], t["lm_input_embeds"], atol=ATOL, rtol=0)
    hidden = tiny.hidden_states(embeds, inputs.attention_mask)
    torch.testing.assert_close(hidden[0], t["lm_last_hidden_state"], atol=ATOL, rtol=0)
    logits = tiny.lm_head(hidden)[0]
    if "logits" in t:
        torch.testing.assert_close(logits, t["logits"], atol=ATOL, rtol=0)
    else:
        torch.testing.assert_close(logits[-32:], t["logits_last32"], atol=ATOL, rtol=0)
    torch.testing.assert_close(logits[-1], t["logits_last"], atol=ATOL, rtol=0)


@torch.inference_mode()
def test_text_only_forward_matches_reference(tiny):
    t = forward_fixture("textonly")
    torch.testing.assert_close(tiny(inputs_of(t))[0], t["logits"], atol=ATOL, rtol=0)


@torch.inference_mode()
def test_left_padded_batch_matches_reference(tiny):
    t = forward_fixture("batch")
    logits = tiny(inputs_of(t))
    torch.testing.assert_close(logits[:, -32:], t["logits_last32"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["small", "scene", "wide", "textonly", "batch"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generation_matches_reference(tiny, name, use_cache):
    t = forward_fixture(name)
    out = tiny.generate(inputs_of(t), SamplingParams(max_tokens=5), use_cache=use_cache)
    want = t["generated_ids"].view(out.token_ids.shape)
    assert torch.equal(out.token_ids, want)
    step_logits = t["generated_step_logits"].view(out.step_logits.shape)
    torch.testing.assert_close(out.step_logits, step_logits, atol=ATOL, rtol=0)


def test_generation_stops_at_a_stop_token(tiny):
    t = forward_fixture("small")
    first = int(t["generated_ids"][0])
    out = tiny.generate(inputs_of(t), SamplingParams(max_tokens=5, stop_token_ids=(first,)))
    assert out.token_ids.tolist() == [[first]]


def test_sampling_is_seeded(tiny):
    t = forward_fixture("textonly")
    params = SamplingParams(max_tokens=6, temperature=1.5, top_p=0.9, seed=7)
    a = tiny.generate(inputs_of(t), params).token_ids
    b = tiny.generate(inputs_of(t), params).token_ids
    assert torch.equal(a, b)
    greedy = tiny.generate(inputs_of(t), SamplingParams(max_tokens=6)).token_ids
    assert not torch.equal(a, greedy)
