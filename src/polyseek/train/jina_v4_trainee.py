"""jina-embeddings-v4 as a `Trainee`: a new task adapter beside the released ones.

`--lora --task NAME` adds one LoRA delta (A [r, in], B [out, r]) to every module the adapter
config targets (the language model's projections and the multi-vector projector) and trains
only those; the backbone, the projector's base weights and every other task stay untouched.
The new task starts as a copy of the `retrieval` adapter (the released model's retrieval
quality is the starting point; LoRA's own start, B = 0, would be the bare backbone, which was
never trained to embed alone); without a `retrieval` adapter, as LoRA does (A random, B zero).

The deltas take the adapter file's rank and scaling (one `r` and `lora_alpha` for every
task in it), so `--lora-rank` is refused.

Texts get the retrieval prompts of the model's task table ("Query: " / "Passage: "); the
saved model serves NAME.query and NAME.passage with them (NAME alone: the query side, as
text-matching always uses "Query: "). Both heads train: the pooled vector and the
multi-vector token vectors.

Image items are encoded as the model serves them: the fixed image prompt with one
<|image_pad|> per merged patch, pooled over the vision span, every token a multi-vector.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from polyseek.models.base import pad_batch
from polyseek.models.checkpoint import qwen_vl_module_key
from polyseek.models.jina_v4 import (
    _ADAPTER_KEY,
    JinaEmbeddingsV4,
    JinaEmbeddingsV4Model,
    JinaV4Job,
    MultiTaskLoRALinear,
)
from polyseek.models.text_encoder import tokenize
from polyseek.train import export
from polyseek.train.data import ImageItem, Item, TrainDataError
from polyseek.train.trainee import Encoded, Role, Trainee

TASK_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
WARM_START = "retrieval"  # the adapter a new task starts from, when the model has it
ADAPTER_FILE = "adapter_model.safetensors"


class NewTaskLoRALinear(nn.Module):
    """A `MultiTaskLoRALinear` plus one trainable task delta, applied when the selector picks
    `index` (the new task); any other task runs the wrapped layer unchanged."""

    def __init__(self, layer: MultiTaskLoRALinear, index: int, lora_a: torch.Tensor,
                 lora_b: torch.Tensor):
        super().__init__()
        self.layer, self.index = layer, index
        self.lora_A = nn.Parameter(lora_a)  # [r, in]
        self.lora_B = nn.Parameter(lora_b)  # [out, r]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer.selector.index != self.index:
            return self.layer(x)
        out = F.linear(x, self.layer.weight, self.layer.bias)
        delta = F.linear(F.linear(x, self.lora_A), self.lora_B)  # [..., out]
        return out + delta * self.layer.scaling


def initial_delta(layer: MultiTaskLoRALinear, tasks: Sequence[str]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) of the new task: the warm-start adapter's, else LoRA's (A as PEFT, B zero)."""
    if WARM_START in tasks:
        index = tasks.index(WARM_START)
        return layer.lora_A[index].clone(), layer.lora_B[index].clone()
    rank = layer.lora_A.shape[1]
    a = torch.empty(rank, layer.in_features, dtype=layer.weight.dtype)
    nn.init.kaiming_uniform_(a, a=math.sqrt(5))
    return a, torch.zeros(layer.out_features, rank, dtype=layer.weight.dtype)


