"""jina-embeddings-v4: Qwen2.5-VL-3B with task LoRA adapters, single- and multi-vector output.

The backbone is transformers' stock `Qwen2_5_VLModel`; on top of it sit a tied `lm_head` (kept
only so the state_dict matches the released tree), a `multi_vector_projector` Linear, and, after
`load_adapters`, one low-rank delta per task in every language-model projection and in the
projector. A published checkpoint directory holds:

    config.json                       Qwen2.5-VL config + task_names, matryoshka_dims, ...
    model*.safetensors                base weights, legacy names (model.layers.N.*, visual.*)
    adapters/adapter_config.json      PEFT LoRA config (r, lora_alpha, target/exclude regexes)
    adapters/adapter_model.safetensors
        base_model.model.<module>.lora_{A,B}.<task>.weight, A: [r, in], B: [out, r]
    tokenizer files, preprocessor_config.json

Outputs follow the reference: last hidden states (final RMSNorm) -> mean over the valid tokens
(text) or over <|vision_start|> .. <|vision_end|> inclusive (images), L2-normalised; multi-vector
= projector per token, L2-normalised, padding rows zeroed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from transformers import AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLModel, Qwen2VLImageProcessorPil
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
    Qwen2_5_VLRotaryEmbedding,
    Qwen2_5_VLVisionRotaryEmbedding,
)

from polyseek.errors import InvalidInput
from polyseek.models.base import (
    EncodeJob,
    Input,
    encode_inputs,
    jobs_per_input,
    pad_batch,
)
from polyseek.models.checkpoint import qwen_vl_module_key
from polyseek.models.families import family_named
from polyseek.models.text_encoder import tokenize

FAMILY = family_named("jina-embeddings-v4")
ARCHITECTURE = "JinaEmbeddingsV4Model"
# config.json fields of v4 itself; everything else configures the Qwen2.5-VL backbone
JINA_FIELDS = frozenset({
    "task_names", "matryoshka_dims", "multi_vector_projector_dim", "single_vector_pool_strategy",
    "truncate_dim", "pretrained_peft_model_name_or_path", "auto_map", "api_tasks",
})
# API task -> (adapter, prompt prefix). text-matching is symmetric and always uses "Query".
API_TASKS: dict[str, tuple[str, str]] = {
    "retrieval.query": ("retrieval", "Query: "),
    "retrieval.passage": ("retrieval", "Passage: "),
    "code.query": ("code", "Query: "),
    "code.passage": ("code", "Passage: "),
    "text-matching": ("text-matching", "Query: "),
}
DEFAULT_TASK = "text-matching"
# config.json may add API tasks for adapters trained later (`polyseek train embedder --lora`):
# "api_tasks": {"NAME.query": ["NAME", "Query: "], ...}, merged over API_TASKS.
# The reference's fixed single-image prompt; <|image_pad|> is repeated once per merged patch.
IMAGE_PROMPT_HEAD = "<|im_start|>user\n<|vision_start|>"
IMAGE_PROMPT_TAIL = "<|vision_end|>Describe the image.<|im_end|>\n"
MAX_TEXT_TOKENS = 32768  # the reference processor's text_max_length
# Qwen2.5-VL image processor defaults (used when preprocessor_config.json does not say)
MIN_PIXELS = 56 * 56
MAX_PIXELS = 28 * 28 * 16384
_PROCESSOR_FIELDS = ("min_pixels", "max_pixels", "size", "image_mean", "image_std", "patch_size",
                     "temporal_patch_size", "merge_size", "do_resize", "do_rescale",
                     "rescale_factor", "do_normalize", "do_convert_rgb", "resample")
_ADAPTER_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])\."
                          r"(?P<task>[^.]+)\.weight$")


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class JinaEmbeddingsV4Config:
    """v4's own fields beside the Qwen2.5-VL backbone config."""

    backbone: Qwen2_5_VLConfig
    task_names: tuple[str, ...]
    matryoshka_dims: tuple[int, ...]
    multi_vector_projector_dim: int
    pool_strategy: str = "mean"
    api_tasks: tuple[tuple[str, str, str], ...] = ()  # (API task, adapter, prompt), added

    @classmethod
    def from_dict(cls, config: dict) -> JinaEmbeddingsV4Config:
        backbone = Qwen2_5_VLConfig(**{k: v for k, v in config.items() if k not in JINA_FIELDS})
        hidden = backbone.text_config.hidden_size
        pool = config.get("single_vector_pool_strategy", "mean")
        if pool != "mean":
            raise ValueError(f"jina-embeddings-v4: unsupported pooling {pool!r} (only 'mean')")
        return cls(
            backbone=backbone,
            task_names=tuple(config.get("task_names", ("retrieval", "text-matching", "code"))),
            matryoshka_dims=tuple(config.get("matryoshka_dims", (hidden,))),
            multi_vector_projector_dim=config.get("multi_vector_projector_dim", 128),
            pool_strategy=pool,
            api_tasks=tuple((name, adapter, prompt) for name, (adapter, prompt)
                            in config.get("api_tasks", {}).items()),
        )

    def task_table(self) -> dict[str, tuple[str, str]]:
        """API task -> (adapter, prompt prefix): the released tasks plus config.json's."""
        table = {**API_TASKS, **{name: (adapter, prompt)
                                 for name, adapter, prompt in self.api_tasks}}
        unknown = sorted({adapter for adapter, _ in table.values()} - set(self.task_names))
        if self.api_tasks and unknown:
            raise ValueError(f"api_tasks name adapters not in task_names: {unknown}")
        return table

    @property
    def hidden_size(self) -> int:
        return self.backbone.text_config.hidden_size


