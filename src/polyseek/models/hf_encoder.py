"""Encoder-only transformers (BERT, XLM-R, ...) with sentence-transformers pooling.

Reads a sentence-transformers or plain transformers checkpoint directory: `config.json`,
weights, tokenizer files, and optionally `modules.json` with a Pooling module (mean or CLS)
and `config_sentence_transformers.json` with named prompts, which become the model's tasks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from polyseek.errors import InputTooLarge, InvalidInput
from polyseek.inputs.items import ImageItem, Item, TextItem
from polyseek.inputs.text import late_chunking_windows
from polyseek.models.base import (
    Capabilities,
    EncodeJob,
    encode_texts,
    pad_batch,
)
from polyseek.models.packed_encoder import (
    OFFSET_POSITION_TYPES,
    packed_forward,
    supports_packing,
)

hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()

ENCODER_MODEL_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra", "camembert", "deberta-v2"}
)
# Smallest `dimensions` accepted by an encoder not trained for Matryoshka truncation.
MIN_TRUNCATED_DIM = 32


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


class HFEncoder:
    """A text embedder over a transformers encoder, pooled as its checkpoint says."""

    def __init__(
        self,
        directory: str | Path,
        name: str = "",
        dtype: torch.dtype = torch.float32,
        packed: bool = True,
    ):
        self.directory = Path(directory)
        self.name = name or self.directory.name
        self.tokenizer = AutoTokenizer.from_pretrained(self.directory)
        self.model = AutoModel.from_pretrained(self.directory, dtype=dtype).eval()
        config = self.model.config
        self.pooling = read_pooling_mode(self.directory)
        self.packed = packed and supports_packing(self.model)
        self.prompts = read_prompts(self.directory)
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.prefix, self.suffix = special_affixes(self.tokenizer)
        self.capabilities = Capabilities(
            kind="embedding",
            family="hf-encoder",
            modalities=("text",),
            tasks=tuple(self.prompts),
            dim=config.hidden_size,
            min_dim=min(MIN_TRUNCATED_DIM, config.hidden_size),
            max_tokens=read_max_tokens(self.directory, config, self.tokenizer),
            pooling=self.pooling,
            reranker="bi-encoder",
            extras={"architecture": (config.architectures or [config.model_type])[0],
                    "source": str(self.directory)},
        )

    # -- tokenisation ------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str], truncate: bool) -> list[list[int]]:
        """Token ids with special tokens; cut to max_tokens only when `truncate`."""
        encoded = self.tokenizer(
            list(texts),
            add_special_tokens=True,
            truncation=truncate,
            max_length=self.capabilities.max_tokens if truncate else None,
        )
        return encoded["input_ids"]

    def tokenize_pieces(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids without special tokens, for concatenation (late chunking)."""
        return self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]

    # -- forward -----------------------------------------------------------------------

    def embed_jobs(self, jobs: Sequence[EncodeJob]) -> list[np.ndarray]:
        """One forward pass over `jobs`; each job pooled as it asks."""
        out = []
        for job, tokens in zip(jobs, self.hidden_states([job.ids for job in jobs]), strict=True):
            tokens = tokens.float()  # [L_i, D]
            if job.spans is not None:
                out.append(torch.stack([tokens[s:e].mean(0) for s, e in job.spans]).numpy())
            elif self.pooling == "cls":
                out.append(tokens[0].numpy())
            else:
                out.append(tokens.mean(0).numpy())
        return out

    @torch.inference_mode()
    def hidden_states(self, sequences: list[list[int]]) -> list[torch.Tensor]:
        """Last hidden states per sequence, [L_i, D]: packed when the architecture allows."""
        if self.packed:
            return packed_forward(self.model, sequences)
        ids, mask = pad_batch(sequences, self.pad_id)
        lengths = [len(seq) for seq in sequences]
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, L, D]
        return [hidden[row, :length] for row, length in enumerate(lengths)]

    # -- jobs ------------------------------------------------------------------------

    def prepare(
        self,
        items: Sequence[Item | str],
        task: str | None = None,
        truncate: bool = True,
        late_chunking: bool = False,
        multivector: bool = False,
    ) -> list[EncodeJob]:
        """Validate and tokenise items into forward-pass jobs.

        Without `truncate`, an input over the context raises InputTooLarge. With
        `late_chunking`, inputs are concatenated into as few context windows as they fit
        (one when `truncate` is off) and each input becomes a token span of its window.
        """
        self.capabilities.check_task(task)
        self.capabilities.check_multivector(multivector)
        texts = [text_of(item, i, self.name) for i, item in enumerate(items)]
        prompt = self.prompts.get(task, "") if task else ""
        texts = [prompt + text for text in texts]
        if late_chunking:
            windows = late_chunking_windows(self.tokenize_pieces(texts), self.prefix,
                                            self.suffix, self.capabilities.max_tokens, truncate)
            return [EncodeJob(ids, task, spans=spans) for ids, spans in windows]
        ids = self.tokenize(texts, truncate)
        limit = self.capabilities.max_tokens
        for i, seq in enumerate(ids):
            if len(seq) > limit:
                raise InputTooLarge(
                    f"input[{i}] has {len(seq)} tokens, over the {limit}-token context of "
                    f"{self.name!r}; shorten it or set truncate=true"
                )
        return [EncodeJob(seq, task) for seq in ids]

    # -- Python API --------------------------------------------------------------------

    def encode(
        self,
        items: Sequence[Item | str],
        task: str | None = None,
        truncate_dim: int | None = None,
        multivector: bool = False,
        normalize: bool = True,
        late_chunking: bool = False,
        batch_size: int = 32,
    ) -> np.ndarray:
        """Embed texts: [N, dim] float32, L2-normalised unless `normalize=False`.

        Inputs longer than the context are truncated.
        """
        return encode_texts(self, items, task, truncate_dim, multivector, normalize,
                              late_chunking, batch_size)


def text_of(item: Item | str, index: int, model_name: str) -> str:
    """The text of an item, or a clear error naming the model and the item's index."""
    if isinstance(item, str):
        return item
    if isinstance(item, TextItem):
        return item.text
    if isinstance(item, ImageItem):
        raise InvalidInput(
            f"model {model_name!r} is text-only and cannot embed the image at input[{index}]",
            ("input", index),
        )
    raise TypeError(f"input[{index}]: expected text, got {type(item).__name__}")


def special_affixes(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens a tokenizer puts before and after one sequence ([CLS] / [SEP])."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    start = next(i for i in range(len(full)) if full[i : i + len(bare)] == bare)
    return full[:start], full[start + len(bare) :]
