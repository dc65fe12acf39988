"""Task LoRA adapters for encoders, read from peft's files and chosen per forward pass.

A checkpoint directory may hold `adapters/<task>/` folders, each a peft LoRA adapter
(`adapter_config.json`, `adapter_model.safetensors`) trained by `polyseek train embedder
--lora --task <task>`. Each becomes a task of the model. The base weights are shared: every
adapted `nn.Linear` is wrapped in a `TaskLoRALinear` that adds the active task's low-rank
delta, the task being a context variable set around the forward pass, so concurrent passes
on different threads (the batcher's two lanes) never see each other's task.
"""

from __future__ import annotations

import contextvars
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

ADAPTERS_DIR = "adapters"
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."

_ACTIVE_TASK: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "polyseek_lora_task", default=None)


@dataclass(frozen=True)
class LoRADelta:
    """One adapted weight: W x + scale * B (A x); A [r, in], B [out, r]."""

    a: torch.Tensor
    b: torch.Tensor
    scale: float


class TaskLoRALinear(nn.Module):
    """`base` plus the low-rank delta of the active task, if it has one here."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base = base
        self.deltas: dict[str, LoRADelta] = {}

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        delta = self.deltas.get(_ACTIVE_TASK.get())
        if delta is None:
            return out
        return out + (x @ delta.a.T) @ delta.b.T * delta.scale


@contextmanager
def active_task(task: str | None) -> Iterator[None]:
    """Forward passes in this context (this thread or task only) use `task`'s adapter."""
    token = _ACTIVE_TASK.set(task)
    try:
        yield
    finally:
        _ACTIVE_TASK.reset(token)


def adapter_dirs(directory: Path) -> dict[str, Path]:
    """Task name -> adapter folder, for every `adapters/<task>/adapter_config.json`."""
    root = directory / ADAPTERS_DIR
    if not root.is_dir():
        return {}
    return {p.parent.name: p.parent for p in sorted(root.glob(f"*/{CONFIG_FILE}"))}


def read_adapter(folder: Path) -> dict[str, LoRADelta]:
    """Module name (as in the base model) -> its delta, from one peft LoRA adapter folder."""
    config = json.loads((folder / CONFIG_FILE).read_text())
    kind = config.get("peft_type", "LORA")
    if kind != "LORA" or config.get("use_dora") or config.get("bias", "none") != "none":
        raise ValueError(f"{folder}: only plain LoRA adapters are supported "
                         f"(peft_type={kind}, use_dora={config.get('use_dora')}, "
                         f"bias={config.get('bias')})")
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    tensors = load_file(folder / WEIGHTS_FILE)
    deltas = {}
    for key, a in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        name = key.removeprefix(PEFT_PREFIX).removesuffix(".lora_A.weight")
        b = tensors[key.replace(".lora_A.", ".lora_B.")]
        deltas[name] = LoRADelta(a.float(), b.float(), scale)
    if not deltas:
        raise ValueError(f"{folder}: the adapter holds no LoRA weights")
    return deltas


def attach_adapters(model: nn.Module, directory: Path) -> tuple[str, ...]:
    """Wrap the linears the adapters of `directory` touch; returns their task names."""
    folders = adapter_dirs(directory)
    for task, folder in folders.items():
        for name, delta in read_adapter(folder).items():
            module = model.get_submodule(name)
            if not isinstance(module, TaskLoRALinear):
                if not isinstance(module, nn.Linear):
                    raise ValueError(f"{folder}: {name} is not a linear layer of the model")
                wrapped = TaskLoRALinear(module)
                owner, _, attr = name.rpartition(".")
                setattr(model.get_submodule(owner) if owner else model, attr, wrapped)
                module = wrapped
            if delta.a.shape[1] != module.base.in_features or \
                    delta.b.shape[0] != module.base.out_features:
                raise ValueError(f"{folder}: {name} has the wrong shape for this model")
            module.deltas[task] = delta
    return tuple(folders)