# --- task LoRA --------------------------------------------------------------------------------


class TaskSelector:
    """Which task adapter the running forward pass applies (per thread and async context)."""

    def __init__(self) -> None:
        self._index: ContextVar[int | None] = ContextVar(f"jina_v4_task_{id(self)}",
                                                         default=None)

    @property
    def index(self) -> int | None:
        return self._index.get()

    @contextmanager
    def use(self, index: int | None) -> Iterator[None]:
        token = self._index.set(index)
        try:
            yield
        finally:
            self._index.reset(token)


class MultiTaskLoRALinear(nn.Linear):
    """A Linear with one low-rank delta per task: y = W x + b + scaling * B_t (A_t x).

    `weight`/`bias` are the base layer's own parameters, so the state_dict keeps the base
    checkpoint's names; the deltas are non-persistent buffers (they come from their own file).
    With no task selected the layer is the plain base Linear.
    """

    def __init__(self, base: nn.Linear, lora_a: torch.Tensor, lora_b: torch.Tensor,
                 scaling: float, selector: TaskSelector):
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None,
                         device="meta")
        self.weight = base.weight
        self.bias = base.bias
        self.register_buffer("lora_A", lora_a, persistent=False)  # [tasks, r, in]
        self.register_buffer("lora_B", lora_b, persistent=False)  # [tasks, out, r]
        self.scaling = scaling
        self.selector = selector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        task = self.selector.index
        if task is None:
            return out
        delta = F.linear(F.linear(x, self.lora_A[task]), self.lora_B[task])  # [..., out]
        return out + delta * self.scaling

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, tasks={self.lora_A.shape[0]}, r={self.lora_A.shape[1]}"


def lora_scaling(adapter_config: dict) -> float:
    """PEFT's scaling: lora_alpha / r (or / sqrt(r) with rsLoRA)."""
    if adapter_config.get("rank_pattern") or adapter_config.get("alpha_pattern"):
        raise ValueError("per-module LoRA ranks (rank_pattern/alpha_pattern) are unsupported")
    rank, alpha = adapter_config["r"], adapter_config["lora_alpha"]
    return alpha / rank**0.5 if adapter_config.get("use_rslora") else alpha / rank


def adapter_targets(module: nn.Module, adapter_config: dict) -> dict[str, nn.Linear]:
    """The Linear layers PEFT wraps: names fully matching `target_modules` and not
    `exclude_modules` (regex strings, or lists of name suffixes)."""

    def matches(name: str, pattern: str | list[str] | None) -> bool:
        if not pattern:
            return False
        if isinstance(pattern, str):
            return re.fullmatch(pattern, name) is not None
        return any(name == p or name.endswith("." + p) for p in pattern)

    return {
        name: sub for name, sub in module.named_modules()
        if isinstance(sub, nn.Linear) and matches(name, adapter_config["target_modules"])
        and not matches(name, adapter_config.get("exclude_modules"))
    }


