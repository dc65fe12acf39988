"""Image + text preprocessing for jina-vlm (reference `model_type: "jvlm"`).

Turns prompts and PIL images into the tensors the jina-vlm model consumes:

* every image is resized to multiples of the patch size ("smart resize", uint8), then stretched
  onto a grid of overlapping 378x378 tiles ("overlap-and-resize"); a 378x378 thumbnail of the whole
  image is prepended to the tiles; every crop is cut into 27x27 patches of 14x14x3 values;
* every `<|image|>` placeholder in a prompt is replaced by the image's token block (thumbnail
  block + tile block of `<im_patch>`/`<im_col>` tokens), and `image_input_idx` says which token
  position receives each of the 14x14 pooled features of each crop (negative = skip);
* samples are left-padded and collated exactly like the reference processor, including its
  mask/crop misalignment quirk and its negative-index convention.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tokenizers import Tokenizer

from polyseek.errors import InvalidInput

IMAGE_PLACEHOLDER = "<|image|>"


@dataclass(frozen=True)
class JinaVLMProcessorConfig:
    """Image-processor settings; defaults are the released `preprocessor_config.json` values.

    The reference fixes `cropping_method="overlap-and-resize"`, `normalization_method="minmax"`,
    bilinear interpolation without antialias, uint8 stage-1 resizing and no aspect-ratio
    preserving padding; those are the only behaviours implemented here.
    """

    max_crops: int = 12
    base_input_size: tuple[int, int] = (378, 378)
    patch_size: int = 14
    overlap_margins: tuple[int, int] = (4, 4)  # patches dropped at the (leading, trailing) edge
    pooling_h: int = 2
    pooling_w: int = 2
    min_pixels: int = 3136
    max_pixels: int = 1003520
    image_min: float = -1.0
    image_max: float = 1.0
    max_aspect_ratio: float = 200.0
    min_image_side: int = 14  # smaller images carry less than one patch: refused, not upscaled
    max_images_per_prompt: int = 8
    # `tokenizer.model_max_length` in the reference: skipped `image_input_idx` slots are filled
    # with -max_sequence_length (then shifted by the row's left padding) by the collate step.
    max_sequence_length: int = 40960

    # Keys the released config (or other ports) may use for the same setting.
    _ALIASES: ClassVar[dict[str, str]] = {
        "base_image_input_size": "base_input_size",
        "image_patch_size": "patch_size",
        "image_pooling_h": "pooling_h",
        "image_pooling_w": "pooling_w",
        "model_max_length": "max_sequence_length",
    }

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> JinaVLMProcessorConfig:
        """Build from a `preprocessor_config.json` dict; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in config.items():
            key = cls._ALIASES.get(key, key)
            if key not in names:
                continue
            if key in ("base_input_size", "overlap_margins"):
                value = tuple(int(v) for v in value)
            kwargs[key] = value
        return cls(**kwargs)

    @property
    def patches_per_crop(self) -> tuple[int, int]:
        """Patch grid of one crop: (27, 27)."""
        return (self.base_input_size[0] // self.patch_size,
                self.base_input_size[1] // self.patch_size)

    @property
    def pooled_per_crop(self) -> tuple[int, int]:
        """Pooled-slot grid of one crop (patch grid padded up to the pooling window): (14, 14)."""
        ph, pw = self.patches_per_crop
        return (math.ceil(ph / self.pooling_h), math.ceil(pw / self.pooling_w))

    @property
    def crop_window_patches(self) -> int:
        """Patches of a tile that are not overlap margin: 27 - 4 - 4 = 19."""
        return self.patches_per_crop[0] - sum(self.overlap_margins)


@dataclass(frozen=True)
class JinaVLMSpecialTokens:
    """Ids of the tokens the processor inserts."""

    bos: int  # `<|endoftext|>`: the Qwen tokenizer has no BOS, the reference prepends its EOS
    image_start: int  # `<im_start>`
    image_end: int  # `<im_end>`
    image_patch: int  # `<im_patch>`
    image_col: int  # `<im_col>`
    image_placeholder: int  # `<|image|>`

    TOKEN_NAMES: ClassVar[dict[str, str]] = {
        "bos": "<|endoftext|>",
        "image_start": "<im_start>",
        "image_end": "<im_end>",
        "image_patch": "<im_patch>",
        "image_col": "<im_col>",
        "image_placeholder": IMAGE_PLACEHOLDER,
    }

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> JinaVLMSpecialTokens:
        """Look the ids up by token string in a `tokenizers.Tokenizer` or transformers tokenizer."""
        ids = {}
        for field_name, token in cls.TOKEN_NAMES.items():
            if hasattr(tokenizer, "token_to_id"):
                token_id = tokenizer.token_to_id(token)
            else:
                token_id = tokenizer.convert_tokens_to_ids(token)
                if token_id == getattr(tokenizer, "unk_token_id", None):
                    token_id = None
            if token_id is None:
                raise ValueError(f"tokenizer has no {token!r} token")
            ids[field_name] = int(token_id)
        return cls(**ids)


@dataclass
class ImageBlock:
    """One image, preprocessed: its crops and the token block that replaces `<|image|>`."""

    crops: torch.Tensor  # [N, 729, 588] float32, thumbnail first, values in [-1, 1]
    masks: torch.Tensor  # [N, 729] float32, see `crop_masks` (1 for rows 0..N-2, -1 for row N-1)
    tokens: torch.Tensor  # [n_block] int64, thumbnail block + tile block
    slot_index: torch.Tensor  # [N, 196] int64, position in `tokens` per pooled slot, -1 = skip


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------


def smart_resize(height: int, width: int, config: JinaVLMProcessorConfig) -> tuple[int, int]:
    """Stage-1 target size: both sides multiples of the patch size, area within the pixel bounds."""
    if min(height, width) < config.min_image_side:
        raise InvalidInput(
            f"image is {width}x{height} pixels; at least {config.min_image_side} pixels on each "
            "side are needed"
        )
    if max(height, width) / min(height, width) > config.max_aspect_ratio:
        raise InvalidInput(
            f"image aspect ratio must be at most {config.max_aspect_ratio:g}, "
            f"got {max(height, width) / min(height, width):.1f} ({height}x{width})"
        )
    factor = config.patch_size
    h = round(height / factor) * factor  # Python round: half to even
    w = round(width / factor) * factor
    if h * w > config.max_pixels:
        beta = math.sqrt(height * width / config.max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < config.min_pixels:
        beta = math.sqrt(config.min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def select_tiling(height: int, width: int, config: JinaVLMProcessorConfig) -> tuple[int, int]:
    """(rows, cols) of tiles for a stage-1 image of `height` x `width` pixels.

    Candidates are all grids with at most `max_crops` tiles, in (tiles, rows) order. The scale a
    grid needs is min over both axes of (tiles * window) / (side - margins), in float32. Pick the
    smallest scale >= 1 (the tightest grid that needs no downscaling); if every grid would
    downscale, pick the largest scale. Ties go to the first candidate.
    """
    window = config.crop_window_patches * config.patch_size  # 266 px
    margin = sum(config.overlap_margins) * config.patch_size  # 112 px
    candidates = sorted(
        ((r, c) for r in range(1, config.max_crops + 1) for c in range(1, config.max_crops + 1)
         if r * c <= config.max_crops),
        key=lambda rc: (rc[0] * rc[1], rc[0]),
    )
    tilings = np.array(candidates, dtype=np.int64)  # [K, 2]
    needed = np.array([height - margin, width - margin], dtype=np.float32)
    scales = np.min(tilings.astype(np.float32) * np.float32(window) / needed, axis=1)  # [K]
    if np.all(scales < 1):
        best = int(np.argmax(scales))
    else:
        upscaling = np.where(scales >= 1, scales, np.float32(np.inf))
        best = int(np.argmin(upscaling))
    return candidates[best]


def tile_pooled_spans(
    n_tiles: int, pool: int, config: JinaVLMProcessorConfig
) -> list[tuple[int, int]]:
    """Valid pooled-slot range (start, length) along one axis for each of `n_tiles` tiles.

    A tile keeps its leading margin only if it is the first tile and its trailing margin only if
    it is the last; the margins it drops are skipped in pooled units (4 patches = 2 slots).
    Lengths: 1 tile -> [14]; 2 tiles -> [12, 12]; 6 tiles -> [12, 10, 10, 10, 10, 12].
    """
    lead, trail = config.overlap_margins
    spans = []
    for t in range(n_tiles):
        first, last = t == 0, t == n_tiles - 1
        valid_patches = config.crop_window_patches + (lead if first else 0) + (trail if last else 0)
        start = 0 if first else lead // pool
        spans.append((start, math.ceil(valid_patches / pool)))
    return spans


def image_block_tokens(
    rows: int, cols: int, special: JinaVLMSpecialTokens, config: JinaVLMProcessorConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token block of one image and the block-relative position of every pooled slot.

    Layout: `<im_start>` 14 x (14 `<im_patch>` `<im_col>`) `<im_end>` for the thumbnail, then
    `<im_start>` R x (C `<im_patch>` `<im_col>`) `<im_end>` for the tiles, where R x C is the
    stitched grid of valid pooled slots of all tiles. Thumbnail slot s maps to the s-th thumbnail
    `<im_patch>`; tile slots map, in raster order over the stitched grid, to the tile
    `<im_patch>` tokens. Slots in a dropped overlap margin get -1.

    Returns `tokens` [n_block] int64 and `slot_index` [1 + rows * cols, 196] int64.
    """
    ph, pw = config.pooled_per_crop  # 14, 14
    row_spans = tile_pooled_spans(rows, config.pooling_h, config)
    col_spans = tile_pooled_spans(cols, config.pooling_w, config)
    grid_h = sum(length for _, length in row_spans)  # R
    grid_w = sum(length for _, length in col_spans)  # C

    def block(h: int, w: int) -> list[int]:
        row = [special.image_patch] * w + [special.image_col]
        return [special.image_start, *(row * h), special.image_end]

    thumb_tokens = block(ph, pw)
    tokens = thumb_tokens + block(grid_h, grid_w)

    slot_index = torch.full((1 + rows * cols, ph, pw), -1, dtype=torch.int64)
    # In a block with rows of w patches, the `<im_patch>` at grid (r, c) sits at
    # 1 + r * (w + 1) + c: after `<im_start>`, each earlier row ending in `<im_col>`.
    r, c = torch.meshgrid(torch.arange(ph), torch.arange(pw), indexing="ij")
    slot_index[0] = 1 + r * (pw + 1) + c
    tile_offset = len(thumb_tokens)
    row_base = 0
    for i, (row_start, row_len) in enumerate(row_spans):
        col_base = 0
        for j, (col_start, col_len) in enumerate(col_spans):
            gr = row_base + torch.arange(row_len)[:, None]  # global pooled row, [row_len, 1]
            gc = col_base + torch.arange(col_len)[None, :]  # global pooled col, [1, col_len]
            positions = tile_offset + 1 + gr * (grid_w + 1) + gc  # [row_len, col_len]
            slot_index[1 + i * cols + j,
                       row_start:row_start + row_len, col_start:col_start + col_len] = positions
            col_base += col_len
        row_base += row_len
    return torch.tensor(tokens, dtype=torch.int64), slot_index.reshape(1 + rows * cols, ph * pw)


def image_token_count(height: int, width: int,
                      config: JinaVLMProcessorConfig | None = None) -> dict[str, int]:
    """How much an image of `height` x `width` pixels costs.

    `crops` includes the thumbnail; `vit_tokens` = crops x 729 patches; `pooled_slots` = crops x
    196 (before dropping overlap margins); `image_tokens` = `<im_patch>` tokens, i.e. pooled
    features the decoder sees; `block_tokens` = length of the block replacing `<|image|>`.
    """
    config = config or JinaVLMProcessorConfig()
    rows, cols = select_tiling(*smart_resize(height, width, config), config)
    ph, pw = config.pooled_per_crop
    grid_h = sum(length for _, length in tile_pooled_spans(rows, config.pooling_h, config))
    grid_w = sum(length for _, length in tile_pooled_spans(cols, config.pooling_w, config))
    crops = 1 + rows * cols
    patches = config.patches_per_crop[0] * config.patches_per_crop[1]
    return {
        "rows": rows,
        "cols": cols,
        "crops": crops,
        "vit_tokens": crops * patches,
        "pooled_slots": crops * ph * pw,
        "image_tokens": ph * pw + grid_h * grid_w,
        "block_tokens": (2 + ph * (pw + 1)) + (2 + grid_h * (grid_w + 1)),
    }


# ----------------------------------------------------------------------------------------------
# Pixels
# ----------------------------------------------------------------------------------------------


def to_uint8_rgb(image: Image.Image | np.ndarray) -> torch.Tensor:
    """PIL image (any mode) or HxWx3 uint8 array -> [3, H, W] uint8 tensor."""
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    else:
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise InvalidInput(f"image array must be HxWx3 uint8, got {array.dtype} {array.shape}")
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def resize_bilinear(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[C, H, W] float32 -> [C, height, width]; bilinear, align_corners=False, no antialias."""
    return F.interpolate(image[None], size=(height, width), mode="bilinear",
                         align_corners=False, antialias=False)[0]


def resize_uint8(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[3, H, W] uint8 -> [3, height, width] uint8, torchvision tensor-resize semantics.

    Interpolate in float32, round half to even, cast back. Unchanged if the size is the same.
    """
    if tuple(image.shape[-2:]) == (height, width):
        return image
    resized = resize_bilinear(image.to(torch.float32), height, width)
    return torch.round(resized).to(torch.uint8)


def stretch_and_normalise(image: torch.Tensor, height: int, width: int,
                          config: JinaVLMProcessorConfig) -> torch.Tensor:
    """[3, H, W] float32 in [0, 1] -> [3, height, width] float32 in [image_min, image_max].

    Resize without preserving the aspect ratio, clip to [0, 1], then minmax-normalise.
    """
    resized = resize_bilinear(image, height, width).clamp(0.0, 1.0)
    return config.image_min + (config.image_max - config.image_min) * resized


def crops_and_thumbnail(image: torch.Tensor, rows: int, cols: int,
                        config: JinaVLMProcessorConfig) -> torch.Tensor:
    """[3, h, w] float32 in [0, 1] -> [1 + rows * cols, 3, 378, 378] normalised crops.

    Crop 0 is the whole image resized to 378x378; tile (i, j) follows in row-major order and is
    the 378x378 window at (266 i, 266 j) of the image stretched to (266 rows + 112, 266 cols + 112).
    """
    size_h, size_w = config.base_input_size
    window = config.crop_window_patches * config.patch_size  # 266
    margin = sum(config.overlap_margins) * config.patch_size  # 112
    stretched = stretch_and_normalise(image, rows * window + margin, cols * window + margin, config)
    crops = [stretch_and_normalise(image, size_h, size_w, config)]
    for i in range(rows):
        for j in range(cols):
            y0, x0 = i * window, j * window
            crops.append(stretched[:, y0:y0 + size_h, x0:x0 + size_w])
    return torch.stack(crops)


def patchify(crops: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[N, 3, S, S] -> [N, (S/p)^2, p*p*3]; patches row-major, values ordered (dy, dx, channel)."""
    n, ch, h, w = crops.shape
    gh, gw = h // patch_size, w // patch_size
    x = crops.reshape(n, ch, gh, patch_size, gw, patch_size)
    x = x.permute(0, 2, 4, 3, 5, 1)  # [N, gh, gw, dy, dx, C]
    return x.reshape(n, gh * gw, patch_size * patch_size * ch).contiguous()


def crop_masks(n_crops: int, config: JinaVLMProcessorConfig) -> torch.Tensor:
    """Per-patch masks [n_crops, 729] float32, reproducing the reference's misalignment.

    The reference computes masks for the tiles only (all 1: stretching never pads) and appends a
    row of -1 at the end, while the thumbnail is prepended to the crops. So row k pairs with crop k
    in the model: every crop gets 1 except the last tile, which gets -1 ("partially padded").
    """
    patches = config.patches_per_crop[0] * config.patches_per_crop[1]
    masks = torch.ones(n_crops, patches, dtype=torch.float32)
    masks[-1] = -1.0
    return masks


def preprocess_image(
    image: Image.Image | np.ndarray, special: JinaVLMSpecialTokens, config: JinaVLMProcessorConfig
) -> ImageBlock:
    """One image -> its crops, masks, token block and block-relative slot positions."""
    pixels = to_uint8_rgb(image)  # [3, H, W] uint8
    h, w = smart_resize(pixels.shape[1], pixels.shape[2], config)
    resized = resize_uint8(pixels, h, w).to(torch.float32) / 255.0  # [3, h, w] in [0, 1]
    rows, cols = select_tiling(h, w, config)
    crops = crops_and_thumbnail(resized, rows, cols, config)  # [N, 3, 378, 378]
    tokens, slot_index = image_block_tokens(rows, cols, special, config)
    return ImageBlock(
        crops=patchify(crops, config.patch_size),
        masks=crop_masks(crops.shape[0], config),
        tokens=tokens,
        slot_index=slot_index,
    )


# ----------------------------------------------------------------------------------------------
# Text interleave and collate
# ----------------------------------------------------------------------------------------------


def interleave_image_blocks(
    prompt_ids: Sequence[int],
    blocks: Sequence[ImageBlock],
    special: JinaVLMSpecialTokens,
    config: JinaVLMProcessorConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Final ids of one sample and the absolute position of every pooled slot.

    Each `<|image|>` id in `prompt_ids` (tokenised without special tokens) is replaced by the next
    image's block; if the prompt has images but no placeholder, all blocks go first. Then BOS is
    prepended. Returns `input_ids` [L] int64 and `image_input_idx` [N_total, 196] int64 (-1 = skip).
    """
    prompt_ids = [int(t) for t in prompt_ids]
    n_placeholders = prompt_ids.count(special.image_placeholder)
    if n_placeholders == 0 and blocks:
        prompt_ids = [special.image_placeholder] * len(blocks) + prompt_ids
    elif n_placeholders != len(blocks):
        raise InvalidInput(
            f"prompt has {n_placeholders} {IMAGE_PLACEHOLDER} placeholder(s) "
            f"but {len(blocks)} image(s) were given"
        )

    input_ids: list[int] = [special.bos]
    slot_positions: list[torch.Tensor] = []  # per image: [n_crops, 196]
    next_block = iter(blocks)
    for token in prompt_ids:
        if token != special.image_placeholder:
            input_ids.append(token)
            continue
        block = next(next_block)
        start = len(input_ids)
        slot_positions.append(torch.where(block.slot_index >= 0, block.slot_index + start, -1))
        input_ids.extend(block.tokens.tolist())

    ph, pw = config.pooled_per_crop
    image_input_idx = torch.cat([torch.zeros(0, ph * pw, dtype=torch.int64), *slot_positions])
    return torch.tensor(input_ids, dtype=torch.int64), image_input_idx


def collate(
    samples: Sequence[dict[str, torch.Tensor]], config: JinaVLMProcessorConfig
) -> dict[str, torch.Tensor]:
    """Left-pad a batch the way the reference collator does.

    `input_ids` pad -1; crops pad with whole crops of -1; `image_masks` and `image_input_idx`
    pad -1. Then every negative `image_input_idx` becomes -max_sequence_length and all entries
    are shifted by the row's pad length (so skipped slots read e.g. -40960 or -4096 + pad).
    """
    batch = len(samples)
    seq_len = max(len(s["input_ids"]) for s in samples)
    input_ids = torch.full((batch, seq_len), -1, dtype=torch.int64)
    for b, s in enumerate(samples):
        input_ids[b, seq_len - len(s["input_ids"]):] = s["input_ids"]
    out = {"input_ids": input_ids, "attention_mask": input_ids != -1}

    n_crops = max(len(s["images"]) for s in samples)
    if n_crops == 0:
        return out
    patches, patch_dim = samples[0]["images"].shape[1:]
    slots = samples[0]["image_input_idx"].shape[1]  # every sample carries these trailing dims
    images = torch.full((batch, n_crops, patches, patch_dim), -1.0, dtype=torch.float32)
    image_masks = torch.full((batch, n_crops, patches), -1, dtype=torch.int64)
    image_input_idx = torch.full((batch, n_crops, slots), -1, dtype=torch.int64)
    for b, s in enumerate(samples):
        n = len(s["images"])
        images[b, :n] = s["images"]
        image_masks[b, :n] = s["image_masks"].to(torch.int64)  # truncates toward 0
        image_input_idx[b, :n] = s["image_input_idx"]
        pad = seq_len - len(s["input_ids"])
        row = image_input_idx[b]
        row[row < 0] = -config.max_sequence_length
        row += pad
    out.update(images=images, image_masks=image_masks, image_input_idx=image_input_idx)
    return out


# ----------------------------------------------------------------------------------------------
# Processor
# ----------------------------------------------------------------------------------------------


def _encoder(tokenizer: Any) -> Callable[[str], list[int]]:
    """`text -> ids` without added special tokens.

    `tokenizers.Tokenizer` returns an `Encoding`; transformers tokenizers take
    `add_special_tokens`; anything else is called as a plain `encode(text) -> ids`.
    """
    if isinstance(tokenizer, Tokenizer):
        return lambda text: tokenizer.encode(text, add_special_tokens=False).ids
    if hasattr(tokenizer, "convert_tokens_to_ids"):
        return lambda text: list(tokenizer.encode(text, add_special_tokens=False))
    return lambda text: list(tokenizer.encode(text))


class JinaVLMProcessor:
    """Prompts + images -> jina-vlm model inputs.

    Args:
        tokenizer: anything with `encode(text)` returning ids (a `tokenizers.Tokenizer` or a
            transformers tokenizer; special tokens are never added by `encode`). May be None
            when only `from_token_ids` is used and `special_tokens` is given.
        config: image-processor settings.
        special_tokens: ids of the inserted tokens; looked up by name in the tokenizer if None.

    Each `<|image|>` in a prompt consumes the next image of that prompt. A prompt with images but
    no placeholder gets all its image blocks right after BOS (before the text).
    """

    def __init__(
        self,
        tokenizer: Any | None,
        config: JinaVLMProcessorConfig | None = None,
        special_tokens: JinaVLMSpecialTokens | None = None,
    ):
        if tokenizer is None and special_tokens is None:
            raise ValueError("need a tokenizer or explicit special_tokens")
        self.tokenizer = tokenizer
        self.config = config or JinaVLMProcessorConfig()
        self.special_tokens = special_tokens or JinaVLMSpecialTokens.from_tokenizer(tokenizer)
        self._encode = _encoder(tokenizer) if tokenizer is not None else None

    def __call__(
        self,
        texts: str | Sequence[str],
        images: Sequence[Sequence[Image.Image | np.ndarray]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Tokenise `texts` and build the batch; `images[b]` are the images of prompt b.

        Returns `input_ids` [B, L] int64 (left-padded with -1), `attention_mask` [B, L] bool and,
        if any prompt has images, `images` [B, N, 729, 588] float32, `image_masks` [B, N, 729]
        int64 and `image_input_idx` [B, N, 196] int64 (negative = skip).
        """
        if self._encode is None:
            raise ValueError("this processor has no tokenizer; use from_token_ids")
        if isinstance(texts, str):
            texts = [texts]
        return self.from_token_ids([self._encode(t) for t in texts], images)

    def from_token_ids(
        self,
        prompt_ids: Sequence[Sequence[int]],
        images: Sequence[Sequence[Image.Image | np.ndarray]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Same as `__call__`, for prompts that are already tokenised (no special tokens added)."""
        if images is None:
            images = [[] for _ in prompt_ids]
        if len(images) != len(prompt_ids):
            raise InvalidInput(f"got {len(prompt_ids)} prompts but {len(images)} image lists")
        samples = [
            self.process_sample(ids, imgs) for ids, imgs in zip(prompt_ids, images, strict=True)
        ]
        return collate(samples, self.config)

    def process_sample(
        self, prompt_ids: Sequence[int], images: Sequence[Image.Image | np.ndarray]
    ) -> dict[str, torch.Tensor]:
        """One prompt and its images -> unpadded `input_ids` [L], `images` [N, 729, 588],
        `image_masks` [N, 729] float32 and `image_input_idx` [N, 196] (-1 = skip)."""
        if len(images) > self.config.max_images_per_prompt:
            raise InvalidInput(
                f"at most {self.config.max_images_per_prompt} images per prompt, got {len(images)}"
            )
        blocks = [preprocess_image(img, self.special_tokens, self.config) for img in images]
        input_ids, image_input_idx = interleave_image_blocks(
            prompt_ids, blocks, self.special_tokens, self.config
        )
        if blocks:
            crops = torch.cat([b.crops for b in blocks])
            masks = torch.cat([b.masks for b in blocks])
        else:
            patches = self.config.patches_per_crop[0] * self.config.patches_per_crop[1]
            crops = torch.zeros(0, patches, self.config.patch_size**2 * 3)
            masks = torch.zeros(0, patches)
        return {
            "input_ids": input_ids,
            "images": crops,
            "image_masks": masks,
            "image_input_idx": image_input_idx,
        }

    def image_token_count(self, height: int, width: int) -> dict[str, int]:
        """Crops / ViT tokens / `<im_patch>` tokens / block length for an image size."""
        return image_token_count(height, width, self.config)
