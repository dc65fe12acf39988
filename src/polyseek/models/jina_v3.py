"""jina-embeddings-v3: XLM-RoBERTa with rotary positions and five task LoRA adapters.

A published checkpoint directory holds `config.json` (the XLMRobertaFlashConfig: no
distinguishing `model_type`; recognised by `position_embedding_type: "rotary"` together with
`lora_adaptations`), `model.safetensors` with the LoRA wrapper's names (`roberta.*`), and the
XLM-R tokenizer files.

Every Linear and Embedding carries one low-rank delta per task, stored as
`<module>.parametrizations.weight.original` (base) and `...weight.0.lora_{A,B}` [tasks, ...]:
Linear `W + (B_t @ A_t) * alpha/r`, Embedding `E + (A_t @ B_t) * alpha/r` (A/B swapped).
The task is chosen per row of a batch (`adapter_mask` [B] of task ids) or not at all (None).

Blocks are post-norm: `h = norm1(h + out_proj(attn(Wqkv h)))`, `h = norm2(h + fc2(gelu(fc1 h)))`,
with half-split rotary on q and k and a -10000 additive key padding mask. Embeddings follow the
reference `encode()`: task prefix before tokenising, masked mean pooling, Matryoshka truncation,
L2 normalisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoTokenizer

from polyseek.models.base import EncodeJob, pad_batch
from polyseek.models.families import family_named
from polyseek.models.text_encoder import TextEncoder

FAMILY = family_named("jina-embeddings-v3")
ARCHITECTURE = "XLMRobertaLoRA"
TASKS = ("retrieval.query", "retrieval.passage", "separation", "classification", "text-matching")
# The reference's task instructions, used when config.json does not carry `task_instructions`.
DEFAULT_INSTRUCTIONS = {
    "retrieval.query": "Represent the query for retrieving evidence documents: ",
    "retrieval.passage": "Represent the document for retrieval: ",
}
MASK_FILL = -10000.0  # the reference's additive key padding mask


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class JinaV3Config:
    """The fields of an XLMRobertaFlashConfig that shape the module tree and its outputs."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    tasks: tuple[str, ...]
    lora_rank: int = 4
    lora_alpha: float = 1.0
    rotary_emb_base: float = 10000.0
    layer_norm_eps: float = 1e-5
    type_vocab_size: int = 1
    pad_token_id: int = 1
    max_position_embeddings: int = 8194
    matryoshka_dims: tuple[int, ...] = ()
    instructions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, config: dict) -> JinaV3Config:
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"jina-embeddings-v3: unsupported hidden_act {config['hidden_act']!r}")
        tasks = tuple(config.get("lora_adaptations") or ())
        instructions = config.get("task_instructions") or {
            t: DEFAULT_INSTRUCTIONS.get(t, "") for t in tasks}
        return cls(
            vocab_size=config["vocab_size"],
            hidden_size=config["hidden_size"],
            num_hidden_layers=config["num_hidden_layers"],
            num_attention_heads=config["num_attention_heads"],
            intermediate_size=config["intermediate_size"],
            tasks=tasks,
            lora_rank=config.get("lora_rank", 4),
            lora_alpha=config.get("lora_alpha", 1),
            rotary_emb_base=config.get("rotary_emb_base", 10000.0),
            layer_norm_eps=config.get("layer_norm_eps", 1e-5),
            type_vocab_size=config.get("type_vocab_size", 1),
            pad_token_id=config.get("pad_token_id", 1),
            max_position_embeddings=config.get("max_position_embeddings", 8194),
            matryoshka_dims=tuple(config.get("matryoshka_dimensions") or (config["hidden_size"],)),
            instructions=dict(instructions),
        )

    @property
    def lora_scaling(self) -> float:
        return self.lora_alpha / self.lora_rank

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def max_tokens(self) -> int:
        """Context length: positions minus the RoBERTa offset (pad id + 1), 8192 released."""
        return self.max_position_embeddings - self.pad_token_id - 1


# --- task LoRA --------------------------------------------------------------------------------