def adapter_key_shapes(targets: dict[str, nn.Linear], tasks: Sequence[str],
                       rank: int) -> dict[str, tuple[int, ...]]:
    """Every key of the adapter file and its shape, in the PEFT layout."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, linear in targets.items():
        for task in tasks:
            shapes[f"base_model.model.{name}.lora_A.{task}.weight"] = (rank, linear.in_features)
            shapes[f"base_model.model.{name}.lora_B.{task}.weight"] = (linear.out_features, rank)
    return shapes


def normalize_adapter_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Adapter keys with their module path in the module tree's (new) layout."""
    out = {}
    for key, value in state.items():
        match = _ADAPTER_KEY.match(key)
        if match is None:
            raise ValueError(f"not a PEFT LoRA adapter key: {key!r}")
        module = qwen_vl_module_key(match["module"])
        out[f"base_model.model.{module}.lora_{match['ab']}.{match['task']}.weight"] = value
    return out


# --- 3-D rotary positions ---------------------------------------------------------------------


def rope_position_ids(input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      image_grid_thw: torch.Tensor | None, image_token_id: int,
                      merge_size: int) -> torch.Tensor:
    """M-RoPE (temporal, height, width) positions [3, B, L], as the reference computes them.

    Over each row's valid tokens: text advances all three together; an image's tokens get
    t = s, h = s + row, w = s + col over its merged grid (s = next free position); the next
    token continues at the largest position so far + 1. Padding positions are 1.
    Images are taken from `image_grid_thw` in row-major order of their tokens.
    """
    positions = torch.ones(3, *input_ids.shape, dtype=torch.long)  # [3, B, L]
    grids = iter(image_grid_thw.tolist() if image_grid_thw is not None else [])
    for row in range(input_ids.shape[0]):
        valid = attention_mask[row].bool()
        ids = input_ids[row][valid]
        is_image = (ids == image_token_id).tolist()
        pieces: list[torch.Tensor] = []
        start, next_pos = 0, 0
        while start < len(ids):
            image_at = is_image.index(True, start) if True in is_image[start:] else len(ids)
            if image_at > start:  # text run
                pieces.append(torch.arange(start=next_pos, end=next_pos + image_at - start)
                              .expand(3, -1))
                next_pos += image_at - start
            if image_at == len(ids):
                break
            t, h, w = next(grids)
            h, w = h // merge_size, w // merge_size
            tt, hh, ww = torch.meshgrid(torch.zeros(t, dtype=torch.long), torch.arange(h),
                                        torch.arange(w), indexing="ij")
            grid = torch.stack([tt, hh, ww]).reshape(3, -1) + next_pos  # [3, t*h*w]
            pieces.append(grid)
            next_pos = int(grid.max()) + 1
            start = image_at + grid.shape[1]
        if pieces:
            row_positions = torch.cat(pieces, dim=1)  # [3, valid tokens]
            if row_positions.shape[1] != len(ids):
                raise ValueError(f"row {row}: image tokens do not match image_grid_thw")
            positions[:, row, valid] = row_positions
    return positions


# --- the module tree --------------------------------------------------------------------------


@dataclass
class JinaEmbeddingsV4Output:
    last_hidden_state: torch.Tensor  # [B, L, D] final RMSNorm output
    single_vec_emb: torch.Tensor  # [B, D] float32, pooled, L2-normalised
    multi_vec_emb: torch.Tensor  # [B, L, P] float32, per token, L2-normalised, padding zero


