"""jina-reranker-m0 parity: module tree vs the released manifest, tiny model vs reference outputs.

The fixtures hold no real tokenizer: prompts use placeholder ids (`**` 501, `Document` 502,
`:\\n` 503, `\\n` 198, `Query` 504, special tokens remapped to tiny ids). A word-level stand-in
tokenizer with exactly those ids (words `w<id>` -> id) drives the string-level API end to end.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from polyseek.errors import InputTooLarge, InvalidInput
from polyseek.inputs.images import ImageLimits, load_image
from polyseek.models.base import PairScorer, relevance
from polyseek.models.checkpoint import qwen_vl_module_key
from polyseek.models.families import family_named, family_of
from polyseek.models.jina_reranker_m0 import (
    JinaRerankerM0,
    JinaRerankerM0Model,
    Side,
    TextImage,
    build_reranker_m0,
    collate,
    scores_from_logits,
    to_checkpoint_key,
)

from support import FIXTURES, data_uri, serve_checkpoint

M0 = FIXTURES / "jina-reranker-m0"
FIXTURE_DIR = M0  # read by the conftest fixtures
M0_FAMILY = family_named("jina-reranker-m0")
pytestmark = pytest.mark.skipif(not M0.is_dir(),
                                reason=f"jina-reranker-m0 fixtures missing at {M0}")
ATOL = 1e-5  # logits and scores (README: fp32 vs fp64 <= 1.1e-6)
ATOL_HIDDEN = 5e-5
SCORE_TOKEN = 100





def words(ids: list[int]) -> str:
    """Placeholder token ids as stand-in text: [21, 22] -> "w21 w22"."""
    return " ".join(f"w{i}" for i in ids)


def stand_in_tokenizer(golden_json: dict) -> PreTrainedTokenizerFast:
    """Word-level tokenizer with the fixture's placeholder and tiny special-token ids."""
    placeholders = {k.replace("\\n", "\n"): v
                    for k, v in golden_json["placeholder_token_ids"].items()}
    special = golden_json["tiny_special_token_ids"]
    vocab = {"[UNK]": 0, **{f"w{i}": i for i in range(1, 100)}, **placeholders, **special}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_tokens([AddedToken(t, normalized=False) for t in placeholders])
    tokenizer.add_special_tokens(list(special))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<|endoftext|>")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, golden_json) -> Path:
    """The tiny model laid out as a released checkpoint directory (legacy key names)."""
    directory = tmp_path_factory.mktemp("jina-reranker-m0")
    shutil.copy(M0 / "tiny_config.json", directory / "config.json")
    shutil.copy(M0 / "tiny_weights.safetensors", directory / "model.safetensors")
    stand_in_tokenizer(golden_json).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def reranker(checkpoint) -> JinaRerankerM0:
    return JinaRerankerM0.from_pretrained(checkpoint, name="m0-tiny")


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.open(M0 / "image.png").convert("RGB")


def pairs_of(golden_json: dict) -> list[tuple[str, str]]:
    ids = golden_json["token_ids"]
    return [(words(ids["pair0_query"]), words(ids["pair0_doc"])),
            (words(ids["pair1_query"]), words(ids["pair1_doc"]))]


# --- module tree and checkpoint -------------------------------------------------------------


def test_family_is_recognised_from_config(manifest):
    tiny = json.loads((M0 / "tiny_config.json").read_text())
    assert family_of(manifest["config"]).name == family_of(tiny).name == "jina-reranker-m0"
    assert not family_named("jina-reranker-m0").recognizes(
        {"model_type": "qwen2_vl", "architectures": ["Qwen2VLForConditionalGeneration"]})


def test_real_config_builds_the_released_tree_on_meta(manifest):
    with torch.device("meta"):
        module = build_reranker_m0(manifest["config"])
    state = module.state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == {
        p["key"]: p["shape"] for p in manifest["keys_in_memory"]
    }
    # the same tensors under the checkpoint's legacy names, without the tied lm_head alias
    legacy = {to_checkpoint_key(k): list(v.shape)
              for k, v in state.items() if k != "lm_head.weight"}
    assert legacy == {p["key"]: p["shape"] for p in manifest["keys"]}
    counts = manifest["counts"]
    assert sum(p.numel() for p in module.parameters()) == counts["checkpoint_params"]
    assert sum(p.numel() for p in module.score.parameters()) == counts["score_head_params"]
    assert module.lm_head.weight is module.model.language_model.embed_tokens.weight
    assert all(p.device.type == "meta" for p in module.parameters())


