"""jina-vlm vision-language connector: padding embeddings, 2x2 attention pooling, projector.

Each crop's 27x27 grid of concatenated ViT features is padded to 28x28 and cut into 14x14
windows of 2x2 patches; one query per window (the mean of its four members) attends over the
four members, so 729 patch tokens become 196 image tokens (~3.7x fewer). A gated MLP projects
them to the decoder width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyseek.models.jina_vlm.config import AttentionConfig, VisionConfig
from polyseek.models.jina_vlm.layers import FeedForward


class AttentionPooling(nn.Module):
    """One query per window attends over the window's members; separate q and fused kv."""

    def __init__(self, in_dim: int, out_dim: int, cfg: AttentionConfig):
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        inner = cfg.q_dim
        self.q_w = nn.Linear(in_dim, inner, bias=False)
        self.kv_w = nn.Linear(in_dim, 2 * inner, bias=False)
        self.q_b = nn.Parameter(torch.zeros(inner))
        self.k_b = nn.Parameter(torch.zeros(inner))
        self.v_b = nn.Parameter(torch.zeros(inner))
        self.out = nn.Linear(inner, out_dim)

    def forward(self, query: Tensor, members: Tensor) -> Tensor:
        """query [M, 1, C], members [M, 4, C] -> [M, out_dim]."""
        m = query.shape[0]
        q = self.q_w(query) + self.q_b  # [M, 1, inner]
        k, v = (self.kv_w(members) + torch.cat([self.k_b, self.v_b])).chunk(2, dim=-1)
        q, k, v = (z.view(m, -1, self.n_heads, self.head_dim).transpose(1, 2)
                   for z in (q, k, v))  # [M, heads, 1 or 4, d]
        pooled = F.scaled_dot_product_attention(q, k, v)  # [M, heads, 1, d]
        return self.out(pooled.reshape(m, -1))


class VisionLanguageConnector(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        cfg = config.connector
        feature_dim = len(config.vit_layers) * config.hidden_size
        self.grid, self.pool_h, self.pool_w = config.grid, cfg.pool_h, cfg.pool_w
        self.pad_embed = nn.Parameter(torch.zeros(2, feature_dim))
        self.pooling = AttentionPooling(feature_dim, config.hidden_size, cfg.pooling)
        self.projector = FeedForward(config.hidden_size, config.output_size, cfg.projector)

    def add_padding_embeddings(self, features: Tensor, masks: Tensor) -> Tensor:
        """pad_embed[0] where a patch is all padding (mask 0), [1] where partial (mask < 1, != 0).

        Masks of -1 (padding crops, and the processor's misaligned last crop) count as partial.
        """
        masks = masks.to(features.dtype)[..., None]  # [B, N, T, 1]
        all_pad = (masks == 0).to(features.dtype)
        partial = ((masks < 1) & (masks != 0)).to(features.dtype)
        return features + all_pad * self.pad_embed[0] + partial * self.pad_embed[1]

    def windows(self, features: Tensor) -> Tensor:
        """[B, N, 729, C] -> [B*N*196, 4, C]: 2x2 windows, members TL, TR, BL, BR."""
        b, n, _, c = features.shape
        g, ph, pw = self.grid, self.pool_h, self.pool_w
        x = features.view(b * n, g, g, c)
        x = F.pad(x, (0, 0, 0, (-g) % pw, 0, (-g) % ph))  # zero row/column -> [BN, 28, 28, C]
        rows, cols = x.shape[1] // ph, x.shape[2] // pw
        x = x.view(b * n, rows, ph, cols, pw, c).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(b * n * rows * cols, ph * pw, c)

    def pool(self, features: Tensor, masks: Tensor) -> Tensor:
        """[B, N, 729, C], masks [B, N, 729] -> pooled [B, N, 196, H]."""
        b, n = features.shape[:2]
        members = self.windows(self.add_padding_embeddings(features, masks))
        pooled = self.pooling(members.mean(dim=1, keepdim=True), members)
        return pooled.view(b, n, -1, pooled.shape[-1])

    def forward(self, features: Tensor, masks: Tensor) -> Tensor:
        """[B, N, 729, C], masks [B, N, 729] -> [B, N, 196, D_text]."""
        return self.projector(self.pool(features, masks))
