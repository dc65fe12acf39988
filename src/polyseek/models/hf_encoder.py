"""Encoder-only transformers (BERT, XLM-R, ...) with sentence-transformers pooling.

Reads a sentence-transformers or plain transformers checkpoint directory: `config.json`,
weights, tokenizer files, and optionally `modules.json` with a Pooling module (mean or CLS)
and `config_sentence_transformers.json` with named prompts, which become the model's tasks.
LoRA adapters under `adapters/<task>/` (see `polyseek.models.adapters`) are tasks too, and
`matryoshka_dimensions` in `config.json` declares trained truncation points.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from polyseek.models.adapters import active_task, attach_adapters
from polyseek.models.base import Capabilities, EncodeJob, pad_batch
from polyseek.models.families import family_named, stock_config
from polyseek.models.packed_encoder import (
    OFFSET_POSITION_TYPES,
    packed_forward,
    supports_packing,
)
from polyseek.models.text_encoder import MIN_TRUNCATED_DIM, TextEncoder

hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()

FAMILY = family_named("hf-encoder")


def read_pooling_mode(directory: Path) -> str:
    """'mean' or 'cls' from the sentence-transformers Pooling module; mean when absent."""
    modules_file = directory / "modules.json"
    if not modules_file.exists():
        return "mean"
    for module in json.loads(modules_file.read_text()):
        if module["type"].endswith("Pooling"):
            config = json.loads((directory / module["path"] / "config.json").read_text())
            if config.get("pooling_mode_cls_token"):
                return "cls"
            if config.get("pooling_mode_mean_tokens", True):
                return "mean"
            raise ValueError(f"{directory}: only mean or CLS pooling is supported, got {config}")
    return "mean"


def read_prompts(directory: Path) -> dict[str, str]:
    """Named prompts ("query: ", ...) of a sentence-transformers checkpoint."""
    path = directory / "config_sentence_transformers.json"
    if not path.exists():
        return {}
    return {k: v for k, v in json.loads(path.read_text()).get("prompts", {}).items() if v}


def read_max_tokens(directory: Path, config, tokenizer) -> int:
    """The context length: sentence-transformers' max_seq_length, capped by the positions."""
    positions = config.max_position_embeddings
    if config.model_type in OFFSET_POSITION_TYPES:  # positions start after padding_idx
        positions -= config.pad_token_id + 1
    limit = positions
    st_config = directory / "sentence_bert_config.json"
    if st_config.exists():
        limit = json.loads(st_config.read_text()).get("max_seq_length") or limit
    elif tokenizer.model_max_length < 1_000_000:
        limit = tokenizer.model_max_length
    return min(limit, positions)


def encoder_capabilities(config, tokenizer, directory: Path, prompts: dict[str, str],
                         pooling: str, backend: str = "torch",
                         adapters: tuple[str, ...] = ()) -> Capabilities:
    """What an encoder checkpoint declares, whichever backend runs it."""
    return FAMILY.capabilities(
        tasks=tuple(dict.fromkeys((*prompts, *adapters))),
        matryoshka_dims=tuple(sorted(getattr(config, "matryoshka_dimensions", None) or ())),
        dim=config.hidden_size,
        min_dim=min(MIN_TRUNCATED_DIM, config.hidden_size),
        max_tokens=read_max_tokens(directory, config, tokenizer),
        pooling=pooling,
        reranker="bi-encoder",
        backend=backend,
        extras={"architecture": (config.architectures or [config.model_type])[0],
                "source": str(directory)},
    )


class HFEncoder(TextEncoder):
    """A text embedder over a transformers encoder, pooled as its checkpoint says."""

    def __init__(self, model, tokenizer, directory: Path, name: str = "", packed: bool = True):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name or directory.name
        self.pooling = read_pooling_mode(directory)
        self.packed = packed and supports_packing(model)
        self.prompts = read_prompts(directory)
        self.adapters = attach_adapters(self.model, directory)
        self.pad_id = tokenizer.pad_token_id or 0
        self.capabilities = encoder_capabilities(model.config, tokenizer, directory,
                                                 self.prompts, self.pooling,
                                                 adapters=self.adapters)

    @classmethod
    def from_pretrained(cls, directory: str | Path, name: str = "",
                        dtype: torch.dtype = torch.float32, packed: bool = True) -> HFEncoder:
        """transformers loads the stock architecture; the tokenizer and pooling come with it."""
        directory = Path(directory)
        model = AutoModel.from_pretrained(directory, dtype=dtype)
        return cls(model, AutoTokenizer.from_pretrained(directory), directory, name, packed)

    @torch.inference_mode()
    def hidden_states(self, jobs: Sequence[EncodeJob]) -> list[torch.Tensor]:
        """Last hidden states per job, [L_i, D]: packed when the architecture allows; a job
        whose task is an adapter runs with it (jobs of one call share a task, else they are
        run task by task)."""
        if not self.adapters or not jobs:
            return self._forward(jobs)
        tasks = list(dict.fromkeys(job.task for job in jobs))
        if len(tasks) > 1:
            states: dict[int, torch.Tensor] = {}
            for task in tasks:
                rows = [i for i, job in enumerate(jobs) if job.task == task]
                states.update(zip(rows, self.hidden_states([jobs[i] for i in rows]),
                                  strict=True))
            return [states[i] for i in range(len(jobs))]
        with active_task(tasks[0] if tasks[0] in self.adapters else None):
            return self._forward(jobs)

    def _forward(self, jobs: Sequence[EncodeJob]) -> list[torch.Tensor]:
        sequences = [job.ids for job in jobs]
        if self.packed:
            return packed_forward(self.model, sequences)
        ids, mask = pad_batch(sequences, self.pad_id)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, L, D]
        return [hidden[row, : len(seq)] for row, seq in enumerate(sequences)]


def build_encoder(config: dict) -> torch.nn.Module:
    """The module tree of a stock transformers encoder (meta-safe)."""
    return AutoModel.from_config(stock_config(config))