class JinaEmbeddingsV4Model(nn.Module):
    """Qwen2.5-VL backbone + tied lm_head + multi-vector projector (+ task adapters)."""

    def __init__(self, config: JinaEmbeddingsV4Config):
        super().__init__()
        self.config = config
        backbone = config.backbone
        self.model = Qwen2_5_VLModel(backbone)
        self.lm_head = nn.Linear(config.hidden_size, backbone.text_config.vocab_size, bias=False)
        if backbone.tie_word_embeddings:
            self.lm_head.weight = self.model.language_model.embed_tokens.weight
        self.multi_vector_projector = nn.Linear(config.hidden_size,
                                                config.multi_vector_projector_dim)
        self.task_selector = TaskSelector()
        self.adapter_tasks: tuple[str, ...] = ()

    # -- loading -------------------------------------------------------------------------------

    def load_adapters(self, state: dict[str, torch.Tensor], adapter_config: dict) -> None:
        """Wrap every target Linear with the per-task LoRA deltas of a PEFT adapter file.

        Strict: the file must hold exactly A and B of every target for every task of the
        config, with the shapes r x in and out x r.
        """
        if self.adapter_tasks:
            raise RuntimeError("adapters are already loaded")
        state = normalize_adapter_keys(state)
        tasks, rank = self.config.task_names, adapter_config["r"]
        targets = adapter_targets(self, adapter_config)
        expected = adapter_key_shapes(targets, tasks, rank)
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = [f"{k}: {tuple(state[k].shape)} != {v}" for k, v in expected.items()
                 if k in state and tuple(state[k].shape) != v]
        if missing or unexpected or wrong:
            raise ValueError(
                f"adapter file does not match the model: missing {missing[:3]} ({len(missing)}), "
                f"unexpected {unexpected[:3]} ({len(unexpected)}), shapes {wrong[:3]}"
            )
        scaling = lora_scaling(adapter_config)
        for name, linear in targets.items():
            dtype = linear.weight.dtype
            a = torch.stack([state[f"base_model.model.{name}.lora_A.{t}.weight"] for t in tasks])
            b = torch.stack([state[f"base_model.model.{name}.lora_B.{t}.weight"] for t in tasks])
            self.set_submodule(name, MultiTaskLoRALinear(
                linear, a.to(dtype), b.to(dtype), scaling, self.task_selector))
        self.adapter_tasks = tasks

    def materialize_rotary(self) -> None:
        """Recompute the rotary inverse frequencies in float32 on the CPU.

        They are non-persistent buffers: a tree built on the meta device has none, and a
        dtype cast would round them; call this after loading and casting.
        """
        language_model, visual = self.model.language_model, self.model.visual
        language_model.rotary_emb = Qwen2_5_VLRotaryEmbedding(config=language_model.config)
        visual.rotary_pos_emb = Qwen2_5_VLVisionRotaryEmbedding(visual.config)

    # -- forward -------------------------------------------------------------------------------

    def task_index(self, task: str | None) -> int | None:
        """Adapter index of `task` (an adapter name); None runs the plain backbone."""
        if task is None:
            return None
        if task not in self.adapter_tasks:
            loaded = ", ".join(self.adapter_tasks) or "none loaded"
            raise ValueError(f"unknown task adapter {task!r} ({loaded})")
        return self.adapter_tasks.index(task)

    def position_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     image_grid_thw: torch.Tensor | None) -> torch.Tensor:
        merge = self.config.backbone.vision_config.spatial_merge_size
        return rope_position_ids(input_ids, attention_mask, image_grid_thw,
                                 self.config.backbone.image_token_id, merge)

    def pool(self, hidden: torch.Tensor, input_ids: torch.Tensor,
             attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean per row [B, D]: over <|vision_start|>..<|vision_end|> inclusive when the row
        holds an image (attention mask unused, as in the reference), else over valid tokens."""
        backbone = self.config.backbone
        is_start = input_ids == backbone.vision_start_token_id  # [B, L]
        is_end = (input_ids == backbone.vision_end_token_id).long()
        after_end = (is_end.cumsum(1) - is_end) > 0  # strictly after the first end
        span = (is_start.cumsum(1) > 0) & ~after_end
        weights = torch.where(is_start.any(1, keepdim=True), span, attention_mask.bool())
        weights = weights.to(hidden.dtype).unsqueeze(-1)  # [B, L, 1]
        return (hidden * weights).sum(1) / weights.sum(1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                pixel_values: torch.Tensor | None = None,
                image_grid_thw: torch.Tensor | None = None,
                task: str | None = None) -> JinaEmbeddingsV4Output:
        """input_ids/attention_mask [B, L]; pixel_values [patches, C*T*P*P] of all images in
        token order, image_grid_thw [images, 3]; `task` an adapter name or None (no adapter)."""
        position_ids = self.position_ids(input_ids, attention_mask, image_grid_thw)
        with self.task_selector.use(self.task_index(task)):
            hidden = self.model(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                pixel_values=pixel_values, image_grid_thw=image_grid_thw, use_cache=False,
            ).last_hidden_state  # [B, L, D]
            multi = self.multi_vector_projector(hidden)  # [B, L, P]
        single = F.normalize(self.pool(hidden.float(), input_ids, attention_mask), dim=-1)
        multi = F.normalize(multi.float(), dim=-1) * attention_mask.unsqueeze(-1).float()
        return JinaEmbeddingsV4Output(hidden, single, multi)


def build_jina_v4(config: dict) -> JinaEmbeddingsV4Model:
    """The base module tree (no task adapters) for a released config.json; works on meta.

    Its state_dict has the in-memory names (`model.language_model.*`, `model.visual.*`, tied
    `lm_head.weight`, `multi_vector_projector.*`); `qwen_vl_module_key` maps the
    checkpoint's legacy names onto them.
    """
    return JinaEmbeddingsV4Model(JinaEmbeddingsV4Config.from_dict(config))


def load_jina_v4_module(directory: Path, dtype: torch.dtype = torch.float32
                        ) -> JinaEmbeddingsV4Model:
    """Built on meta, base weights and adapters loaded strictly, cast to `dtype`, eval mode."""
    model = FAMILY.load_module(directory, dtype)
    adapters = directory / "adapters"
    if not (adapters / "adapter_model.safetensors").exists():
        raise FileNotFoundError(f"{directory} has no adapters/adapter_model.safetensors")
    model.load_adapters(load_file(adapters / "adapter_model.safetensors"),
                        json.loads((adapters / "adapter_config.json").read_text()))
    model.to(dtype)
    model.materialize_rotary()
    return model.eval()


# --- image preprocessing ----------------------------------------------------------------------


def image_processor_from(directory: Path | None = None) -> Qwen2VLImageProcessorPil:
    """Qwen2-VL image processing (smart resize to multiples of 28 within the pixel bounds,
    CLIP normalisation, 2-frame patches grouped by 2x2 merge blocks), configured from
    preprocessor_config.json when present."""
    settings: dict = {}
    path = directory / "preprocessor_config.json" if directory is not None else None
    if path is not None and path.exists():
        found = json.loads(path.read_text())
        settings = {k: v for k, v in found.items() if k in _PROCESSOR_FIELDS}
    if "size" not in settings:
        settings = {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, **settings}
    return Qwen2VLImageProcessorPil(**settings)


# --- the Embedder -----------------------------------------------------------------------------


@dataclass
class JinaV4Job(EncodeJob):
    """An EncodeJob that may carry one image: its patches and (t, h, w) patch grid."""

    pixel_values: torch.Tensor | None = None  # [patches, C*T*P*P]
    grid_thw: tuple[int, int, int] | None = None


class JinaEmbeddingsV4:
    """Text and image embeddings with task adapters, Matryoshka and multi-vector output."""

    def __init__(self, model: JinaEmbeddingsV4Model, tokenizer, image_processor,
                 name: str = "", max_tokens: int | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.name = name or FAMILY.name
        config = model.config
        if max_tokens is None:
            positions = config.backbone.text_config.max_position_embeddings
            max_tokens = min(MAX_TEXT_TOKENS, positions)
        self.pad_id = tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = config.backbone.text_config.bos_token_id or 0
        self.image_head, self.image_tail = self._image_prompt_ids()
        self.api_tasks = config.task_table()
        self.capabilities = FAMILY.capabilities(
            tasks=tuple(self.api_tasks),
            dim=config.hidden_size,
            min_dim=min(config.matryoshka_dims),
            matryoshka_dims=config.matryoshka_dims,
            max_tokens=max_tokens,
            multivector=True,
            multivector_dim=config.multi_vector_projector_dim,
            pooling="mean",
            extras={"architecture": ARCHITECTURE, "default_task": DEFAULT_TASK},
        )

    @classmethod
    def from_pretrained(cls, directory: str | Path, name: str = "",
                        dtype: torch.dtype = torch.float32) -> JinaEmbeddingsV4:
        """Load config.json, base weights, adapters/, tokenizer and image processor."""
        directory = Path(directory)
        model = load_jina_v4_module(directory, dtype)
        tokenizer = AutoTokenizer.from_pretrained(directory)
        return cls(model, tokenizer, image_processor_from(directory), name or directory.name)

    def _image_prompt_ids(self) -> tuple[list[int], list[int]]:
        """Token ids before and after the <|image_pad|> run of the image prompt."""
        backbone = self.model.config.backbone
        head = self.tokenizer(IMAGE_PROMPT_HEAD, add_special_tokens=False)["input_ids"]
        tail = self.tokenizer(IMAGE_PROMPT_TAIL, add_special_tokens=False)["input_ids"]
        if head[-1:] != [backbone.vision_start_token_id] or \
                tail[:1] != [backbone.vision_end_token_id]:
            raise ValueError("the tokenizer's vision tokens do not match the config's ids")
        return head, tail

    # -- preparing jobs ------------------------------------------------------------------------

    def resolve_task(self, task: str | None) -> str:
        self.capabilities.check_task(task)
        return task or DEFAULT_TASK

    def prepare(self, items: Sequence[Input], task: str | None = None,
                truncate: bool = True, late_chunking: bool = False,
                multivector: bool = False) -> list[EncodeJob]:
        """Validate, tokenise and preprocess items into forward-pass jobs (one per item).

        Texts get the task's prompt prefix ("Query: " / "Passage: "); images the reference's
        fixed prompt with one <|image_pad|> per merged patch. Without `truncate`, a text over
        the context raises InputTooLarge.
        """
        task = self.resolve_task(task)
        self.capabilities.check_multivector(multivector)
        if late_chunking:
            raise InvalidInput(f"model {self.name!r} does not support late chunking yet",
                               ("late_chunking",))
        return jobs_per_input(
            items, lambda text, i: self._text_job(text, i, task, truncate, multivector),
            lambda image: self._image_job(image, task, multivector))

    def _text_job(self, text: str, index: int, task: str, truncate: bool,
                  multivector: bool) -> JinaV4Job:
        limit = self.capabilities.max_tokens
        (ids,) = tokenize(self.tokenizer, [text], self.api_tasks[task][1], limit, truncate,
                          self.name, index)
        return JinaV4Job(ids, task, multivector=multivector)

    def _image_job(self, image: Image.Image, task: str, multivector: bool) -> JinaV4Job:
        out = self.image_processor(images=[image], return_tensors="pt")
        t, h, w = (int(v) for v in out["image_grid_thw"][0])
        merge = self.model.config.backbone.vision_config.spatial_merge_size
        n_image_tokens = t * h * w // merge**2
        ids = (self.image_head + [self.model.config.backbone.image_token_id] * n_image_tokens
               + self.image_tail)
        return JinaV4Job(ids, task, multivector=multivector,
                         pixel_values=out["pixel_values"], grid_thw=(t, h, w))

    # -- forward -------------------------------------------------------------------------------

    def embed_jobs(self, jobs: Sequence[EncodeJob]) -> list[np.ndarray]:
        """Forward passes over `jobs` (one per adapter among them): per job the normalised
        single vector [dim], or with `multivector` the valid tokens' vectors [T, P] (with
        `with_pooled`, the pair of both)."""
        outputs: list[np.ndarray] = [np.empty(0)] * len(jobs)
        by_adapter: dict[str, list[int]] = {}
        for i, job in enumerate(jobs):
            by_adapter.setdefault(self.api_tasks[self.resolve_task(job.task)][0], []).append(i)
        for adapter, members in by_adapter.items():
            batch = [jobs[i] for i in members]
            for i, out in zip(members, self._embed_batch(batch, adapter), strict=True):
                outputs[i] = out
        return outputs

    @torch.inference_mode()
    def _embed_batch(self, jobs: Sequence[EncodeJob], adapter: str) -> list[np.ndarray]:
        lengths = [len(job.ids) for job in jobs]
        ids, mask = pad_batch([job.ids for job in jobs], self.pad_id)  # [B, L], right padding
        images = [job for job in jobs if getattr(job, "pixel_values", None) is not None]
        pixel_values = torch.cat([job.pixel_values for job in images]) if images else None
        grid = torch.tensor([job.grid_thw for job in images]) if images else None
        out = self.model(ids, mask, pixel_values, grid, task=adapter)
        results = []
        for row, job in enumerate(jobs):
            pooled = out.single_vec_emb[row].float().numpy()
            tokens = out.multi_vec_emb[row, : lengths[row]].float().numpy()
            if job.multivector:
                results.append((pooled, tokens) if job.with_pooled else tokens)
            else:
                results.append(pooled)
        return results

    # -- Python API ----------------------------------------------------------------------------

    def encode(self, items: Sequence[Input] | Input, task: str | None = None,
               truncate_dim: int | None = None, multivector: bool = False,
               normalize: bool = True, batch_size: int = 8) -> np.ndarray | list[np.ndarray]:
        """Embed texts and images (mixed freely).

        Single vectors: [N, dim] float32, truncated to `truncate_dim` (`min_dim`..`dim`, as
        HTTP's `dimensions`) and re-normalised. Multi-vector: one [T_i, multivector_dim] array
        per input (every valid token, prompt tokens included); `truncate_dim` does not apply.
        """
        return encode_inputs(self, items, task, truncate_dim, multivector, normalize, False,
                             batch_size)
