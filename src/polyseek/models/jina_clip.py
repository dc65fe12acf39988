"""jina-clip-v2: a jina-embeddings-v3 text tower and an EVA02 vision tower in one space.

A published checkpoint directory holds `config.json` (`model_type` "jina_clip", with
`text_config` and `vision_config`), `model.safetensors` (`text_model.transformer.roberta.*`,
`vision_model.*`, `logit_scale`), the XLM-R tokenizer files and `preprocessor_config.json`.

The released config only names the text tower's base configuration
(`hf_model_name_or_path: jinaai/jina-embeddings-v3`) and overrides a few fields
(`hf_model_config_kwargs`: one LoRA adapter, alpha 4). Offline, the base configuration comes
from `text_base_config` in config.json when present, else from the released v3 values below.

Text: v3 encoder, its single LoRA adapter always on (default_lora_task), optional instruction
prefix, masked mean pooling. Image: shortest-side bicubic resize + center crop + CLIP
normalisation, EVA02 (pre-norm blocks, 2-D RoPE on patch tokens, sub-LN, SwiGLU), final norm,
CLS token. Both: Matryoshka truncation, then L2 normalisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from transformers import AutoTokenizer

from polyseek.errors import InvalidInput
from polyseek.models.base import (
    EncodeJob,
    Input,
    encode_inputs,
    jobs_per_input,
    pad_batch,
)
from polyseek.models.families import family_named
from polyseek.models.jina_v3 import JinaV3Config, XLMRobertaLoRA, mean_pool
from polyseek.models.text_encoder import tokenize

FAMILY = family_named("jina-clip-v2")
ARCHITECTURE = "JinaCLIPModel"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VISION_EPS = 1e-6
# Jina documents 64 as the smallest output size of the 1024-d model (its config also lists 32).
MIN_DIM_FRACTION = 16
# Released jina-embeddings-v3 config.json fields that shape the text tower.
V3_BASE_CONFIG: dict = {
    "vocab_size": 250002, "hidden_size": 1024, "num_hidden_layers": 24,
    "num_attention_heads": 16, "intermediate_size": 4096, "hidden_act": "gelu",
    "rotary_emb_base": 20000.0, "position_embedding_type": "rotary", "layer_norm_eps": 1e-5,
    "type_vocab_size": 1, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
    "max_position_embeddings": 8194, "lora_rank": 4, "lora_alpha": 1,
    "lora_adaptations": ["retrieval.query", "retrieval.passage", "separation",
                         "classification", "text-matching"],
    "matryoshka_dimensions": [32, 64, 128, 256, 512, 768, 1024],
}


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EVAVisionConfig:
    width: int
    layers: int
    head_width: int
    mlp_ratio: float
    patch_size: int
    image_size: int
    pt_hw_seq_len: int = 16

    @classmethod
    def from_dict(cls, config: dict) -> EVAVisionConfig:
        expected = {"rope_embeddings": True, "subln": True, "naive_swiglu": True,
                    "qkv_bias": True, "post_norm": False, "ls_init_value": None,
                    "proj_type": None, "intp_freq": True}
        wrong = {k: config[k] for k, v in expected.items() if k in config and config[k] != v}
        if wrong:
            raise ValueError(f"jina-clip-v2: unsupported vision_config values {wrong}")
        return cls(config["width"], config["layers"], config["head_width"],
                   config["mlp_ratio"], config["patch_size"], config["image_size"],
                   config.get("pt_hw_seq_len", 16))

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def mlp_hidden(self) -> int:
        return int(self.width * self.mlp_ratio)


@dataclass(frozen=True)
class JinaClipConfig:
    text: JinaV3Config
    vision: EVAVisionConfig
    matryoshka_dims: tuple[int, ...]
    default_lora_task: str
    instructions: dict[str, str]

    @classmethod
    def from_dict(cls, config: dict, text_base_config: dict | None = None) -> JinaClipConfig:
        text_config = config["text_config"]
        if config.get("add_projections") or text_config.get("proj_type") is not None \
                or config["vision_config"].get("proj_type") is not None:
            raise ValueError("jina-clip-v2: projection heads are unsupported")
        if text_config.get("pooler_type", "mean_pooler") != "mean_pooler":
            raise ValueError(f"jina-clip-v2: unsupported pooler {text_config['pooler_type']!r}")
        base = text_base_config or config.get("text_base_config") or V3_BASE_CONFIG
        text = JinaV3Config.from_dict({**base, **text_config.get("hf_model_config_kwargs", {})})
        default_task = text_config.get("default_lora_task") or text.tasks[0]
        return cls(
            text=text,
            vision=EVAVisionConfig.from_dict(config["vision_config"]),
            matryoshka_dims=tuple(config.get("matryoshka_dimensions")
                                  or (config["projection_dim"],)),
            default_lora_task=default_task,
            instructions={k: v for k, v in text.instructions.items() if v},
        )


# --- EVA02 vision tower -----------------------------------------------------------------------


def rotate_interleaved(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Pairs (x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin). x [..., N, d], cos/sin [N, d]."""
    pairs = x.unflatten(-1, (-1, 2))
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return x * cos + rotated * sin


