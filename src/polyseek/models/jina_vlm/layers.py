"""Building blocks shared by the jina-vlm vision tower, connector and decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyseek.models.jina_vlm.config import FFNConfig, NormConfig

ACTIVATIONS = {
    "silu": F.silu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
}


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * weight, computed in float32."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x * self.weight.float()).to(dtype)


def make_norm(dim: int, config: NormConfig) -> nn.Module:
    if config.kind == "rms":
        return RMSNorm(dim, config.eps)
    return nn.LayerNorm(dim, eps=config.eps, bias=config.bias)


class FeedForward(nn.Module):
    """up -> activation -> down; gated: up gives [value | gate], out = down(act(gate) * value)."""

    def __init__(self, dim: int, out_dim: int, config: FFNConfig):
        super().__init__()
        inner = config.size
        self.up = nn.Linear(dim, 2 * inner if config.gated else inner, bias=config.bias)
        self.down = nn.Linear(inner, out_dim, bias=config.bias)
        self.act = ACTIVATIONS[config.activation]
        self.gated = config.gated

    def forward(self, x: Tensor) -> Tensor:
        h = self.up(x)
        if self.gated:
            value, gate = h.chunk(2, dim=-1)
            h = self.act(gate) * value
        else:
            h = self.act(h)
        return self.down(h)
