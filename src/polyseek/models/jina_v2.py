"""jina-embeddings-v2 (JinaBERT): BERT with ALiBi attention and a GEGLU feed-forward.

Mirrors the module tree of jina-bert-implementation's `JinaBertModel`, so the published
checkpoint loads strictly under its own names (`embeddings.*`, `encoder.layer.N.*`,
`pooler.*`). Differences from BERT:

- no position embedding: every attention score gets the ALiBi bias -slope_h * |i - j|
  (symmetric, the same in every layer), so sequences longer than
  `max_position_embeddings` work: the bias is simply built for the longer length;
- the feed-forward is `wo(GELU(gate) * value)` with `gate, value = gated_layers(h)`;
- sentence embeddings are the mean of the last hidden states over real tokens.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoTokenizer

from polyseek.models.base import EncodeJob, pad_batch
from polyseek.models.families import family_named
from polyseek.models.text_encoder import MIN_TRUNCATED_DIM, TextEncoder

FAMILY = family_named("jina-embeddings-v2")
GLU_ACTIVATIONS = {"geglu": nn.GELU, "reglu": nn.ReLU}  # the reference's gated feed-forwards


@dataclass
class JinaBertConfig:
    """The fields of a released JinaBERT config.json that shape the module or its outputs."""

    vocab_size: int = 30528
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    layer_norm_eps: float = 1e-12
    max_position_embeddings: int = 8192  # ALiBi: the trained/declared length, not a limit
    model_max_length: int | None = None
    type_vocab_size: int = 2
    pad_token_id: int = 0
    position_embedding_type: str = "alibi"
    feed_forward_type: str = "geglu"
    emb_pooler: str | None = "mean"

    @classmethod
    def from_dict(cls, config: dict) -> JinaBertConfig:
        known = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in config.items() if k in known})
        if out.position_embedding_type != "alibi":
            raise ValueError(f"JinaBERT needs position_embedding_type 'alibi', "
                             f"got {out.position_embedding_type!r}")
        if out.feed_forward_type not in GLU_ACTIVATIONS:
            raise ValueError(f"unsupported feed_forward_type {out.feed_forward_type!r}; "
                             f"supported: {', '.join(GLU_ACTIVATIONS)}")
        if out.hidden_size % out.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        return out

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


# -- ALiBi ------------------------------------------------------------------------------------


def alibi_slopes(n_heads: int) -> list[float]:
    """Per-head slopes: (2^(-8/n))^(h+1) for n a power of two; otherwise those of the lower
    power of two followed by the even-indexed slopes of twice that, cut to n heads."""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (h + 1) for h in range(n)]

    if math.log2(n_heads).is_integer():
        return power_of_2(n_heads)
    lower = 2 ** math.floor(math.log2(n_heads))
    return power_of_2(lower) + power_of_2(2 * lower)[0::2][: n_heads - lower]


def alibi_bias(n_heads: int, length: int, device: torch.device | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The symmetric ALiBi bias A[h, i, j] = -slope_h * |i - j|: [heads, L, L].

    Built for the actual length of each forward, so any length works (the reference rebuilds
    its table when an input outgrows it; the formula is the same).
    """
    positions = torch.arange(length, device=device)
    distance = (positions[None, :] - positions[:, None]).abs()  # [L, L]
    slopes = torch.tensor(alibi_slopes(n_heads), device=device, dtype=torch.float32)
    return (-slopes[:, None, None] * distance[None]).to(dtype)  # [heads, L, L]


# -- modules (names mirror the checkpoint) -----------------------------------------------------


