"""jina-vlm vision tower: a SigLIP2-style ViT over 378x378 crops (27x27 patches of 14 px).

Linear patch embedding, learned absolute positions, pre-norm blocks with fused QKV. The
connector reads the hidden states of the layers in `vit_layers`, indices into the list
[block 0 output, ..., block n-1 output, post_lnorm(last output)]; blocks past the deepest
one read are never run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyseek.models.jina_vlm.config import BlockConfig, VisionConfig
from polyseek.models.jina_vlm.connector import VisionLanguageConnector
from polyseek.models.jina_vlm.layers import FeedForward, make_norm


class PatchEmbedding(nn.Module):
    def __init__(self, patch_dim: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(patch_dim, hidden)

    def forward(self, patches: Tensor) -> Tensor:
        return self.proj(patches)


class VisionAttention(nn.Module):
    """Bidirectional multi-head self-attention; fused weight rows [q | k | v], separate biases."""

    def __init__(self, hidden: int, block: BlockConfig):
        super().__init__()
        cfg = block.attention
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.qkv_w = nn.Linear(hidden, 3 * cfg.q_dim, bias=False)
        self.q_b = nn.Parameter(torch.zeros(cfg.q_dim))
        self.k_b = nn.Parameter(torch.zeros(cfg.q_dim))
        self.v_b = nn.Parameter(torch.zeros(cfg.q_dim))
        self.out = nn.Linear(cfg.q_dim, hidden)

    def forward(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape  # [B, T, H]
        qkv = self.qkv_w(x) + torch.cat([self.q_b, self.k_b, self.v_b])
        q, k, v = (z.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
                   for z in qkv.chunk(3, dim=-1))  # [B, heads, T, d]
        context = F.scaled_dot_product_attention(q, k, v)
        return self.out(context.transpose(1, 2).reshape(b, t, -1))


class VisionBlock(nn.Module):
    def __init__(self, hidden: int, block: BlockConfig):
        super().__init__()
        self.attn = VisionAttention(hidden, block)
        self.ffn = FeedForward(hidden, hidden, block.ffn)
        self.attn_lnorm = make_norm(hidden, block.norm)
        self.ffn_lnorm = make_norm(hidden, block.norm)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.attn_lnorm(x))
        return x + self.ffn(self.ffn_lnorm(x))


class VisionModel(nn.Module):
    """ViT + connector: crops [B, N, 729, 588] -> image features [B, N, 196, D_text]."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        self.pos_embed = nn.Parameter(torch.zeros(config.grid * config.grid, hidden))
        self.patch_embed = PatchEmbedding(config.patch_dim, hidden)
        self.layers = nn.ModuleList(VisionBlock(hidden, config.block)
                                    for _ in range(config.n_layers))
        self.post_lnorm = make_norm(hidden, config.block.norm) if config.post_lnorm else None
        self.vl_connector = VisionLanguageConnector(config)

    def hidden_state_indices(self) -> list[int]:
        """`vit_layers` as positive indices into [blocks..., post_lnorm]."""
        n = self.config.n_layers + 1
        return [i % n for i in self.config.vit_layers]

    def vit_features(self, images: Tensor) -> Tensor:
        """Concatenated ViT hidden states, zero for all -1 (padding) crops.

        images: [B, N, 729, 588] -> [B, N, 729, len(vit_layers) * H]
        """
        b, n, t, _ = images.shape
        valid = (images != -1).any(dim=(2, 3))  # [B, N]
        x = self.patch_embed(images.view(b * n, t, -1)) + self.pos_embed  # [B*N, T, H]
        wanted = self.hidden_state_indices()
        states: dict[int, Tensor] = {}
        for i, layer in enumerate(self.layers[: min(max(wanted) + 1, len(self.layers))]):
            x = layer(x)
            states[i] = x
        if self.config.n_layers in wanted:
            states[self.config.n_layers] = self.post_lnorm(x)
        features = torch.cat([states[i] for i in wanted], dim=-1).view(b, n, t, -1)
        return features * valid[:, :, None, None].to(features.dtype)

    def forward(self, images: Tensor, image_masks: Tensor) -> Tensor:
        """images [B, N, 729, 588], image_masks [B, N, 729] -> [B, N, 196, D_text]."""
        return self.vl_connector(self.vit_features(images), image_masks)
