"""`train embedder --lora --task NAME` for jina-embeddings-v3: one more task adapter, in v3's
own layout.

v3 stacks its task LoRA adapters in every `LoRALinear` / `LoRAEmbedding` (`lora_A`/`lora_B`
[tasks, ...], tasks listed in config.json `lora_adaptations`). Training a task appends one row
to every such tensor: A initialised as LoRA does (kaiming-uniform, a=sqrt(5), on the row's
2-D matrix), B zeros, so the new task starts as the model without adapters. Only the new rows
are parameters; the base weights and the other tasks' rows are frozen buffers the forward pass
concatenates them to, so they stay bit-identical (weight decay never reaches them).

The task has one prompt (`task_instructions`), used for queries and documents alike as the
server does: `--prompt`, default the retrieval.query instruction. The saved directory is a
full checkpoint: config.json with NAME appended to `lora_adaptations` and its instruction,
model.safetensors with the extra rows (every tensor in the base checkpoint's dtype), the
tokenizer files.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from polyseek.models.base import pad_batch
from polyseek.models.jina_v3 import (
    JinaEmbeddingsV3,
    LoRAEmbedding,
    LoRALinear,
    LoRAParams,
    mean_pool,
)
from polyseek.models.text_encoder import tokenize
from polyseek.train import export
from polyseek.train.data import TrainDataError
from polyseek.train.trainee import Encoded, Role, Trainee


class AppendedTask(nn.Module):
    """A `LoRAParams` with one task more: the existing rows frozen, the new one trainable.

    `lora_A` / `lora_B` read as the concatenation [tasks + 1, ...], so the v3 modules index
    them by task id unchanged.
    """

    def __init__(self, lora: LoRAParams, generator: torch.Generator):
        super().__init__()
        self.register_buffer("old_A", lora.lora_A.detach(), persistent=False)  # [T, ...]
        self.register_buffer("old_B", lora.lora_B.detach(), persistent=False)  # [T, ...]
        row = torch.empty_like(self.old_A[0])  # Linear [r, in]; Embedding [vocab, r]
        fan_in = row.shape[1]
        bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)), as LoRA initialises A
        row.uniform_(-bound, bound, generator=generator)
        self.new_A = nn.Parameter(row.unsqueeze(0))  # [1, ...]
        self.new_B = nn.Parameter(torch.zeros_like(self.old_B[:1]))  # [1, ...]

    @property
    def lora_A(self) -> torch.Tensor:
        return torch.cat([self.old_A, self.new_A])

    @property
    def lora_B(self) -> torch.Tensor:
        return torch.cat([self.old_B, self.new_B])


def append_task(module: nn.Module, seed: int) -> dict[str, AppendedTask]:
    """Freeze `module` and give every LoRA weight of it one more (trainable) task row; returns
    the new rows by the name of the `LoRAParams` they replace."""
    module.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    rows = {}
    for name, child in list(module.named_modules()):
        if isinstance(child, LoRALinear | LoRAEmbedding):
            weight = child.parametrizations["weight"]
            weight[0] = AppendedTask(weight[0], generator)
            rows[f"{name}.parametrizations.weight.0"] = weight[0]
    return rows


class JinaV3Trainee(Trainee):
    """jina-embeddings-v3 learning a new task adapter (LoRA only)."""

    def __init__(self, embedder: JinaEmbeddingsV3, lora: bool, task: str | None,
                 prompt: str | None = None, max_length: int = 128, seed: int = 0):
        tasks = embedder.model.config.tasks
        if not lora or not task:
            raise TrainDataError("jina-embeddings-v3 trains as a new task adapter only: add "
                                 "--lora --task NAME (full fine-tuning is not supported)")
        if task in tasks:
            raise TrainDataError(f"task {task!r} already exists in {embedder.name} "
                                 f"({', '.join(tasks)}); pick a new --task name")
        self.embedder, self.task, self.max_length = embedder, task, max_length
        self.prompt = embedder.prompts.get("retrieval.query", "") if prompt is None else prompt
        self.index = len(tasks)  # the new task's id in adapter_mask
        self.module = embedder.model
        self.rows = append_task(self.module, seed)
        self.params = {n: p for n, p in self.module.named_parameters() if p.requires_grad}

    def encode(self, texts: Sequence[str], role: Role) -> Encoded:
        """Both roles with the new task and its prompt, as `task=NAME` is served."""
        ids = tokenize(self.embedder.tokenizer, texts, self.prompt, self.max_length, True,
                       self.embedder.name)
        input_ids, mask = pad_batch(ids, self.embedder.pad_id)  # [B, L]
        adapter = torch.full((len(ids),), self.index, dtype=torch.long)  # [B]
        hidden = self.module.roberta(input_ids, mask, adapter).last_hidden_state  # [B, L, H]
        return Encoded(mean_pool(hidden, mask))  # [B, H]

    def released_state(self) -> dict[str, torch.Tensor]:
        """Every tensor under the released checkpoint names, LoRA tensors with the new row."""
        state = {k: v for k, v in self.module.state_dict().items()
                 if not k.endswith((".new_A", ".new_B"))}
        for name, row in self.rows.items():
            state[f"{name}.lora_A"] = row.lora_A.detach()
            state[f"{name}.lora_B"] = row.lora_B.detach()
        return state

    def save(self, base: Path, output: Path, dims: tuple[int, ...]) -> None:
        """A full checkpoint: config.json with the new task, weights, tokenizer files (the
        model's Matryoshka dims are kept: the other tasks share them)."""
        if output.resolve() != base.resolve():
            export.copy_base_files(base, output)
        (output / "model.safetensors.index.json").unlink(missing_ok=True)
        dtypes = export.stored_dtypes(base)
        state = {k: v.to(dtypes.get(k, v.dtype)).contiguous()
                 for k, v in self.released_state().items()}
        tmp = output / "model.safetensors.tmp"
        save_file(state, tmp, metadata={"format": "pt"})
        os.replace(tmp, output / "model.safetensors")
        config = json.loads((base / "config.json").read_text())
        config["lora_adaptations"] = [*self.embedder.model.config.tasks, self.task]
        config["task_instructions"] = {**self.embedder.model.config.instructions,
                                       self.task: self.prompt}
        (output / "config.json").write_text(json.dumps(config, indent=1, ensure_ascii=False)
                                            + "\n")

    def served_tasks(self) -> tuple[str | None, str | None]:
        return self.task, self.task

    def adapter_mb(self, output: Path) -> float | None:
        """The new task's rows, at the saved precision."""
        dtypes, size = export.stored_dtypes(output), 0
        for name, row in self.rows.items():
            for part, tensor in (("lora_A", row.new_A), ("lora_B", row.new_B)):
                size += tensor.numel() * dtypes.get(f"{name}.{part}", tensor.dtype).itemsize
        return round(size / 1e6, 2)
