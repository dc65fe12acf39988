"""jina-vlm processor parity: native preprocessing vs the reference processor's stored outputs.

Preprocess fixtures were tokenised with the real Qwen tokenizer (not available here): the image
side is compared fully and the token side is rebuilt from the stored `prompt_token_ids`. Forward
fixtures used the character-level tiny tokenizer and are reproduced end to end from PNG + prompt.

Crops are float32 and compared with atol 1e-6. Stage-1 (uint8) resizing is thread dependent at
exact rounding ties (README §7): a stage-1 value may flip by ±1. The allowance is tied to the
flips we actually observe: every flip is ±1, there are at most MAX_STAGE1_FLIPS of them, and only
then may at most CROP_VALUES_PER_FLIP crop values per flip differ, each by at most 2/255.
"""

from __future__ import annotations

import json
import lzma
from collections.abc import Iterator
from functools import cache

import pytest
import torch
from PIL import Image
from safetensors.torch import load
from tokenizers import Tokenizer

from polyseek.errors import InvalidInput
from polyseek.models.jina_vlm.processor import (
    JinaVLMProcessor,
    JinaVLMProcessorConfig,
    JinaVLMSpecialTokens,
    image_block_tokens,
    image_token_count,
    patchify,
    preprocess_image,
    resize_uint8,
    select_tiling,
    smart_resize,
    to_uint8_rgb,
)

from support import FIXTURES

VLM = FIXTURES / "jina-vlm"
pytestmark = pytest.mark.skipif(not VLM.is_dir(), reason=f"jina-vlm fixtures missing at {VLM}")

IMAGES = ["scene", "wide", "small"]
CROP_ATOL = 1e-6
MAX_STAGE1_FLIPS = 2  # stage-1 uint8 values allowed to differ (by exactly 1) from the reference
CROP_VALUES_PER_FLIP = 64  # crop values one flipped stage-1 value may move (observed: 24)
FLIP_ATOL = 2 / 255 + CROP_ATOL  # a 1/255 step, doubled by the [-1, 1] normalisation
TINY_MAX_LENGTH = 4096  # model_max_length of the tiny tokenizer used for the forward fixtures
PROMPT = "<|im_start|>user\n<|image|>Describe this image.<|im_end|>\n<|im_start|>assistant\n"
QWEN_SPECIAL = JinaVLMSpecialTokens(
    bos=151643, image_start=151936, image_end=151937, image_patch=151938, image_col=151939,
    image_placeholder=151940,
)
TINY_SPECIAL = JinaVLMSpecialTokens(
    bos=250, image_start=256, image_end=257, image_patch=258, image_col=259, image_placeholder=260,
)


@cache
def tensors(stem: str) -> dict[str, torch.Tensor]:
    return load(lzma.open(VLM / f"{stem}.safetensors.xz").read())


@cache
def meta(stem: str) -> dict:
    return json.loads((VLM / f"{stem}.json").read_text())


def image(name: str) -> Image.Image:
    with Image.open(VLM / f"image_{name}.png") as img:
        img.load()
        return img