def vision_rope_tables(config: EVAVisionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """2-D RoPE cos/sin [G*G, head_dim]: row angles then column angles, each frequency twice."""
    dim = config.head_width // 2
    freqs = 1.0 / 10000 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)  # [dim/2]
    t = torch.arange(config.grid, dtype=torch.float32) / config.grid * config.pt_hw_seq_len
    angles = torch.outer(t, freqs).repeat_interleave(2, dim=-1)  # [G, dim]
    g = config.grid
    table = torch.cat([angles[:, None, :].expand(g, g, dim),
                       angles[None, :, :].expand(g, g, dim)], dim=-1)  # [G, G, head_dim]
    table = table.reshape(g * g, -1)
    return table.cos(), table.sin()


class PatchEmbed(nn.Module):
    def __init__(self, config: EVAVisionConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, config.width, config.patch_size, config.patch_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, S, S] -> [B, G*G, W] (row-major; remainder pixels are dropped)."""
        return self.proj(pixels).flatten(2).transpose(1, 2)


class EVAAttention(nn.Module):
    def __init__(self, config: EVAVisionConfig):
        super().__init__()
        w = config.width
        self.heads = config.heads
        self.q_proj = nn.Linear(w, w, bias=False)
        self.k_proj = nn.Linear(w, w, bias=False)
        self.v_proj = nn.Linear(w, w, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(w))
        self.v_bias = nn.Parameter(torch.zeros(w))
        self.inner_attn_ln = nn.LayerNorm(w, eps=VISION_EPS)
        self.proj = nn.Linear(w, w)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """x [B, 1+N, W] -> [B, 1+N, W]; RoPE on the patch tokens of q and k."""
        b, n, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:  # [B, n, W] -> [B, h, n, d]
            return t.view(b, n, self.heads, -1).transpose(1, 2)

        q = heads(F.linear(x, self.q_proj.weight, self.q_bias))
        k = heads(self.k_proj(x))
        v = heads(F.linear(x, self.v_proj.weight, self.v_bias))
        cos, sin = (t.to(x.dtype) for t in rope)
        q = torch.cat([q[:, :, :1], rotate_interleaved(q[:, :, 1:], cos, sin)], dim=2)
        k = torch.cat([k[:, :, :1], rotate_interleaved(k[:, :, 1:], cos, sin)], dim=2)
        attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)  # [B, h, n, n]
        context = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, -1)  # [B, n, W]
        return self.proj(self.inner_attn_ln(context))


class SwiGLU(nn.Module):
    def __init__(self, config: EVAVisionConfig):
        super().__init__()
        w, hidden = config.width, config.mlp_hidden
        self.w1 = nn.Linear(w, hidden)
        self.w2 = nn.Linear(w, hidden)
        self.ffn_ln = nn.LayerNorm(hidden, eps=VISION_EPS)
        self.w3 = nn.Linear(hidden, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(self.ffn_ln(F.silu(self.w1(x)) * self.w2(x)))


class EVABlock(nn.Module):
    """Pre-norm block without layer scale."""

    def __init__(self, config: EVAVisionConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.width, eps=VISION_EPS)
        self.attn = EVAAttention(config)
        self.norm2 = nn.LayerNorm(config.width, eps=VISION_EPS)
        self.mlp = SwiGLU(config)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope)
        return x + self.mlp(self.norm2(x))


@dataclass
class VisionOutput:
    patch_embeds: torch.Tensor  # [B, N, W] before CLS and pos_embed
    block_outputs: tuple[torch.Tensor, ...]  # each [B, 1+N, W]
    tokens: torch.Tensor  # [B, 1+N, W] after the final norm
    pooled: torch.Tensor  # [B, W] the CLS token


class EVAVisionTransformer(nn.Module):
    def __init__(self, config: EVAVisionConfig):
        super().__init__()
        self.config = config
        n = config.grid**2
        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, config.width))
        self.blocks = nn.ModuleList(EVABlock(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.width, eps=VISION_EPS)

    def forward(self, pixel_values: torch.Tensor) -> VisionOutput:
        """pixel_values [B, 3, S, S] at exactly image_size."""
        size = self.config.image_size
        if tuple(pixel_values.shape[-2:]) != (size, size):
            raise ValueError(f"expected {size}x{size} pixels, got {tuple(pixel_values.shape)}")
        patches = self.patch_embed(pixel_values)  # [B, N, W]
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        x = torch.cat([cls, patches], dim=1) + self.pos_embed  # [B, 1+N, W]
        rope = vision_rope_tables(self.config)
        outputs = []
        for block in self.blocks:
            x = block(x, rope)
            outputs.append(x)
        tokens = self.norm(x)
        return VisionOutput(patches, tuple(outputs), tokens, tokens[:, 0])


# --- the CLIP module --------------------------------------------------------------------------


class JinaTextTower(nn.Module):
    """`text_model.transformer` is the v3 encoder (no pooler); mean pooling, no projection."""

    def __init__(self, config: JinaClipConfig):
        super().__init__()
        self.transformer = XLMRobertaLoRA(config.text, add_pooling_layer=False)
        self.default_task = config.default_lora_task

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids [B, L] (pad id marks padding) -> (last_hidden_state [B, L, H], pooled)."""
        mask = (input_ids != self.transformer.config.pad_token_id).long()
        hidden = self.transformer(input_ids, mask, self.default_task).last_hidden_state
        return hidden, mean_pool(hidden, mask)


