"""The serving half every text encoder shares.

Task prompts, truncation and the over-context error, late-chunking windows, pooling and
Matryoshka truncation live here once; a family (hf_encoder, jina_v2, jina_v3) subclasses
`TextEncoder` and supplies its forward pass, `hidden_states(jobs)`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cached_property

import numpy as np
import torch
from PIL import Image

from polyseek.errors import InputTooLarge, InvalidInput
from polyseek.inputs.text import late_chunking_windows
from polyseek.models.base import (
    Capabilities,
    EncodeJob,
    Input,
    encode_inputs,
)

# Smallest `dimensions` accepted by an encoder not trained for Matryoshka truncation.
MIN_TRUNCATED_DIM = 32


def text_of(item: Input, index: int, model_name: str) -> str:
    """The text of an input, or a clear error naming the model and the input's index."""
    if isinstance(item, str):
        return item
    if isinstance(item, Image.Image):
        raise InvalidInput(
            f"model {model_name!r} is text-only and cannot embed the image at input[{index}]",
            ("input", index),
        )
    raise TypeError(f"input[{index}]: expected text, got {type(item).__name__}")


_TOKENIZER_LOCKS: dict[int, threading.Lock] = {}


def locked_call(tokenizer, *texts: str | list[str], **options):
    """`tokenizer(*texts, **options)`, one call at a time per tokenizer: a fast tokenizer sets
    its truncation on the shared Rust object for the call, so concurrent calls (request
    threads) with different truncation would use each other's."""
    with _TOKENIZER_LOCKS.setdefault(id(tokenizer), threading.Lock()):
        return tokenizer(*texts, **options)


def token_ids(tokenizer, *texts: str | list[str], **options) -> list:
    """`locked_call(...)["input_ids"]`."""
    return locked_call(tokenizer, *texts, **options)["input_ids"]


def special_affixes(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens a tokenizer puts before and after one sequence ([CLS] / [SEP])."""
    bare = token_ids(tokenizer, "a", add_special_tokens=False)
    full = token_ids(tokenizer, "a", add_special_tokens=True)
    start = next(i for i in range(len(full)) if full[i : i + len(bare)] == bare)
    return full[:start], full[start + len(bare) :]


def tokenize(tokenizer, texts: Sequence[str], prompt: str, max_tokens: int, truncate: bool,
             model_name: str, first_index: int = 0) -> list[list[int]]:
    """Token ids of `prompt + text` with special tokens, one list per text. With `truncate`
    they are cut to `max_tokens`; without, a longer input raises InputTooLarge naming it
    (input[first_index + i])."""
    ids = token_ids(tokenizer, [prompt + text for text in texts], truncation=truncate,
                    max_length=max_tokens if truncate else None)
    for i, seq in enumerate(ids):
        if len(seq) > max_tokens:
            raise InputTooLarge(
                f"input[{first_index + i}] has {len(seq)} tokens, over the {max_tokens}-token "
                f"context of {model_name!r}; shorten it or set truncate=true"
            )
    return ids


def pool(tokens: torch.Tensor, mode: str, spans: list[tuple[int, int]] | None) -> np.ndarray:
    """One sequence's token states [L, D] -> [D] ("mean" or "cls"), or [spans, D] per span."""
    tokens = tokens.float()
    if spans is not None:
        return torch.stack([tokens[s:e].mean(0) for s, e in spans]).numpy()
    return (tokens[0] if mode == "cls" else tokens.mean(0)).numpy()


class TextEncoder:
    """An `Embedder` over a text encoder. Subclasses set `name`, `tokenizer`, `capabilities`,
    `prompts` (task -> text put before each input) and `pooling`, and implement
    `hidden_states`."""

    name: str
    tokenizer: object
    capabilities: Capabilities
    prompts: dict[str, str] = {}
    pooling: str = "mean"

    def hidden_states(self, jobs: Sequence[EncodeJob]) -> list[torch.Tensor]:
        """Last hidden states per job, [L_i, D], from one forward pass."""
        raise NotImplementedError

    # -- jobs ------------------------------------------------------------------------------

    def prepare(self, items: Sequence[Input], task: str | None = None, truncate: bool = True,
                late_chunking: bool = False, multivector: bool = False) -> list[EncodeJob]:
        """Validate and tokenise items into forward-pass jobs, the task's prompt first.

        Without `truncate`, an input over the context raises InputTooLarge. With
        `late_chunking`, inputs are joined into as few context windows as they fit (one when
        `truncate` is off), the prompt once at the head of each, and each input is pooled over
        its own token span.
        """
        self.capabilities.check_task(task)
        self.capabilities.check_multivector(multivector)
        texts = [text_of(item, i, self.name) for i, item in enumerate(items)]
        prompt = self.prompts.get(task, "") if task else ""
        limit = self.capabilities.max_tokens
        if late_chunking:
            prefix, suffix = self._affixes
            head = prefix + self._pieces([prompt])[0] if prompt else prefix
            windows = late_chunking_windows(self._pieces(texts), head, suffix, limit, truncate)
            return [EncodeJob(ids, task, spans=spans) for ids, spans in windows]
        ids = tokenize(self.tokenizer, texts, prompt, limit, truncate, self.name)
        return [EncodeJob(seq, task) for seq in ids]

    @cached_property
    def _affixes(self) -> tuple[list[int], list[int]]:
        return special_affixes(self.tokenizer)

    def _pieces(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids without special tokens, for concatenation."""
        return token_ids(self.tokenizer, list(texts), add_special_tokens=False)

    # -- forward ---------------------------------------------------------------------------

    @torch.inference_mode()
    def embed_jobs(self, jobs: Sequence[EncodeJob]) -> list[np.ndarray]:
        """One forward pass over `jobs`; per job the pooled vector [D] (not normalised), or
        one per span [spans, D] for late chunking."""
        if not jobs:
            return []
        states = self.hidden_states(jobs)
        return [pool(tokens, self.pooling, job.spans)
                for job, tokens in zip(jobs, states, strict=True)]

    # -- Python API ------------------------------------------------------------------------

    def encode(self, items: Sequence[Input] | Input, task: str | None = None,
               truncate_dim: int | None = None, multivector: bool = False,
               normalize: bool = True, late_chunking: bool = False,
               batch_size: int = 32) -> np.ndarray:
        """Embed texts: [N, dim] float32; one text alone: [dim] (see `encode_inputs`)."""
        return encode_inputs(self, items, task, truncate_dim, multivector, normalize,
                             late_chunking, batch_size)