def test_flat_qwen2_vl_config_builds_the_same_tree(manifest):
    """Released Qwen2-VL configs often keep the text fields at the top level."""
    config = manifest["config"]
    flat = {k: v for k, v in config.items() if k != "text_config"}
    flat |= {k: v for k, v in config["text_config"].items()
             if v is not None and k not in ("architectures", "layer_types")}
    flat |= {"model_type": "qwen2_vl", "auto_map": {"AutoModel": "modeling.JinaVLForRanking"}}
    with torch.device("meta"):
        module = build_reranker_m0(flat)
    assert {k: list(v.shape) for k, v in module.state_dict().items()} == {
        p["key"]: p["shape"] for p in manifest["keys_in_memory"]
    }


def test_tiny_weights_load_strictly_in_either_layout():
    config = json.loads((M0 / "tiny_config.json").read_text())
    legacy = load_file(M0 / "tiny_weights.safetensors")
    assert "lm_head.weight" not in legacy and any(k.startswith("visual.") for k in legacy)
    with torch.device("meta"):
        module = build_reranker_m0(config)
    M0_FAMILY.load_state(module, legacy)
    module.init_rotary_buffers()
    state = module.state_dict()
    for key, tensor in legacy.items():
        assert torch.equal(state[qwen_vl_module_key(key)], tensor), key
    assert module.lm_head.weight is module.model.language_model.embed_tokens.weight
    assert not any(t.device.type == "meta" for t in [*module.parameters(), *module.buffers()])

    in_memory = JinaRerankerM0Model(module.config)  # current transformers names load too
    M0_FAMILY.load_state(in_memory, {k: v for k, v in state.items() if k != "lm_head.weight"})
    with pytest.raises(ValueError, match="missing"):
        M0_FAMILY.load_state(build_reranker_m0(config),
                             {k: v for k, v in legacy.items() if k != "score.2.bias"})


# --- reference tensors (token ids fed directly) ---------------------------------------------


def inputs(golden: dict, case: str) -> tuple:
    return (golden[f"{case}.input_ids"], golden[f"{case}.attention_mask"],
            golden.get(f"{case}.pixel_values"), golden.get(f"{case}.image_grid_thw"))


@pytest.mark.parametrize("case", ["text", "image"])
@torch.inference_mode()
def test_forward_matches_reference(reranker, golden, case):
    model = reranker.model
    ids, mask, pixels, grid = inputs(golden, case)
    assert torch.equal(model.position_ids(ids, mask, grid), golden[f"{case}.position_ids"])
    if pixels is not None:
        features = model.image_features(pixels, grid)
        torch.testing.assert_close(features, golden["image.vision_embeds"], atol=ATOL_HIDDEN,
                                   rtol=0)
    hidden = model.hidden_states(ids, mask, pixels, grid)
    torch.testing.assert_close(hidden, golden[f"{case}.last_hidden"], atol=ATOL_HIDDEN, rtol=0)
    torch.testing.assert_close(hidden[:, -1], golden[f"{case}.pooled_hidden"],
                               atol=ATOL_HIDDEN, rtol=0)
    logits = reranker.logits(ids, mask, pixels, grid)
    torch.testing.assert_close(logits, golden[f"{case}.logits"], atol=ATOL, rtol=0)
    torch.testing.assert_close(scores_from_logits(logits), golden[f"{case}.scores"],
                               atol=ATOL, rtol=0)


def test_unpadded_rows_match_the_left_padded_batch(reranker, golden):
    ids, mask, _, _ = inputs(golden, "text")
    for row in range(ids.shape[0]):
        real = ids[row][mask[row].bool()][None]  # [1, n]
        logit = reranker.logits(real, torch.ones_like(real))
        torch.testing.assert_close(logit, golden["text.logits"][row : row + 1], atol=ATOL, rtol=0)


# --- prompts, tokenizer and image processor, end to end -------------------------------------


