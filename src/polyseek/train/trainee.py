"""What `train embedder` needs from a model family: encode with gradients, save in the
layout the family loads. One class per family; `embedder.load_trainee` picks it by the loaded
model (jina-embeddings-v3: `jina_v3_trainee.JinaV3Trainee`, v4: `jina_v4_trainee`,
jina-clip-v2: `jina_clip_trainee`).

`EncoderTrainee` covers transformers encoders (hf-encoder: e5, MiniLM, BERT-likes): full
fine-tuning, or a PEFT LoRA saved as a named task under `adapters/<task>/`.
"""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from polyseek.models.base import pad_batch
from polyseek.models.hf_encoder import HFEncoder
from polyseek.models.text_encoder import tokenize
from polyseek.train import export
from polyseek.train.data import Item, TrainDataError

Role = Literal["query", "document"]
LORA_TARGETS = r".*encoder\.layer\.\d+\..*(query|key|value|dense)$"


@dataclass
class Encoded:
    """A batch encoded with gradients: pooled vectors [N, D] (not normalised) and, for a
    model with a multi-vector head, its token vectors [N, L, P] with their mask [N, L]."""

    pooled: torch.Tensor
    tokens: torch.Tensor | None = None
    mask: torch.Tensor | None = None


class Trainee(ABC):
    """A loaded model being trained. `module` is what train()/eval() switch; `params` the
    parameters the optimiser updates."""

    module: nn.Module
    params: dict[str, nn.Parameter]

    @abstractmethod
    def encode(self, texts: Sequence[Item], role: Role) -> Encoded:
        """Encode a batch as the served model would for `role`, with gradients. Image items
        reach only trainees of models that read images (`embedder.check_modalities`)."""

    @abstractmethod
    def save(self, base: Path, output: Path, dims: tuple[int, ...]) -> None:
        """Write the trained model to `output` (from the base checkpoint `base`), so that
        `load_model(output)` and `polyseek serve --model NAME=output` load it; `dims`: the
        Matryoshka dims trained (to declare)."""

    @abstractmethod
    def served_tasks(self) -> tuple[str | None, str | None]:
        """The (query, document) tasks the saved model encodes with, for the held-out eval."""

    def adapter_mb(self, output: Path) -> float | None:
        """The size of the trained adapter in `output` (MB), or None without one."""
        return None


class EncoderTrainee(Trainee):
    """A transformers encoder: tokenises as the server does, pools with gradients."""

    def __init__(self, encoder: HFEncoder, source: str, lora: bool = False,
                 task: str | None = None, prompt: str | None = None, lora_rank: int = 8,
                 train_embeddings: bool = False,
                 max_length: int = 128):
        if encoder.adapters:
            raise TrainDataError(f"{encoder.name or 'the model'} already carries LoRA "
                                 "adapters; train from its base")
        self.encoder, self.source, self.lora, self.task = encoder, source, lora, task
        self.max_length = max_length
        self.module = encoder.model
        caps = encoder.capabilities
        if lora:
            own = encoder.prompts.get(caps.role_task("query") or "", "")
            self.task_prompt = own if prompt is None else prompt
            self.prompts = {"query": self.task_prompt, "document": self.task_prompt}
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.1,
                                target_modules=LORA_TARGETS, bias="none")
            self.module = get_peft_model(encoder.model, config)
        else:
            self.prompts = {role: encoder.prompts.get(caps.role_task(role) or "", "")
                            for role in ("query", "document")}
            if not train_embeddings:
                encoder.model.embeddings.word_embeddings.weight.requires_grad_(False)
        self.params = {n: p for n, p in self.module.named_parameters() if p.requires_grad}

    def encode(self, texts: Sequence[str], role: Role) -> Encoded:
        ids = tokenize(self.encoder.tokenizer, texts, self.prompts[role], self.max_length,
                       True, self.encoder.name)
        input_ids, mask = pad_batch(ids, self.encoder.pad_id)
        hidden = self.module(input_ids=input_ids, attention_mask=mask).last_hidden_state
        if self.encoder.pooling == "cls":
            return Encoded(hidden[:, 0])
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return Encoded((hidden * weights).sum(1) / weights.sum(1))

    def save(self, base: Path, output: Path, dims: tuple[int, ...]) -> None:
        """A full checkpoint, or the base files plus adapters/<task>/."""
        if self.lora:
            export.copy_base_files(base, output, weights=True)
            staging = output / f".{self.task}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            self.module.peft_config["default"].base_model_name_or_path = self.source
            self.module.save_pretrained(staging)
            export.replace_dir(staging, output / "adapters" / self.task)
            export.set_prompt(output, self.task, self.task_prompt)
            return
        export.copy_base_files(base, output)
        model = self.encoder.model
        if dims:
            model.config.matryoshka_dimensions = sorted(set(dims) | {model.config.hidden_size})
        model.save_pretrained(output, safe_serialization=True)

    def served_tasks(self) -> tuple[str | None, str | None]:
        if self.lora:
            return self.task, self.task
        caps = self.encoder.capabilities
        return caps.role_task("query"), caps.role_task("document")

    def adapter_mb(self, output: Path) -> float | None:
        if not self.lora:
            return None
        folder = output / "adapters" / self.task
        return round(sum(f.stat().st_size for f in folder.iterdir()) / 1e6, 2)