class JinaBertEmbeddings(nn.Module):
    """Word + token-type embeddings, then LayerNorm; no position embedding (ALiBi)."""

    def __init__(self, config: JinaBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size,
                                            padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        # [B, L] -> [B, L, H]
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.LayerNorm(embeddings)


class JinaBertSelfAttention(nn.Module):
    """Multi-head attention whose mask carries both padding and the ALiBi bias."""

    def __init__(self, config: JinaBertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape  # [B, L, H] -> [B, heads, L, head_dim]
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        # hidden [B, L, H], bias [B, heads, L, L] -> context [B, L, H]
        q, k, v = (self.split_heads(proj(hidden)) for proj in (self.query, self.key, self.value))
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return context.transpose(1, 2).flatten(2)


class JinaBertSelfOutput(nn.Module):
    """Post-norm residual: LayerNorm(dense(context) + input)."""

    def __init__(self, config: JinaBertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, context: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(context) + residual)


class JinaBertAttention(nn.Module):
    def __init__(self, config: JinaBertConfig):
        super().__init__()
        self.self = JinaBertSelfAttention(config)
        self.output = JinaBertSelfOutput(config)

    def forward(self, hidden: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(hidden, bias), hidden)


class JinaBertGLUMLP(nn.Module):
    """Gated feed-forward: LayerNorm(wo(act(gate) * value) + input), gate = first half."""

    def __init__(self, config: JinaBertConfig):
        super().__init__()
        self.intermediate_size = config.intermediate_size
        self.gated_layers = nn.Linear(config.hidden_size, 2 * config.intermediate_size,
                                      bias=False)
        self.act = GLU_ACTIVATIONS[config.feed_forward_type]()
        self.wo = nn.Linear(config.intermediate_size, config.hidden_size)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        gate, value = self.gated_layers(hidden).split(self.intermediate_size, dim=-1)  # [B,L,I]
        return self.layernorm(self.wo(self.act(gate) * value) + hidden)


class JinaBertLayer(nn.Module):
    def __init__(self, config: JinaBertConfig):
        super().__init__()
        self.attention = JinaBertAttention(config)
        self.mlp = JinaBertGLUMLP(config)

    def forward(self, hidden: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attention(hidden, bias))


class JinaBertEncoder(nn.Module):
    def __init__(self, config: JinaBertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.layer = nn.ModuleList(JinaBertLayer(config) for _ in range(config.num_hidden_layers))

    def attention_bias(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Padding mask (0 / dtype-min per key) plus ALiBi: [B, L] -> [B, heads, L, L]."""
        length = attention_mask.shape[1]
        padding = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        return padding + alibi_bias(self.num_heads, length, attention_mask.device, dtype)[None]

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor
                ) -> tuple[torch.Tensor, ...]:
        """All hidden states: (embedding output, after layer 0, ..., after the last layer)."""
        bias = self.attention_bias(attention_mask, hidden.dtype)
        states = [hidden]
        for layer in self.layer:
            states.append(layer(states[-1], bias))
        return tuple(states)


class JinaBertPooler(nn.Module):
    """tanh(dense(h[:, 0])): kept for checkpoint fidelity; embeddings use mean pooling."""

    def __init__(self, config: JinaBertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


@dataclass
class JinaBertOutput:
    last_hidden_state: torch.Tensor  # [B, L, H]
    pooler_output: torch.Tensor | None  # [B, H]
    hidden_states: tuple[torch.Tensor, ...] | None = None  # (layers + 1) x [B, L, H]


class JinaBertModel(nn.Module):
    """The bare JinaBERT encoder with its (optional) pooler, as published."""

    def __init__(self, config: JinaBertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = JinaBertEmbeddings(config)
        self.encoder = JinaBertEncoder(config)
        self.pooler = JinaBertPooler(config) if add_pooling_layer else None

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> JinaBertOutput:
        """input_ids [B, L] (any L: ALiBi extrapolates) -> hidden states [B, L, H]."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        states = self.encoder(self.embeddings(input_ids, token_type_ids), attention_mask)
        last = states[-1]
        return JinaBertOutput(
            last_hidden_state=last,
            pooler_output=self.pooler(last) if self.pooler is not None else None,
            hidden_states=states if output_hidden_states else None,
        )


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: [B, L, H], [B, L] -> [B, H] (the reference's `encode`)."""
    mask = attention_mask[..., None].to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def build_jina_v2(config: dict) -> JinaBertModel:
    """The uninitialised module tree for a released config.json; works on the meta device.

    Its state_dict names and shapes are the published checkpoint's (186 tensors for base-en).
    """
    return JinaBertModel(JinaBertConfig.from_dict(config))


def read_max_tokens(directory: Path, config: JinaBertConfig) -> int:
    """The served context: sentence-transformers' max_seq_length, else the config's
    model_max_length, else max_position_embeddings (8192 for the released models)."""
    st_config = directory / "sentence_bert_config.json"
    if st_config.exists():
        limit = json.loads(st_config.read_text()).get("max_seq_length")
        if limit:
            return int(limit)
    return config.model_max_length or config.max_position_embeddings


# -- the Embedder ------------------------------------------------------------------------------


class JinaEmbeddingsV2(TextEncoder):
    """jina-embeddings-v2 as an Embedder: text only, no tasks, mean-pooled, late chunking."""

    def __init__(self, model: JinaBertModel, tokenizer, name: str, max_tokens: int,
                 source: str = ""):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.pad_id = tokenizer.pad_token_id or model.config.pad_token_id
        dim = model.config.hidden_size
        self.capabilities = FAMILY.capabilities(
            dim=dim,
            min_dim=min(MIN_TRUNCATED_DIM, dim),
            max_tokens=max_tokens,
            reranker="bi-encoder",
            extras={"architecture": "JinaBertModel", "source": source},
        )

    @classmethod
    def from_pretrained(cls, directory: str | Path, name: str = "",
                        dtype: torch.dtype = torch.float32,
                        max_tokens: int | None = None) -> JinaEmbeddingsV2:
        """Load config.json, the safetensors weights (strictly) and the tokenizer."""
        directory = Path(directory)
        model = FAMILY.load_module(directory, dtype)
        tokenizer = AutoTokenizer.from_pretrained(directory)
        limit = max_tokens or read_max_tokens(directory, model.config)
        return cls(model, tokenizer, name or directory.name, limit, str(directory))

    @torch.inference_mode()
    def hidden_states(self, jobs: Sequence[EncodeJob]) -> list[torch.Tensor]:
        """Last hidden states per job, [L_i, H], from one right-padded batch."""
        ids, mask = pad_batch([job.ids for job in jobs], self.pad_id)
        hidden = self.model(ids, attention_mask=mask).last_hidden_state  # [B, L, H]
        return [hidden[row, : job.n_tokens] for row, job in enumerate(jobs)]