class LoRAParams(nn.Module):
    """The task deltas of one weight: `lora_A` and `lora_B`, each [tasks, ...]."""

    def __init__(self, a_shape: tuple[int, ...], b_shape: tuple[int, ...]):
        super().__init__()
        self.lora_A = nn.Parameter(torch.zeros(a_shape))
        self.lora_B = nn.Parameter(torch.zeros(b_shape))


class ParametrizedWeight(nn.ModuleList):
    """`parametrizations.weight`: the base tensor as `original`, the deltas as child `0`."""

    def __init__(self, shape: tuple[int, int], lora: LoRAParams):
        super().__init__([lora])
        self.original = nn.Parameter(torch.empty(shape))


class LoRALinear(nn.Module):
    """y = x W^T + b + scaling * (x A_t^T) B_t^T, with t chosen per batch row (or no delta).

    lora_A [tasks, r, in], lora_B [tasks, out, r].
    """

    def __init__(self, in_features: int, out_features: int, tasks: int, rank: int,
                 scaling: float, bias: bool = True):
        super().__init__()
        lora = LoRAParams((tasks, rank, in_features), (tasks, out_features, rank))
        self.parametrizations = nn.ModuleDict(
            {"weight": ParametrizedWeight((out_features, in_features), lora)})
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.scaling = scaling

    def forward(self, x: torch.Tensor, adapter_mask: torch.Tensor | None) -> torch.Tensor:
        """x [B, ..., in], adapter_mask [B] task ids or None -> [B, ..., out]."""
        weight = self.parametrizations["weight"]
        out = F.linear(x, weight.original, self.bias)
        if adapter_mask is None:
            return out
        a, b = weight[0].lora_A[adapter_mask], weight[0].lora_B[adapter_mask]  # [B, r, in/out]
        flat = x.reshape(x.shape[0], -1, x.shape[-1])  # [B, N, in]
        delta = flat @ a.transpose(1, 2) @ b.transpose(1, 2)  # [B, N, out]
        return out + delta.reshape(out.shape) * self.scaling


class LoRAEmbedding(nn.Module):
    """E[ids] + scaling * A_t[ids] @ B_t per batch row.

    lora_A [tasks, vocab, r], lora_B [tasks, r, H] (roles swapped relative to Linear).
    """

    def __init__(self, num: int, dim: int, tasks: int, rank: int, scaling: float):
        super().__init__()
        lora = LoRAParams((tasks, num, rank), (tasks, rank, dim))
        self.parametrizations = nn.ModuleDict({"weight": ParametrizedWeight((num, dim), lora)})
        self.scaling = scaling

    def forward(self, ids: torch.Tensor, adapter_mask: torch.Tensor | None) -> torch.Tensor:
        """ids [B, L] -> [B, L, H]."""
        weight = self.parametrizations["weight"]
        out = F.embedding(ids, weight.original)
        if adapter_mask is None:
            return out
        lora_a, lora_b = weight[0].lora_A, weight[0].lora_B
        a = lora_a[adapter_mask.unsqueeze(1), ids]  # [B, L, r]
        return out + (a @ lora_b[adapter_mask]) * self.scaling  # [B, L, H]


# --- the encoder ------------------------------------------------------------------------------