@dataclass
class JinaClipOutput:
    text_embeds: torch.Tensor  # [T, D] normalised
    image_embeds: torch.Tensor  # [I, D] normalised
    logits_per_text: torch.Tensor  # [T, I]
    logits_per_image: torch.Tensor  # [I, T]


class JinaCLIPModel(nn.Module):
    def __init__(self, config: JinaClipConfig):
        super().__init__()
        self.config = config
        self.text_model = JinaTextTower(config)
        self.vision_model = EVAVisionTransformer(config.vision)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def get_text_features(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_model(input_ids)[1]

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values).pooled

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> JinaClipOutput:
        text = F.normalize(self.get_text_features(input_ids), dim=-1)
        image = F.normalize(self.get_image_features(pixel_values), dim=-1)
        logits = text @ image.T * self.logit_scale.exp()
        return JinaClipOutput(text, image, logits, logits.T)


def build_jina_clip_v2(config: dict, text_base_config: dict | None = None) -> JinaCLIPModel:
    """The module tree for a released config.json; works on meta. The text tower's base
    configuration is `text_base_config`, else config.json's own, else released v3's."""
    return JinaCLIPModel(JinaClipConfig.from_dict(config, text_base_config))


# --- image preprocessing ----------------------------------------------------------------------


def resize_and_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision Resize(size) (shorter side to `size`, bicubic, antialiased) + CenterCrop."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    scaled = int(size * long / short)
    new = (size, scaled) if width <= height else (scaled, size)
    if new != (width, height):
        image = image.resize(new, Image.Resampling.BICUBIC)
    width, height = image.size
    top, left = round((height - size) / 2), round((width - size) / 2)
    return image.crop((left, top, left + size, top + size))


def preprocess_image(image: Image.Image, size: int) -> torch.Tensor:
    """RGB image -> normalised pixel values [3, size, size] float32."""
    cropped = np.asarray(resize_and_crop(image.convert("RGB"), size), dtype=np.float32)
    pixels = torch.from_numpy(cropped / 255.0).permute(2, 0, 1)  # [3, S, S]
    mean, std = torch.tensor(CLIP_MEAN)[:, None, None], torch.tensor(CLIP_STD)[:, None, None]
    return (pixels - mean) / std


# --- the Embedder -----------------------------------------------------------------------------