@pytest.fixture(params=[1, 2], ids=["threads1", "threads2"])
def threads(request) -> Iterator[int]:
    """Run under 1 thread (as the fixtures were made) and under 2 (this machine's cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_processor() -> JinaVLMProcessor:
    tokenizer = Tokenizer.from_file(str(VLM / "tokenizer_tiny.json"))
    config = JinaVLMProcessorConfig(max_sequence_length=TINY_MAX_LENGTH)
    return JinaVLMProcessor(tokenizer, config)


@pytest.fixture(scope="module")
def qwen_processor() -> JinaVLMProcessor:
    return JinaVLMProcessor(None, JinaVLMProcessorConfig(), special_tokens=QWEN_SPECIAL)


def stage1(name: str) -> torch.Tensor:
    """Our stage-1 image [H', W', 3] uint8, as the processor computes it."""
    pixels = to_uint8_rgb(image(name))
    h, w = smart_resize(pixels.shape[1], pixels.shape[2], JinaVLMProcessorConfig())
    return resize_uint8(pixels, h, w).permute(1, 2, 0)


def stage1_flips(name: str) -> int:
    """Number of stage-1 uint8 values that differ from the reference; each must be exactly ±1."""
    ref = tensors(f"preprocess_{name}")["smart_resized_image_uint8"]
    ours = stage1(name)
    assert ours.shape == ref.shape
    diff = ours.to(torch.int16) - ref.to(torch.int16)
    assert diff.abs().max() <= 1
    flips = int((diff != 0).sum())
    assert flips <= MAX_STAGE1_FLIPS, f"{name}: {flips} stage-1 values differ"
    return flips


def assert_crops_match(ours: torch.Tensor, ref: torch.Tensor, flips: int) -> float:
    """Crops equal within CROP_ATOL except the values moved by `flips` stage-1 flips."""
    assert ours.shape == ref.shape and ours.dtype == ref.dtype == torch.float32
    diff = (ours - ref).abs()
    off = int((diff > CROP_ATOL).sum())
    assert off <= CROP_VALUES_PER_FLIP * flips, f"{off} crop values off with {flips} flips"
    assert diff.max() <= (FLIP_ATOL if flips else CROP_ATOL)
    return float(diff.max())


def assert_equal(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    assert torch.equal(ours, ref), f"{int((ours != ref).sum())} entries differ"


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", IMAGES)
def test_geometry(name: str) -> None:
    config = JinaVLMProcessorConfig()
    geo = meta(f"preprocess_{name}")["geometry"]
    h, w = smart_resize(*geo["original_hw"], config)
    assert [h, w] == geo["smart_resized_hw"]
    assert list(select_tiling(h, w, config)) == geo["tiling_rows_cols"]

    count = image_token_count(*geo["original_hw"])
    m = meta(f"preprocess_{name}")
    assert count["crops"] == m["n_crops_including_thumbnail"]
    assert count["vit_tokens"] == m["n_crops_including_thumbnail"] * 729
    assert count["image_tokens"] == m["n_im_patch_tokens"]
    assert count["block_tokens"] == m["n_image_block_tokens"]


def test_smart_resize_pixel_bounds() -> None:
    config = JinaVLMProcessorConfig()
    assert smart_resize(30, 40, config) == (56, 70)  # below min_pixels: scaled up
    assert smart_resize(2000, 3000, config) == (812, 1218)  # above max_pixels: scaled down
    assert config.max_pixels >= 812 * 1218
    assert smart_resize(14, 2800, config) == (14, 2800)  # aspect ratio 200 is allowed
    with pytest.raises(InvalidInput, match="aspect ratio"):
        smart_resize(14, 2815, config)
    with pytest.raises(InvalidInput, match="1x1 pixels"):
        smart_resize(1, 1, config)


def test_block_layout_covers_every_patch_token() -> None:
    """Every `<im_patch>` of a block receives exactly one pooled slot, for every tiling."""
    config = JinaVLMProcessorConfig()
    for rows in range(1, 13):
        for cols in range(1, 13 // rows + 1):
            tokens, slot_index = image_block_tokens(rows, cols, TINY_SPECIAL, config)
            assert slot_index.shape == (1 + rows * cols, 196)
            valid = slot_index[slot_index >= 0]
            patch_positions = (tokens == TINY_SPECIAL.image_patch).nonzero().flatten()
            assert torch.equal(valid.sort().values, patch_positions)


# ----------------------------------------------------------------------------------------------
# Preprocess fixtures (real Qwen token layout)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", IMAGES)
def test_image_block_matches_image_processor(name: str, threads: int) -> None:
    ref = tensors(f"preprocess_{name}")
    block = preprocess_image(image(name), QWEN_SPECIAL, JinaVLMProcessorConfig())
    assert_equal(block.tokens, ref["ip_image_tokens"].to(torch.int64))
    ref_idx = ref["ip_image_input_idx"].to(torch.int64)
    assert bool((ref_idx[ref_idx < 0] == -10000).all())  # reference: invalid = -10000
    assert_equal(block.slot_index, torch.where(ref_idx < 0, -1, ref_idx))
    assert_equal(block.masks, ref["ip_image_padding_mask"])
    assert_crops_match(block.crops, ref["images"][0], stage1_flips(name))


@pytest.mark.parametrize("name", IMAGES)
def test_preprocess_outputs(name: str, qwen_processor: JinaVLMProcessor, threads: int) -> None:
    ref = tensors(f"preprocess_{name}")
    m = meta(f"preprocess_{name}")
    prompt_ids = ref["prompt_token_ids"].tolist()
    assert prompt_ids == m["prompt_token_ids"]

    out = qwen_processor.from_token_ids([prompt_ids], [[image(name)]])
    assert set(out) == {"input_ids", "attention_mask", "images", "image_masks", "image_input_idx"}
    assert_equal(out["input_ids"], ref["input_ids"])
    assert out["input_ids"][0].tolist() == m["input_ids"]
    assert_equal(out["attention_mask"], ref["attention_mask"])
    assert_equal(out["image_masks"], ref["image_masks"])
    assert_equal(out["image_input_idx"], ref["image_input_idx"])
    assert bool((out["image_input_idx"][out["image_input_idx"] < 0] == -40960).all())
    assert_crops_match(out["images"], ref["images"], stage1_flips(name))


def test_patchify_order() -> None:
    """Patch p = (row-major over 27x27); inside, value (dy * 14 + dx) * 3 + c."""
    crops = torch.arange(2 * 3 * 378 * 378, dtype=torch.float32).reshape(2, 3, 378, 378)
    patches = patchify(crops, 14)
    assert patches.shape == (2, 729, 588)
    n, py, px, dy, dx, c = 1, 5, 7, 3, 11, 2
    expected = crops[n, c, py * 14 + dy, px * 14 + dx]
    assert patches[n, py * 27 + px, (dy * 14 + dx) * 3 + c] == expected


# ----------------------------------------------------------------------------------------------
# Forward fixtures (tiny tokenizer, end to end from PNG + prompt text)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", IMAGES)
def test_forward_inputs(name: str, tiny_processor: JinaVLMProcessor) -> None:
    ref = tensors(f"forward_{name}")
    m = meta(f"forward_{name}")
    assert tiny_processor.special_tokens == TINY_SPECIAL
    out = tiny_processor([m["prompt"]], [[image(name)]])
    assert_equal(out["input_ids"], ref["input_ids"])
    assert out["input_ids"][0].tolist() == m["input_ids"]
    assert_equal(out["attention_mask"], ref["attention_mask"])
    assert_equal(out["image_masks"], ref["image_masks"])
    assert_equal(out["image_input_idx"], ref["image_input_idx"])
    assert_crops_match(out["images"], ref["images"], stage1_flips(name))


def test_forward_textonly(tiny_processor: JinaVLMProcessor) -> None:
    ref = tensors("forward_textonly")
    out = tiny_processor([meta("forward_textonly")["prompt"]])
    assert set(out) == {"input_ids", "attention_mask"}
    assert_equal(out["input_ids"], ref["input_ids"])
    assert_equal(out["attention_mask"], ref["attention_mask"])


def test_forward_batch_left_padding(tiny_processor: JinaVLMProcessor) -> None:
    ref = tensors("forward_batch")
    m = meta("forward_batch")
    images = [[image(f.removeprefix("image_").removesuffix(".png"))] for f in m["images"]]
    out = tiny_processor(m["prompts"], images)

    assert_equal(out["input_ids"], ref["input_ids"])
    assert_equal(out["attention_mask"], ref["attention_mask"])
    assert_equal(out["image_masks"], ref["image_masks"])
    assert_equal(out["image_input_idx"], ref["image_input_idx"])
    flips = stage1_flips("small") + stage1_flips("scene")
    assert_crops_match(out["images"], ref["images"], flips)

    # The padding conventions, spelled out: row 0 (small, 2 crops) is left-padded by 390.
    pad = 854 - 464
    assert bool((out["input_ids"][0, :pad] == -1).all()) and out["input_ids"][0, pad] == 250
    assert bool((out["images"][0, 2:] == -1).all())
    assert out["image_masks"][0, :, 0].tolist() == [1, -1, -1, -1, -1]
    idx = out["image_input_idx"]
    assert set(idx[0][idx[0] < 0].tolist()) == {pad - TINY_MAX_LENGTH}  # -3706
    assert set(idx[1][idx[1] < 0].tolist()) == {-TINY_MAX_LENGTH}
    patch_positions = (out["input_ids"] == TINY_SPECIAL.image_patch).nonzero()
    valid = (idx >= 0).nonzero()
    assert torch.equal(patch_positions[:, 0], valid[:, 0])  # one feature per `<im_patch>`, per row
    for b in range(2):
        row_positions = patch_positions[patch_positions[:, 0] == b, 1]
        assert torch.equal(idx[b][idx[b] >= 0].sort().values, row_positions)


# ----------------------------------------------------------------------------------------------
# Prompts with several / no placeholders, and input errors
# ----------------------------------------------------------------------------------------------


def small_image(height: int, width: int) -> Image.Image:
    return Image.new("RGB", (width, height), (200, 30, 90))


def test_two_images_in_one_prompt(tiny_processor: JinaVLMProcessor) -> None:
    first, second = image("small"), small_image(100, 180)
    out = tiny_processor(["A<|image|>B<|image|>C"], [[first, second]])
    ids = out["input_ids"][0]
    blocks = [preprocess_image(img, TINY_SPECIAL, tiny_processor.config) for img in (first, second)]
    n1, n2 = len(blocks[0].tokens), len(blocks[1].tokens)
    expected = torch.cat([torch.tensor([250, ord("A")]), blocks[0].tokens, torch.tensor([ord("B")]),
                          blocks[1].tokens, torch.tensor([ord("C")])])
    assert_equal(ids, expected)
    assert out["images"].shape[1] == len(blocks[0].crops) + len(blocks[1].crops)
    # Each image's slots point into its own block (offsets 2 and 2 + n1 + 1).
    idx = out["image_input_idx"][0]
    k = len(blocks[0].crops)
    assert_equal(idx[:k], torch.where(blocks[0].slot_index >= 0, blocks[0].slot_index + 2, -4096))
    assert_equal(idx[k:], torch.where(blocks[1].slot_index >= 0,
                                      blocks[1].slot_index + 3 + n1, -4096))
    assert ids[3 + n1 + n2] == ord("C")
    # The mask quirk applies per image: each image's last crop gets -1.
    n_second = len(blocks[1].crops)
    assert out["image_masks"][0, :, 0].tolist() == [1, -1] + [1] * (n_second - 1) + [-1]


def test_images_without_placeholder_go_after_bos(tiny_processor: JinaVLMProcessor) -> None:
    img = small_image(64, 64)
    with_placeholder = tiny_processor(["<|image|>hi"], [[img]])
    without = tiny_processor(["hi"], [[img]])
    for key in with_placeholder:
        assert torch.equal(with_placeholder[key], without[key])


def test_input_errors(tiny_processor: JinaVLMProcessor) -> None:
    img = small_image(32, 32)
    with pytest.raises(InvalidInput, match="placeholder"):
        tiny_processor(["<|image|><|image|>"], [[img]])
    with pytest.raises(InvalidInput, match="placeholder"):
        tiny_processor(["<|image|>"])
    with pytest.raises(InvalidInput, match="placeholder"):
        tiny_processor(["a<|image|>b"], [[img, img]])
    limit = tiny_processor.config.max_images_per_prompt
    with pytest.raises(InvalidInput, match="at most"):
        tiny_processor(["x"], [[img] * (limit + 1)])
    with pytest.raises(InvalidInput, match="aspect ratio"):
        tiny_processor(["<|image|>"], [[small_image(14, 3000)]])
    with pytest.raises(InvalidInput, match="at least 14 pixels"):
        tiny_processor(["<|image|>"], [[small_image(1, 1)]])