def test_prompt_strings_match_reference(reranker, golden_json, image):
    expected = golden_json["checks"]["prompt_strings_passed_to_processor"]
    text = [reranker.prompt_text(Side(q), Side(d))
            for q, d in [("query one", "document one"), ("query two", "document two")]]
    assert text == expected[0]
    image_doc = reranker.side(image, ("documents", 0))
    assert [reranker.prompt_text(Side("image query"), image_doc)] == expected[1]


def test_prompts_and_pixels_match_reference(reranker, golden, golden_json, image):
    ids = golden_json["token_ids"]
    text_pairs = [reranker.prepare_pairs(q, [d])[0] for q, d in pairs_of(golden_json)]
    assert [p.ids for p in text_pairs] == [
        ids["pair0_prompt"] + [SCORE_TOKEN], ids["pair1_prompt"] + [SCORE_TOKEN]]
    batch = collate(text_pairs, reranker.pad_id)
    assert torch.equal(batch.input_ids, golden["text.input_ids"])
    assert torch.equal(batch.attention_mask, golden["text.attention_mask"])

    (pair,) = reranker.prepare_pairs(words(ids["image_pair_query"]), [image])
    assert pair.ids == ids["image_pair_prompt"] + [SCORE_TOKEN]
    assert torch.equal(pair.pixel_values, golden["image.pixel_values"])
    assert torch.equal(pair.image_grid_thw, golden["image.image_grid_thw"])


def test_scores_match_reference(reranker, golden, golden_json, image):
    for row, (query, document) in enumerate(pairs_of(golden_json)):
        (score,) = reranker.score(query, [document])
        assert score == pytest.approx(float(golden["text.scores"][row]), abs=ATOL)
    query = words(golden_json["token_ids"]["image_pair_query"])
    scores = reranker.score(query, [image, load_image(data_uri(M0 / "image.png"))])
    assert scores == pytest.approx([float(golden["image.scores"][0])] * 2, abs=ATOL)


def test_mixed_batch_equals_single_pairs(reranker, image):
    query = "w11 w12 w13"
    documents = ["w21 w22 w23 w24 w25", image, "w31", TextImage("w41 w42", image),
                 ("w41 w42", image), (image, "w41 w42")]
    batched = reranker.score(query, documents)
    single = [reranker.score(query, [d])[0] for d in documents]
    assert batched == pytest.approx(single, abs=ATOL)
    assert batched[4:] == pytest.approx([batched[3]] * 2, abs=ATOL)  # same document
    assert batched[3] != pytest.approx(batched[1], abs=1e-3)  # the text counts


def test_image_queries(reranker, image):
    """Not in the goldens: an image query sits in the query slot; batching is exact."""
    (pair,) = reranker.prepare_pairs(image, ["w21 w22"])
    n_image = int(pair.image_grid_thw.prod()) // 4
    assert pair.ids == [501, 502, 501, 503, 21, 22, 198, 501, 504, 501, 503,
                              652, *[655] * n_image, 653, SCORE_TOKEN]
    (both,) = reranker.prepare_pairs(image, [image])  # document image first, then the query's
    assert both.image_grid_thw.tolist() == [[1, 8, 12], [1, 8, 12]]
    assert both.ids.count(655) == 2 * n_image
    documents = ["w21 w22", image, TextImage("w21", image)]
    batched = reranker.score(image, documents)
    single = [reranker.score(image, [d])[0] for d in documents]
    assert batched == pytest.approx(single, abs=ATOL)
    assert all(0 < s < 1 for s in batched)


# --- max_length ------------------------------------------------------------------------------


def test_long_documents_are_cut_never_the_query(checkpoint, reranker):
    short = JinaRerankerM0.from_pretrained(checkpoint, max_length=24)
    query, document = "w11 w12 w13 w14", words(list(range(21, 61)))  # 4 + 40 words
    (pair,) = short.prepare_pairs(query, [document])
    # 4 template tokens + 10 document tokens + 5 template tokens + 4 query tokens + 100
    assert pair.ids == [501, 502, 501, 503, *range(21, 31), 198, 501, 504, 501, 503,
                              11, 12, 13, 14, SCORE_TOKEN]
    cut = words(list(range(21, 31)))
    assert short.score(query, [document]) == pytest.approx(reranker.score(query, [cut]), abs=ATOL)
    with pytest.raises(InputTooLarge):
        short.score(words(list(range(11, 26))), ["w21"])  # the query alone leaves no room
    with pytest.raises(InputTooLarge):
        short.score("w11", [Image.open(M0 / "image.png")])  # images are never cut