@dataclass
class ClipJob(EncodeJob):
    """A text job, or an image job carrying its pixels (ids empty)."""

    pixel_values: torch.Tensor | None = None  # [3, S, S]
    image_tokens: int = 0

    @property
    def n_tokens(self) -> int:
        return self.image_tokens if self.pixel_values is not None else len(self.ids)


class JinaClipV2:
    """Text and image embeddings in one space, Matryoshka-truncatable."""

    def __init__(self, model: JinaCLIPModel, tokenizer, name: str = "",
                 max_tokens: int | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or FAMILY.name
        config = model.config
        self.pad_id = config.text.pad_token_id
        self.capabilities = FAMILY.capabilities(
            tasks=tuple(config.instructions),
            dim=config.text.hidden_size,
            min_dim=max(min(config.matryoshka_dims), config.text.hidden_size // MIN_DIM_FRACTION),
            matryoshka_dims=config.matryoshka_dims,
            max_tokens=max_tokens or config.text.max_tokens,
            pooling="mean",
            reranker="bi-encoder",
            extras={"architecture": ARCHITECTURE, "image_size": str(config.vision.image_size)},
        )

    @classmethod
    def from_pretrained(cls, directory: str | Path, name: str = "",
                        dtype: torch.dtype = torch.float32) -> JinaClipV2:
        directory = Path(directory)
        model = FAMILY.load_module(directory, dtype)
        tokenizer = AutoTokenizer.from_pretrained(directory)
        return cls(model, tokenizer, name or directory.name)

    # -- jobs ------------------------------------------------------------------------------

    def prepare(self, items: Sequence[Input], task: str | None = None,
                truncate: bool = True, late_chunking: bool = False,
                multivector: bool = False) -> list[EncodeJob]:
        """Texts get the task's instruction (none without a task); images are preprocessed."""
        self.capabilities.check_task(task)
        self.capabilities.check_multivector(multivector)
        if late_chunking:
            raise InvalidInput(f"model {self.name!r} does not support late chunking",
                               ("late_chunking",))
        return jobs_per_input(items, lambda text, i: self._text_job(text, i, task, truncate),
                              lambda image: self._image_job(image, task))

    def _text_job(self, text: str, index: int, task: str | None, truncate: bool) -> ClipJob:
        limit = self.capabilities.max_tokens
        instruction = self.model.config.instructions.get(task, "") if task else ""
        (ids,) = tokenize(self.tokenizer, [text], instruction, limit, truncate, self.name, index)
        return ClipJob(ids, task)

    def _image_job(self, image: Image.Image, task: str | None) -> ClipJob:
        vision = self.model.config.vision
        pixels = preprocess_image(image, vision.image_size)
        return ClipJob([], task, pixel_values=pixels, image_tokens=vision.grid**2 + 1)

    # -- forward ---------------------------------------------------------------------------

    @torch.inference_mode()
    def embed_jobs(self, jobs: Sequence[EncodeJob]) -> list[np.ndarray]:
        """Per job its un-normalised embedding [dim]: texts in one pass, images in another."""
        outputs: list[np.ndarray] = [np.empty(0)] * len(jobs)
        texts = [i for i, job in enumerate(jobs) if getattr(job, "pixel_values", None) is None]
        images = [i for i in range(len(jobs)) if i not in set(texts)]
        if texts:
            ids, _ = pad_batch([jobs[i].ids for i in texts], self.pad_id)
            for i, vector in zip(texts, self.model.get_text_features(ids).float(), strict=True):
                outputs[i] = vector.numpy()
        if images:
            dtype = self.model.logit_scale.dtype
            pixels = torch.stack([jobs[i].pixel_values for i in images]).to(dtype)
            features = self.model.get_image_features(pixels).float()
            for i, vector in zip(images, features, strict=True):
                outputs[i] = vector.numpy()
        return outputs

    # -- Python API ------------------------------------------------------------------------

    def encode(self, items: Sequence[Input] | Input, task: str | None = None,
               truncate_dim: int | None = None, multivector: bool = False,
               normalize: bool = True, batch_size: int = 16) -> np.ndarray:
        """Embed texts and images (mixed freely): [N, dim] float32, truncated to
        `truncate_dim` (`min_dim`..`dim`, as HTTP's `dimensions`), then L2-normalised."""
        return encode_inputs(self, items, task, truncate_dim, multivector, normalize, False,
                             batch_size)