class JinaV4Trainee(Trainee):
    """A jina-embeddings-v4 model with one new, trainable task adapter."""

    def __init__(self, embedder: JinaEmbeddingsV4, lora: bool, task: str | None,
                 prompt: str | None = None, max_length: int = 128):
        if not lora:
            raise TrainDataError("jina-embeddings-v4 trains as a new task adapter: add "
                                 "--lora --task NAME (full fine-tuning is not supported)")
        if prompt is not None:
            raise TrainDataError("jina-embeddings-v4 tasks use the model's retrieval prompts "
                                 "('Query: ' / 'Passage: '); omit --prompt")
        model: JinaEmbeddingsV4Model = embedder.model
        check_task_name(task, model.config.task_names, embedder.capabilities.tasks)
        self.embedder, self.task, self.max_length = embedder, task, max_length
        self.prompts = {"query": embedder.api_tasks["retrieval.query"][1],
                        "document": embedder.api_tasks["retrieval.passage"][1]}
        self.module = model
        model.requires_grad_(False)
        self.params = add_task(model, task)

    def encode(self, texts: Sequence[Item], role: Role) -> Encoded:
        jobs = [self.job(item, role) for item in texts]
        input_ids, mask = pad_batch([job.ids for job in jobs], self.embedder.pad_id)  # [N, L]
        images = [job for job in jobs if job.pixel_values is not None]
        pixel_values = torch.cat([job.pixel_values for job in images]) if images else None
        grid = torch.tensor([job.grid_thw for job in images]) if images else None  # [I, 3]
        out = self.module(input_ids, mask, pixel_values, grid, task=self.task)
        # pooled [N, D] (normalised; the loss re-normalises each prefix), tokens [N, L, P]
        return Encoded(out.single_vec_emb, out.multi_vec_emb, mask.bool())

    def job(self, item: Item, role: Role) -> JinaV4Job:
        """A text with the role's prompt (cut to `max_length`), or an image as served."""
        if isinstance(item, ImageItem):
            return self.embedder.prepare([item.load()])[0]
        (ids,) = tokenize(self.embedder.tokenizer, [item], self.prompts[role], self.max_length,
                          True, self.embedder.name)
        return JinaV4Job(ids)

    def save(self, base: Path, output: Path, dims: tuple[int, ...]) -> None:
        """The base files (weights hard-linked), config.json with the new task, and
        adapters/ with its deltas added to the released ones."""
        export.copy_base_files(base, output, weights=True)
        write_adapters(self.module, self.task, base / "adapters", output / "adapters")
        config = json.loads((base / "config.json").read_text())
        config["task_names"] = [*self.module.config.task_names, self.task]
        config["api_tasks"] = {**config.get("api_tasks", {}),
                               **self.api_tasks()}
        (output / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    def api_tasks(self) -> dict[str, list[str]]:
        """The served tasks of the new adapter: API task -> [adapter, prompt]."""
        query, document = self.prompts["query"], self.prompts["document"]
        return {self.task: [self.task, query], f"{self.task}.query": [self.task, query],
                f"{self.task}.passage": [self.task, document]}

    def served_tasks(self) -> tuple[str | None, str | None]:
        return f"{self.task}.query", f"{self.task}.passage"

    def adapter_mb(self, output: Path) -> float | None:
        """The new task's tensors in the shared adapter file."""
        tensors = load_file(output / "adapters" / "adapter_model.safetensors")
        return round(sum(t.nbytes for k, t in tensors.items()
                         if k.endswith(f".{self.task}.weight")) / 1e6, 2)


def check_task_name(task: str | None, adapters: Sequence[str], api_tasks: Sequence[str]
                    ) -> None:
    if not task or not TASK_NAME.match(task):
        raise TrainDataError(f"--task {task!r}: a new adapter's name is letters, digits, "
                             "'_' and '-'")
    if task in adapters or any(name.split(".")[0] == task for name in api_tasks):
        raise TrainDataError(f"--task {task!r} is already a task of this model "
                             f"({', '.join(adapters)}); name the new adapter otherwise")


def add_task(model: JinaEmbeddingsV4Model, task: str) -> dict[str, nn.Parameter]:
    """Wrap every adapted layer with a trainable delta for `task` (the next task index);
    returns the new parameters by name."""
    tasks = model.adapter_tasks
    params = {}
    for name, layer in list(model.named_modules()):
        if isinstance(layer, MultiTaskLoRALinear):
            a, b = initial_delta(layer, tasks)
            wrapped = NewTaskLoRALinear(layer, len(tasks), a, b)
            model.set_submodule(name, wrapped)
            params[f"{name}.lora_A"], params[f"{name}.lora_B"] = wrapped.lora_A, wrapped.lora_B
    if not params:
        raise TrainDataError("the model has no task adapters to add a task beside")
    model.adapter_tasks = (*tasks, task)
    return params


def write_adapters(model: JinaEmbeddingsV4Model, task: str, source: Path,
                   target: Path) -> None:
    """`source` (the released adapters/) with `task`'s A and B added to its safetensors, in
    the file's own module names; written beside and moved into place."""
    state = load_file(source / ADAPTER_FILE)
    file_names = {}  # in-memory module name -> the file's name for it
    for key in state:
        module = _ADAPTER_KEY.match(key)["module"]
        file_names[qwen_vl_module_key(module)] = module
    for name, layer in model.named_modules():
        if isinstance(layer, NewTaskLoRALinear):
            prefix = f"base_model.model.{file_names[name]}"
            state[f"{prefix}.lora_A.{task}.weight"] = layer.lora_A.detach().contiguous()
            state[f"{prefix}.lora_B.{task}.weight"] = layer.lora_B.detach().contiguous()
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns(ADAPTER_FILE))
    save_file(state, staging / ADAPTER_FILE, metadata={"format": "pt"})
    export.replace_dir(staging, target)
