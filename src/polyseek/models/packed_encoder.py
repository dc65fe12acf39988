"""Padding-free forward pass for BERT-style encoders (BERT, RoBERTa, XLM-R).

A batch of sequences of different lengths is packed into one [T, D] token matrix: the
embeddings, every linear layer and every LayerNorm run on real tokens only. Only attention
needs a grid, so Q, K, V are scattered into [B, H, L_max, d] for one masked SDPA call and the
result is gathered back. On CPU, where linear layers dominate, this removes the cost of
padding that a sorted-by-length batch still carries. Weights are the checkpoint's own modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PACKABLE_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "camembert"})
# Encoders whose position ids start after the padding index.
OFFSET_POSITION_TYPES = frozenset({"roberta", "xlm-roberta", "camembert"})


def supports_packing(model: nn.Module) -> bool:
    config = model.config
    return (
        config.model_type in PACKABLE_MODEL_TYPES
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
        and not getattr(config, "is_decoder", False)
    )


@dataclass
class Layout:
    """Where each packed token sits in the padded [B, L_max] attention grid."""

    row: Tensor  # [T] sequence index of each token
    col: Tensor  # [T] position of each token within its sequence
    key_mask: Tensor  # [B, 1, 1, L_max] True for real keys
    batch: int
    width: int

    @classmethod
    def of(cls, lengths: list[int]) -> Layout:
        n = torch.tensor(lengths)
        row = torch.repeat_interleave(torch.arange(len(lengths)), n)
        col = torch.cat([torch.arange(length) for length in lengths])
        width = max(lengths)
        key_mask = (torch.arange(width)[None, :] < n[:, None])[:, None, None, :]
        return cls(row, col, key_mask, len(lengths), width)

    def to_grid(self, x: Tensor, heads: int) -> Tensor:
        """[T, H*d] -> [B, H, L_max, d], zeros where there is no token."""
        grid = x.new_zeros(self.batch, self.width, x.shape[-1])
        grid[self.row, self.col] = x
        return grid.view(self.batch, self.width, heads, -1).transpose(1, 2)

    def from_grid(self, grid: Tensor) -> Tensor:
        """[B, H, L_max, d] -> [T, H*d]."""
        return grid.transpose(1, 2)[self.row, self.col].flatten(1)


def embed_tokens(model: nn.Module, ids: Tensor, layout: Layout) -> Tensor:
    """Word + position + token-type (0) embeddings, LayerNorm: [T] -> [T, D]."""
    emb = model.embeddings
    positions = layout.col
    if model.config.model_type in OFFSET_POSITION_TYPES:  # positions start after padding_idx
        positions = positions + model.config.pad_token_id + 1
    x = emb.word_embeddings(ids) + emb.position_embeddings(positions)
    x = x + emb.token_type_embeddings.weight[0]
    return emb.LayerNorm(x)


def self_attention(layer: nn.Module, x: Tensor, layout: Layout, heads: int) -> Tensor:
    """Multi-head self-attention of each sequence over its own tokens: [T, D] -> [T, D]."""
    attn = layer.attention.self
    q, k, v = (layout.to_grid(proj(x), heads) for proj in (attn.query, attn.key, attn.value))
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=layout.key_mask)
    return layout.from_grid(context)


def encoder_layer(layer: nn.Module, x: Tensor, layout: Layout, heads: int) -> Tensor:
    """Post-norm transformer block: attention, add & norm, MLP, add & norm."""
    out = layer.attention.output
    h = out.LayerNorm(x + out.dense(self_attention(layer, x, layout, heads)))
    return layer.output.LayerNorm(h + layer.output.dense(layer.intermediate(h)))


@torch.inference_mode()
def packed_forward(model: nn.Module, sequences: list[list[int]]) -> list[Tensor]:
    """Last hidden states per sequence, [L_i, D] each, without padding the token matrix."""
    lengths = [len(seq) for seq in sequences]
    layout = Layout.of(lengths)
    ids = torch.tensor([token for seq in sequences for token in seq])
    x = embed_tokens(model, ids, layout)
    heads = model.config.num_attention_heads
    for layer in model.encoder.layer:
        x = encoder_layer(layer, x, layout, heads)
    return list(torch.split(x, lengths))