def test_documents_are_capped_like_the_reference(checkpoint):
    """Documents get at most max(max_length - 512, 512) tokens, whatever room is left."""
    long = JinaRerankerM0.from_pretrained(checkpoint, max_length=1100)
    (pair,) = long.prepare_pairs("w11", [words([21] * 700)])
    assert pair.ids.count(21) == 588


def test_capabilities_and_bad_items(reranker):
    caps = reranker.capabilities
    assert (caps.kind, caps.family, caps.modalities) == ("rerank", "jina-reranker-m0",
                                                         ("text", "image"))
    assert caps.max_tokens == 10240
    assert reranker.image_processor.size.shortest_edge == 3136  # the reference's pixel range
    assert reranker.image_processor.size.longest_edge == 602112
    with pytest.raises(InvalidInput, match=r"documents\[1\]"):
        reranker.score("w11", ["w21", 42])


def test_served_over_v1_rerank(checkpoint, reranker, golden_json):
    """Text and image documents through Jina's /v1/rerank, scored like the model in-process."""
    import httpx

    picture = data_uri(M0 / "image.png")
    (query, document), *_ = pairs_of(golden_json)
    documents = [document, {"image": picture}, "w31 w32"]
    with serve_checkpoint("m0-tiny", checkpoint) as url:
        card = httpx.get(f"{url}/v1/models").json()["data"][0]["capabilities"]
        assert card["kind"] == "rerank" and card["modalities"] == ["text", "image"]
        response = httpx.post(f"{url}/v1/rerank", timeout=120, json={
            "model": "m0-tiny", "query": query, "documents": documents})
        broken = httpx.post(f"{url}/v1/rerank", timeout=120, json={
            "model": "m0-tiny", "query": query,
            "documents": [{"image": "data:image/png;base64,bm90IGFuIGltYWdl"}]})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    decoded = [document, load_image(picture), "w31 w32"]
    want = reranker.score(query, decoded)
    assert {r["index"]: r["relevance_score"] for r in results} == pytest.approx(
        dict(enumerate(want)), abs=ATOL)
    assert [r["relevance_score"] for r in results] == sorted(want, reverse=True)
    assert results[[r["index"] for r in results].index(1)]["document"] == {"image": picture}
    n_tokens = sum(job.n_tokens for job in reranker.prepare_pairs(query, decoded))
    assert response.json()["usage"] == {"total_tokens": n_tokens, "prompt_tokens": n_tokens}
    assert n_tokens > 0
    assert broken.status_code == 422, broken.text


def test_pair_jobs_score_like_score(reranker, image):
    """The `PairScorer` contract the batcher runs: one job per pair, a [1] logit each, mapped
    by the declared score function to what `score` returns."""
    assert isinstance(reranker, PairScorer) and reranker.capabilities.score == "sigmoid"
    documents = ["w21 w22", image, TextImage("w21", image)]
    jobs = reranker.prepare_pairs("w11 w12", documents)
    logits = reranker.embed_jobs(jobs)
    assert [out.shape for out in logits] == [(1,)] * 3
    scores = relevance(reranker.capabilities, [float(out[0]) for out in logits])
    assert scores == pytest.approx(reranker.score("w11 w12", documents), abs=ATOL)


def test_server_image_limits_reach_the_model(checkpoint, reranker, image):
    """An image the default limits accept is refused (413, naming it) by a server whose
    `image_limits` cap the pixels below its size."""
    import httpx

    picture = data_uri(M0 / "image.png")
    assert 0 < reranker.score("w11", [load_image(picture)])[0] < 1  # default limits: accepted
    small = ImageLimits(max_pixels=image.width * image.height - 1)
    with serve_checkpoint("m0-tiny", checkpoint, image_limits=small) as url:
        response = httpx.post(f"{url}/v1/rerank", timeout=120, json={
            "model": "m0-tiny", "query": "w11", "documents": ["w21", {"image": picture}]})
    assert response.status_code == 413, response.text
    message = response.json()["error"]["message"]
    assert message.startswith("documents[1]: ") and "pixel limit" in message
