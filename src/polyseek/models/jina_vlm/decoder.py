"""jina-vlm decoder: a Qwen3-style causal LM over text and image-token embeddings.

Pre-norm blocks with RMSNorm, fused QKV (plus biases, always added), per-head q/k RMSNorm,
RoPE, grouped-query attention and a SwiGLU FFN. The embedding table is the base vocabulary
(`embedding`) followed by the additional image tokens (`new_embedding`); image features are
added onto the embeddings of the `<im_patch>` positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyseek.models.jina_vlm.config import BlockConfig, TextConfig
from polyseek.models.jina_vlm.layers import FeedForward, RMSNorm, make_norm


@dataclass
class KVCache:
    """Keys and values per layer, [B, kv_heads, T, d], plus the key padding mask [B, T]."""

    keys: list[Tensor] = field(default_factory=list)
    values: list[Tensor] = field(default_factory=list)
    mask: Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.mask is None else self.mask.shape[1]

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if layer == len(self.keys):
            self.keys.append(k)
            self.values.append(v)
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=2)
            self.values[layer] = torch.cat([self.values[layer], v], dim=2)
        return self.keys[layer], self.values[layer]


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        # computed on the CPU even under a meta-device context: it is not in the checkpoint
        steps = torch.arange(0, head_dim, 2, dtype=torch.float32, device="cpu")
        inv_freq = 1.0 / theta ** (steps / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """positions [B, T] -> cos, sin [B, 1, T, d] (angles duplicated as [f, f])."""
        angles = positions[..., None].float() * self.inv_freq  # [B, T, d/2]
        angles = torch.cat([angles, angles], dim=-1)[:, None]
        return angles.cos(), angles.sin()


def rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    return (x * cos + rotate_half(x) * sin).to(x.dtype)


class DecoderAttention(nn.Module):
    def __init__(self, hidden: int, block: BlockConfig):
        super().__init__()
        cfg = block.attention
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.qkv_w = nn.Linear(hidden, cfg.q_dim + 2 * cfg.kv_dim, bias=False)
        self.q_b = nn.Parameter(torch.zeros(cfg.q_dim))
        self.k_b = nn.Parameter(torch.zeros(cfg.kv_dim))
        self.v_b = nn.Parameter(torch.zeros(cfg.kv_dim))
        self.out = nn.Linear(cfg.q_dim, hidden, bias=False)
        self.q_lnorm = make_norm(cfg.head_dim, cfg.norm) if cfg.qk_norm else None
        self.k_lnorm = make_norm(cfg.head_dim, cfg.norm) if cfg.qk_norm else None
        self.split = [cfg.q_dim, cfg.kv_dim, cfg.kv_dim]

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], mask: Tensor,
                cache: KVCache | None, layer: int) -> Tensor:
        """x [B, T, D]; mask additive [B, 1, T, T_total] -> [B, T, D]."""
        b, t, _ = x.shape
        qkv = self.qkv_w(x) + torch.cat([self.q_b, self.k_b, self.v_b])
        q, k, v = qkv.split(self.split, dim=-1)
        q = q.view(b, t, self.n_heads, self.head_dim)
        k = k.view(b, t, self.n_kv_heads, self.head_dim)
        if self.q_lnorm is not None:
            q, k = self.q_lnorm(q), self.k_lnorm(k)
        q, k = (apply_rope(z.transpose(1, 2), *rope) for z in (q, k))  # [B, heads, T, d]
        v = v.view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        groups = self.n_heads // self.n_kv_heads  # query head h reads KV head h // groups
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(context.transpose(1, 2).reshape(b, t, -1))


class DecoderBlock(nn.Module):
    def __init__(self, hidden: int, block: BlockConfig):
        super().__init__()
        self.attn = DecoderAttention(hidden, block)
        self.ffn = FeedForward(hidden, hidden, block.ffn)
        self.attn_lnorm = make_norm(hidden, block.norm)
        self.ffn_lnorm = make_norm(hidden, block.norm)

    def forward(self, x: Tensor, rope, mask: Tensor, cache: KVCache | None, layer: int) -> Tensor:
        x = x + self.attn(self.attn_lnorm(x), rope, mask, cache, layer)
        return x + self.ffn(self.ffn_lnorm(x))


class ExtendedEmbedding(nn.Module):
    """Base vocabulary rows followed by the additional (image) token rows."""

    def __init__(self, config: TextConfig):
        super().__init__()
        d = config.hidden_size
        self.embedding = nn.Parameter(torch.zeros(config.embedding_size, d))
        self.new_embedding = nn.Parameter(torch.zeros(config.additional_vocab_size, d))

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, torch.cat([self.embedding, self.new_embedding]))


class LanguageModel(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.config = config
        hidden, head_dim = config.hidden_size, config.block.attention.head_dim
        self.embedding = ExtendedEmbedding(config)
        self.layers = nn.ModuleList(DecoderBlock(hidden, config.block)
                                    for _ in range(config.n_layers))
        self.ln_f = RMSNorm(hidden, config.block.norm.eps)
        self.rope = RotaryEmbedding(head_dim, config.rope_theta)

    def forward(self, embeds: Tensor, key_mask: Tensor, positions: Tensor,
                cache: KVCache | None = None) -> Tensor:
        """embeds [B, T, D]; key_mask [B, T_total] (cached + new); positions [B, T] -> [B, T, D].

        Attention is causal over the whole (cached + new) sequence and skips masked keys.
        """
        t, total = embeds.shape[1], key_mask.shape[1]
        causal = torch.ones(t, total, dtype=torch.bool).tril(total - t)  # [T, T_total]
        allowed = causal[None, None] & key_mask[:, None, None, :].bool()
        mask = torch.zeros(allowed.shape, dtype=embeds.dtype)
        mask = mask.masked_fill(~allowed, torch.finfo(embeds.dtype).min)
        rope = self.rope(positions)
        x = embeds
        for i, layer in enumerate(self.layers):
            x = layer(x, rope, mask, cache, i)
        if cache is not None:
            cache.mask = key_mask
        return self.ln_f(x)