def rotate_half_split(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """GPT-NeoX rotary: halves (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin).

    x [B, heads, L, d], cos/sin [L, d/2].
    """
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class RotaryEmbedding(nn.Module):
    """Half-split rotary tables over the full head dim, built in float32 (non-persistent)."""

    def __init__(self, head_dim: int, base: float):
        super().__init__()
        self.head_dim, self.base = head_dim, base

    def inv_freq(self) -> torch.Tensor:
        """[d/2]: 1 / base^(2i/d)."""
        exponent = torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim
        return 1.0 / (self.base ** exponent)

    def forward(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [L, d/2] for positions 0..L-1."""
        angles = torch.outer(torch.arange(length, dtype=torch.float32), self.inv_freq())
        return angles.cos().to(device), angles.sin().to(device)


class SelfAttention(nn.Module):
    def __init__(self, config: JinaV3Config):
        super().__init__()
        h, lora = config.hidden_size, (len(config.tasks), config.lora_rank, config.lora_scaling)
        self.heads = config.num_attention_heads
        self.Wqkv = LoRALinear(h, 3 * h, *lora)
        self.out_proj = LoRALinear(h, h, *lora)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, rotary: tuple[torch.Tensor, ...],
                adapter_mask: torch.Tensor | None) -> torch.Tensor:
        """x [B, L, H], bias [B, 1, 1, L] additive key mask -> [B, L, H]."""
        b, n, _ = x.shape
        qkv = self.Wqkv(x, adapter_mask).view(b, n, 3, self.heads, -1)  # [B, L, 3, h, d]
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, h, L, d]
        cos, sin = (t.to(x.dtype) for t in rotary)
        q, k = rotate_half_split(q, cos, sin), rotate_half_split(k, cos, sin)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias  # [B, h, L, L]
        context = scores.softmax(-1) @ v  # [B, h, L, d]
        return self.out_proj(context.transpose(1, 2).reshape(b, n, -1), adapter_mask)


class MLP(nn.Module):
    def __init__(self, config: JinaV3Config):
        super().__init__()
        lora = (len(config.tasks), config.lora_rank, config.lora_scaling)
        self.fc1 = LoRALinear(config.hidden_size, config.intermediate_size, *lora)
        self.fc2 = LoRALinear(config.intermediate_size, config.hidden_size, *lora)

    def forward(self, x: torch.Tensor, adapter_mask: torch.Tensor | None) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x, adapter_mask)), adapter_mask)


class Block(nn.Module):
    """Post-norm transformer block."""

    def __init__(self, config: JinaV3Config):
        super().__init__()
        self.mixer = SelfAttention(config)
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MLP(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, h: torch.Tensor, bias: torch.Tensor, rotary: tuple[torch.Tensor, ...],
                adapter_mask: torch.Tensor | None) -> torch.Tensor:
        h = self.norm1(h + self.mixer(h, bias, rotary, adapter_mask))
        return self.norm2(h + self.mlp(h, adapter_mask))


class Embeddings(nn.Module):
    def __init__(self, config: JinaV3Config):
        super().__init__()
        lora = (len(config.tasks), config.lora_rank, config.lora_scaling)
        self.word_embeddings = LoRAEmbedding(config.vocab_size, config.hidden_size, *lora)
        self.token_type_embeddings = LoRAEmbedding(config.type_vocab_size, config.hidden_size,
                                                   *lora)

    def forward(self, ids: torch.Tensor, adapter_mask: torch.Tensor | None) -> torch.Tensor:
        """ids [B, L] -> [B, L, H]; token type 0 everywhere, no absolute positions."""
        types = torch.zeros_like(ids)
        return self.word_embeddings(ids, adapter_mask) + self.token_type_embeddings(
            types, adapter_mask)


class Encoder(nn.Module):
    def __init__(self, config: JinaV3Config):
        super().__init__()
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))


class Pooler(nn.Module):
    """tanh(dense(h[:, 0])): in the checkpoint, unused by `encode()`."""

    def __init__(self, config: JinaV3Config):
        super().__init__()
        self.dense = LoRALinear(config.hidden_size, config.hidden_size, len(config.tasks),
                                config.lora_rank, config.lora_scaling)

    def forward(self, h: torch.Tensor, adapter_mask: torch.Tensor | None) -> torch.Tensor:
        return torch.tanh(self.dense(h[:, 0], adapter_mask))


@dataclass
class JinaV3Output:
    last_hidden_state: torch.Tensor  # [B, L, H]
    hidden_states: tuple[torch.Tensor, ...]  # emb_ln output, then every layer's output
    pooler_output: torch.Tensor | None  # [B, H]


class XLMRobertaRotary(nn.Module):
    """The `roberta` module: embeddings, emb_ln, post-norm rotary layers, optional pooler."""

    def __init__(self, config: JinaV3Config, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.emb_ln = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config) if add_pooling_layer else None
        self.rotary = RotaryEmbedding(config.head_dim, config.rotary_emb_base)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                adapter_mask: torch.Tensor | None = None) -> JinaV3Output:
        """input_ids/attention_mask [B, L] (right padded); adapter_mask [B] task ids or None."""
        h = self.emb_ln(self.embeddings(input_ids, adapter_mask))  # [B, L, H]
        bias = (1.0 - attention_mask[:, None, None, :].to(h.dtype)) * MASK_FILL  # [B, 1, 1, L]
        rotary = self.rotary(input_ids.shape[1], h.device)
        states = [h]
        for layer in self.encoder.layers:
            h = layer(h, bias, rotary, adapter_mask)
            states.append(h)
        pooled = self.pooler(h, adapter_mask) if self.pooler is not None else None
        return JinaV3Output(h, tuple(states), pooled)


class XLMRobertaLoRA(nn.Module):
    """The checkpoint's top level: `roberta.*`, with task lookup by name."""

    def __init__(self, config: JinaV3Config, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.roberta = XLMRobertaRotary(config, add_pooling_layer)

    def adapter_mask(self, tasks: Sequence[str | None] | str | None,
                     batch: int) -> torch.Tensor | None:
        """Task names (one, or one per row) -> [B] int task ids; None -> no adapter.

        Rows must either all name a task or all be None.
        """
        if tasks is None or isinstance(tasks, str):
            tasks = [tasks] * batch
        if all(t is None for t in tasks):
            return None
        unknown = [t for t in tasks if t not in self.config.tasks]
        if unknown:
            known = ", ".join(self.config.tasks)
            raise ValueError(f"unknown task adapter {unknown[0]!r} ({known})")
        return torch.tensor([self.config.tasks.index(t) for t in tasks], dtype=torch.long)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                task: Sequence[str | None] | str | None = None) -> JinaV3Output:
        return self.roberta(input_ids, attention_mask,
                            self.adapter_mask(task, input_ids.shape[0]))


def build_jina_v3(config: dict) -> XLMRobertaLoRA:
    """The module tree for a released config.json (pooler included); works on meta."""
    return XLMRobertaLoRA(JinaV3Config.from_dict(config))


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Masked mean [B, H] of hidden [B, L, H] in float32 (denominator clamped at 1e-9)."""
    mask = attention_mask.unsqueeze(-1).float()
    return (hidden.float() * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


# --- the Embedder -----------------------------------------------------------------------------


class JinaEmbeddingsV3(TextEncoder):
    """Text embeddings with per-call task adapters, Matryoshka truncation and late chunking.

    The task's instruction goes before each text (once per window with late chunking), and
    the same task selects the LoRA adapter of every row."""

    def __init__(self, model: XLMRobertaLoRA, tokenizer, name: str = "",
                 max_tokens: int | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or FAMILY.name
        config = model.config
        self.pad_id = config.pad_token_id
        self.prompts = config.instructions
        self.capabilities = FAMILY.capabilities(
            tasks=config.tasks,
            dim=config.hidden_size,
            min_dim=min(config.matryoshka_dims),
            matryoshka_dims=config.matryoshka_dims,
            max_tokens=max_tokens or config.max_tokens,
            reranker="bi-encoder",
            extras={"architecture": ARCHITECTURE},
        )

    @classmethod
    def from_pretrained(cls, directory: str | Path, name: str = "",
                        dtype: torch.dtype = torch.float32) -> JinaEmbeddingsV3:
        """Load config.json, model.safetensors (or shards) and the tokenizer."""
        directory = Path(directory)
        model = FAMILY.load_module(directory, dtype)
        return cls(model, AutoTokenizer.from_pretrained(directory), name or directory.name)

    @torch.inference_mode()
    def hidden_states(self, jobs: Sequence[EncodeJob]) -> list[torch.Tensor]:
        """Last hidden states per job, [L_i, H]; each row through its task's adapter (rows
        without a task and rows with one run as two passes)."""
        if any(job.task is None for job in jobs) and any(job.task for job in jobs):
            plain = [i for i, job in enumerate(jobs) if job.task is None]
            other = [i for i, job in enumerate(jobs) if job.task is not None]
            states = dict(zip(plain, self.hidden_states([jobs[i] for i in plain]), strict=True))
            states.update(zip(other, self.hidden_states([jobs[i] for i in other]), strict=True))
            return [states[i] for i in range(len(jobs))]
        ids, mask = pad_batch([job.ids for job in jobs], self.pad_id)  # [B, L]
        hidden = self.model(ids, mask, [job.task for job in jobs]).last_hidden_state
        return [hidden[row, : job.n_tokens] for row, job in enumerate(jobs)]
