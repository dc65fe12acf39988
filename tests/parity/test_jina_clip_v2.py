"""jina-clip-v2 parity: module tree vs the released manifest, tiny model vs reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from test_jina_embeddings_v3 import write_toy_tokenizer

from polyseek.errors import InvalidInput
from polyseek.inputs.images import ImageLimits, load_image
from polyseek.models.base import Embedder
from polyseek.models.checkpoint import load_strict
from polyseek.models.families import family_of
from polyseek.models.jina_clip import (
    JinaCLIPModel,
    JinaClipV2,
    build_jina_clip_v2,
    preprocess_image,
    resize_and_crop,
    vision_rope_tables,
)

from support import FIXTURES, assert_truncated, data_uri, maxdiff, serve_checkpoint

CLIP = FIXTURES / "jina-clip-v2"
FIXTURE_DIR = CLIP  # read by the conftest fixtures
pytestmark = pytest.mark.skipif(not CLIP.is_dir(), reason=f"jina-clip-v2 fixtures missing "
                                                          f"at {CLIP}")
IMAGES = ("image0_landscape_160x120.png", "image1_portrait_90x130.png")
CASES = ("none", "retrieval.query")
ATOL_HIDDEN = 1e-4
ATOL = 1e-5


def tiny_config() -> dict:
    return json.loads((CLIP / "tiny_config.json").read_text())





@pytest.fixture(scope="module")
def tiny() -> JinaCLIPModel:
    config = tiny_config()
    model = build_jina_clip_v2(config["clip_config"], config["text_base_config"])
    load_strict(model, load_file(CLIP / "tiny_weights.safetensors"))
    return model.eval()


# --- module tree vs the released checkpoint ---------------------------------------------------


def test_meta_build_matches_the_manifest():
    manifest = json.loads((CLIP / "manifest_real.json").read_text())
    assert family_of(manifest["config"]).name == "jina-clip-v2"
    with torch.device("meta"):  # the built-in v3 base config must equal the released one
        module = build_jina_clip_v2(manifest["config"])
        explicit = build_jina_clip_v2(manifest["config"], manifest["text_base_config"])
    state = {k: list(v.shape) for k, v in module.state_dict().items()}
    assert state == {p["key"]: p["shape"] for p in manifest["keys"]}
    assert state == {k: list(v.shape) for k, v in explicit.state_dict().items()}
    assert len(state) == manifest["num_keys"] == 999
    assert sum(p.numel() for p in module.parameters()) == manifest["total_numel"]
    derived = manifest["derived"]
    assert module.config.text.lora_scaling == derived["text_lora_scaling"] == 1.0
    assert module.config.vision.mlp_hidden == derived["vision_mlp_hidden"]
    assert module.config.vision.grid**2 == derived["vision_num_patches"]


def test_strict_load_refuses_missing_tensors():
    config = tiny_config()
    state = load_file(CLIP / "tiny_weights.safetensors")
    with pytest.raises(ValueError, match="missing"):
        load_strict(build_jina_clip_v2(config["clip_config"], config["text_base_config"]),
                    {k: v for k, v in state.items() if k != "logit_scale"})


# --- preprocessing ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [112, 512])
def test_resize_and_crop_match_the_reference_pixels(size):
    reference = load_file(CLIP / "preprocess.safetensors")[f"resized_cropped_uint8_{size}"]
    for i, name in enumerate(IMAGES):
        cropped = np.array(resize_and_crop(Image.open(CLIP / name).convert("RGB"), size))
        assert torch.equal(torch.from_numpy(cropped).permute(2, 0, 1), reference[i])


def test_pixel_values_match_the_processor(golden):
    pixels = torch.stack([preprocess_image(Image.open(CLIP / name), 112) for name in IMAGES])
    assert maxdiff(pixels, load_file(CLIP / "preprocess.safetensors")["pixel_values_112"]) < 1e-6
    assert maxdiff(pixels, golden["image.pixel_values"]) < 1e-6


# --- reference outputs ------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_text_tower(tiny, golden, case):
    ids, mask = golden[f"text.{case}.input_ids"], golden[f"text.{case}.attention_mask"]
    with torch.inference_mode():
        hidden, pooled = tiny.text_model(ids)
    real = mask.bool()
    assert maxdiff(hidden[real], golden[f"text.{case}.last_hidden_state"][real]) < ATOL_HIDDEN
    assert maxdiff(pooled, golden[f"text.{case}.pooled"]) < ATOL_HIDDEN
    assert maxdiff(F.normalize(pooled, dim=-1), golden[f"text.{case}.embedding"]) < ATOL
    for dim in (8, 16, 32, 64):
        truncated = F.normalize(pooled[:, :dim], dim=-1)
        assert maxdiff(truncated, golden[f"text.{case}.embedding_dim{dim}"]) < ATOL


def test_lora_is_always_on_as_the_reference(tiny, golden, golden_json):
    ids, mask = golden["text.none.input_ids"], golden["text.none.attention_mask"]
    with torch.inference_mode():
        plain = tiny.text_model.transformer(ids, mask, None).last_hidden_state
        with_lora = tiny.text_model(ids)[0]
    real = mask.bool()
    want = golden["text.none.last_hidden_state_without_lora_debug"]
    assert maxdiff(plain[real], want[real]) < ATOL_HIDDEN
    effect = maxdiff(with_lora[real], plain[real])
    assert abs(effect - golden_json["lora_effect_maxabs_text_lhs"]) < 1e-4


def test_vision_tower(tiny, golden):
    cos, sin = vision_rope_tables(tiny.config.vision)
    assert maxdiff(cos, golden["debug.vision_rope_freqs_cos"]) < 1e-6
    assert maxdiff(sin, golden["debug.vision_rope_freqs_sin"]) < 1e-6
    with torch.inference_mode():
        out = tiny.vision_model(golden["image.pixel_values"])
    assert maxdiff(out.patch_embeds, golden["image.patch_embed_out"]) < ATOL_HIDDEN
    assert maxdiff(torch.stack(out.block_outputs), golden["image.block_outputs"]) < ATOL_HIDDEN
    assert maxdiff(out.tokens, golden["image.tokens_final_norm"]) < ATOL_HIDDEN
    assert maxdiff(out.pooled, golden["image.pooled"]) < ATOL_HIDDEN
    assert maxdiff(F.normalize(out.pooled, dim=-1), golden["image.embedding"]) < ATOL
    for dim in (8, 16, 32, 64):
        truncated = F.normalize(out.pooled[:, :dim], dim=-1)
        assert maxdiff(truncated, golden[f"image.embedding_dim{dim}"]) < ATOL


def test_clip_logits(tiny, golden):
    with torch.inference_mode():
        out = tiny(golden["text.none.input_ids"], golden["image.pixel_values"])
    assert maxdiff(out.logits_per_text, golden["clip.logits_per_text"]) < 1e-4
    assert maxdiff(out.logits_per_image, golden["clip.logits_per_image"]) < 1e-4


def test_patchify_drops_the_remainder_at_512():
    config = tiny_config()["clip_config"]
    vision = {**config["vision_config"], "image_size": 120}  # 8 patches + 8 spare pixels
    model = build_jina_clip_v2({**config, "vision_config": vision},
                               tiny_config()["text_base_config"]).vision_model
    assert model.patch_embed(torch.zeros(1, 3, 120, 120)).shape == (1, 64, 64)


# --- the Embedder, end to end from a checkpoint directory --------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """The tiny model as a checkpoint directory; config.json carries its text base config."""
    directory = tmp_path_factory.mktemp("jina-clip-v2")
    config = tiny_config()
    (directory / "config.json").write_text(json.dumps(
        {**config["clip_config"], "text_base_config": config["text_base_config"]}))
    save_file(load_file(CLIP / "tiny_weights.safetensors"), directory / "model.safetensors")
    write_toy_tokenizer(directory)
    return directory


@pytest.fixture(scope="module")
def embedder(checkpoint) -> JinaClipV2:
    return JinaClipV2.from_pretrained(checkpoint, name="clip-tiny")


def image(name: str) -> Image.Image:
    return Image.open(CLIP / name)


def test_capabilities(embedder):
    caps = embedder.capabilities
    assert isinstance(embedder, Embedder)
    assert (caps.kind, caps.family, caps.modalities, caps.tasks) == (
        "embedding", "jina-clip-v2", ("text", "image"), ("retrieval.query",))
    assert (caps.dim, caps.min_dim, caps.matryoshka_dims) == (64, 8, (8, 16, 32, 64))


@pytest.mark.parametrize("case", CASES)
def test_encode_matches_golden(embedder, golden, golden_json, case):
    task = None if case == "none" else case
    texts = golden_json["texts"]
    jobs = embedder.prepare(texts, task)
    ids, mask = golden[f"text.{case}.input_ids"], golden[f"text.{case}.attention_mask"]
    assert [job.ids for job in jobs] == [r[m.bool()].tolist() for r, m in zip(ids, mask,
                                                                              strict=True)]
    items = [texts[0], image(IMAGES[0]), texts[1], image(IMAGES[1]), texts[2]]
    vectors = embedder.encode(items, task=task)
    want = golden[f"text.{case}.embedding"]
    assert maxdiff(vectors[[0, 2, 4]], want) < ATOL
    assert maxdiff(vectors[[1, 3]], golden["image.embedding"]) < ATOL
    short = embedder.encode(items, task=task, truncate_dim=16)
    assert maxdiff(short[[0, 2, 4]], golden[f"text.{case}.embedding_dim16"]) < ATOL
    assert maxdiff(short[[1, 3]], golden["image.embedding_dim16"]) < ATOL


def test_invalid_requests(embedder):
    with pytest.raises(InvalidInput, match="unknown task"):
        embedder.encode(["x"], task="retrieval.passage")
    with pytest.raises(InvalidInput, match="dimensions must be between 8 and 64"):
        embedder.encode(["x"], truncate_dim=4)
    with pytest.raises(InvalidInput, match="late chunking"):
        embedder.prepare(["x"], late_chunking=True)


def test_served_over_v1_embeddings(checkpoint, embedder, golden):
    """Mixed text and image inputs, tasks and dimensions through the HTTP route."""
    import httpx

    image = data_uri(CLIP / IMAGES[0])
    with serve_checkpoint("clip-tiny", checkpoint) as url:
        def embed(**body):
            return httpx.post(f"{url}/v1/embeddings", json={"model": "clip-tiny", **body},
                              timeout=60)

        for task in ("retrieval.query", None):
            response = embed(input=["A photo of a cat", {"image": image}, image], task=task)
            assert response.status_code == 200, response.text
            got = np.array([d["embedding"] for d in response.json()["data"]])
            want = embedder.encode(["A photo of a cat", load_image(image)], task=task)
            np.testing.assert_allclose(got, want[[0, 1, 1]], atol=1e-5)
        np.testing.assert_allclose(got[1], golden["image.embedding"][0], atol=1e-5)
        short = embed(input=[{"image": image}], dimensions=16)
        assert len(short.json()["data"][0]["embedding"]) == 16
        assert embed(input="x", dimensions=4).status_code == 422
        assert embed(input="x", task="separation").status_code == 422


def test_truncate_dim_takes_what_http_dimensions_takes(checkpoint, embedder):
    """Any `dimensions` from min_dim to dim, Matryoshka point or not, in Python and HTTP."""
    import httpx

    full = embedder.encode(["A photo of a cat", image(IMAGES[0])])
    vectors = embedder.encode(["A photo of a cat", image(IMAGES[0])], truncate_dim=40)
    assert_truncated(vectors, full, 40)
    with serve_checkpoint("clip-tiny", checkpoint) as url:
        response = httpx.post(f"{url}/v1/embeddings", timeout=60, json={
            "model": "clip-tiny", "dimensions": 40,
            "input": ["A photo of a cat", {"image": data_uri(CLIP / IMAGES[0])}]})
    assert response.status_code == 200, response.text
    got = np.array([d["embedding"] for d in response.json()["data"]])
    np.testing.assert_allclose(got, vectors, atol=1e-5)


def test_server_image_limits_reach_the_model(checkpoint, embedder, tmp_path):
    """An image the default limits accept is refused (413, naming it) by a server whose
    `image_limits` cap the pixels below its size: as an input and as a search query."""
    import httpx

    picture = data_uri(CLIP / IMAGES[0])
    assert embedder.encode([load_image(picture)]).shape == (1, 64)  # default limits: accepted
    width, height = Image.open(CLIP / IMAGES[0]).size
    small = ImageLimits(max_pixels=width * height - 1)
    with serve_checkpoint("clip-tiny", checkpoint, image_limits=small,
                          data_dir=str(tmp_path / "store")) as url:
        embedded = httpx.post(f"{url}/v1/embeddings", timeout=60, json={
            "model": "clip-tiny", "input": ["a cat", {"image": picture}]})
        indexed = httpx.post(f"{url}/v1/index", timeout=60, json={
            "collection": "notes", "model": "clip-tiny",
            "documents": [{"id": "a", "text": "a cat on a mat"}]})
        by_text = httpx.post(f"{url}/v1/search", timeout=60,
                             json={"collection": "notes", "query": "cat"})
        by_image = httpx.post(f"{url}/v1/search", timeout=60,
                              json={"collection": "notes", "query": {"image": picture}})
        smaller = {"image": data_uri(CLIP / IMAGES[1])}  # 90x130: within the cap
        by_smaller = httpx.post(f"{url}/v1/search", timeout=60,
                                json={"collection": "notes", "query": smaller})
    assert embedded.status_code == 413, embedded.text
    message = embedded.json()["error"]["message"]
    assert message.startswith("input[1]: ") and "pixel limit" in message
    assert indexed.status_code == 200 and by_text.status_code == 200, by_text.text
    assert by_image.status_code == 413, by_image.text
    assert by_image.json()["error"]["message"].startswith("query: ")
    assert by_smaller.status_code == 200, by_smaller.text
    assert by_smaller.json()["hits"]


def test_images_are_indexed_and_found_by_image_query(embedder, tmp_path):
    """The retrieval layer with an image-capable model: images become points of their own."""
    import shutil

    from polyseek.retrieval import index_paths, open_store
    from polyseek.retrieval.search import search

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in IMAGES:
        shutil.copy(CLIP / name, corpus / name)
    (corpus / "note.txt").write_text("Hello world. A short note beside two pictures.")
    with open_store(tmp_path / "store") as store:
        summary = index_paths([corpus], "pictures", embedder, store=store)
        assert (summary.indexed, summary.errors) == (3, [])
        assert summary.points == 3
        for name in IMAGES:
            result = search(image(name), "pictures", embedder, store=store, top_k=3)
            assert result.hits[0].path.endswith(name)
            assert result.hits[0].mime == "image/png"
            assert result.hits[0].score == pytest.approx(1.0, abs=1e-4)
            assert store.thumbnail_path(result.hits[0].thumbnail) is not None
        again = index_paths([corpus], "pictures", embedder, store=store)
        assert (again.unchanged, again.embedded) == (3, 0)
