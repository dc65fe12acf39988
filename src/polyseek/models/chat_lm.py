"""Decoder-only chat models (Llama, Qwen, Mistral, ... as transformers loads them).

Loads a checkpoint directory (`config.json` + weights + tokenizer with a chat template) or a
single GGUF file, which transformers de-quantises on load; the de-quantised copy is cached so
later starts skip the conversion (about 40 s for SmolLM2-135M). The cache stores the weights as
float16 and they are loaded back as float32: for the bundled SmolLM2-135M (Q4_1/Q8_0 blocks) it
is 257 MiB instead of 513 MiB, loads faster from a cold page cache (about 0.2 s slower from a
warm one, which float32 maps without copying), and its rounding (at most 2^-11 relative, far
below the 4-bit quantisation's) left greedy generations token-for-token those of the float32
conversion on every prompt measured at 48 tokens; one of eight 96-token stories took another
word at token 70.
Text only: images in a message are refused.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import save_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from polyseek.errors import InvalidInput
from polyseek.models.base import ChatMessage, TextDelta
from polyseek.models.checkpoint import cache_root, mark_derived, remove_superseded
from polyseek.models.families import family_named, stock_config
from polyseek.models.sampling import SamplingParams, next_tokens
from polyseek.models.streaming import stream_text

log = logging.getLogger("polyseek.chat_lm")

FAMILY = family_named("causal-lm")
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


# part of the cache key: a new layout is converted again, never read as the old one
# (v1, without a suffix: float32 weights; v2: float16 weights)
CACHE_VERSION = 2
CACHE_DTYPE = torch.float16  # how the cache stores the weights
COMPUTE_DTYPE = torch.float32  # what they are loaded as


def gguf_cache_dir(gguf: Path) -> Path:
    """Where the de-quantised copy of a GGUF file lives (keyed by name, size, mtime, version)."""
    stat = gguf.stat()
    key = f"{gguf.stem}-{stat.st_size}-{stat.st_mtime_ns}-v{CACHE_VERSION}"
    return cache_root() / "gguf" / key


def stale_caches(cache: Path) -> list[Path]:
    """Other versions' caches of the same file (same name, size and mtime), finished ones."""
    stem = cache.name.rsplit("-v", 1)[0]
    pattern = re.compile(re.escape(stem) + r"(-v\d+)?")
    return [p for p in cache.parent.iterdir()
            if p != cache and p.is_dir() and pattern.fullmatch(p.name)]


def convert_gguf(gguf: Path, cache: Path) -> None:
    """De-quantise `gguf` with transformers into a checkpoint directory at `cache`.

    Written to a staging directory renamed into place, so a cache directory is always
    complete; a concurrent conversion that finished first wins. Other versions' caches of the
    same file, and caches of an older version of the file, are removed afterwards.
    """
    log.info("de-quantising %s (once; cached in %s)", gguf.name, cache)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 dtype=COMPUTE_DTYPE)
    staging = cache.with_name(cache.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    # save_pretrained refuses GGUF-quantised models; the weights are plain tensors now
    save_model(model.to(CACHE_DTYPE), str(staging / "model.safetensors"))
    config = model.config.to_dict() | {"architectures": [type(model).__name__],
                                       "dtype": str(COMPUTE_DTYPE).removeprefix("torch.")}
    config.pop("quantization_config", None)
    (staging / "config.json").write_text(json.dumps(config, indent=2))
    model.generation_config.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    mark_derived(staging, gguf)
    try:
        staging.rename(cache)
    except OSError:  # another process finished the same conversion first
        shutil.rmtree(staging, ignore_errors=True)
    for stale in stale_caches(cache):
        log.info("removing %s (an older cache layout)", stale)
        shutil.rmtree(stale, ignore_errors=True)
    remove_superseded(cache, gguf)


class CausalLMGenerator:
    def __init__(self, model, tokenizer, name: str):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        if not tokenizer.chat_template:
            raise ValueError(f"{name}: the tokenizer has no chat template")
        vocab = tokenizer.get_vocab()
        eos = model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
        extra = [vocab[t] for t in END_OF_TURN_TOKENS if t in vocab]
        self.stop_token_ids = tuple(dict.fromkeys([*eos, tokenizer.eos_token_id, *extra]))
        self.capabilities = FAMILY.capabilities(
            max_tokens=model.config.max_position_embeddings,
            extras={"architecture": (model.config.architectures or [""])[0]},
        )

    @classmethod
    def from_pretrained(cls, directory: Path, name: str = "") -> CausalLMGenerator:
        """transformers loads the stock architecture."""
        tokenizer = AutoTokenizer.from_pretrained(directory)
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=COMPUTE_DTYPE)
        return cls(model, tokenizer, name or directory.name)

    @classmethod
    def from_gguf(cls, gguf: Path, name: str = "") -> CausalLMGenerator:
        """A GGUF file, through its de-quantised cache (converted on first use)."""
        cache = gguf_cache_dir(gguf)
        if not (cache / "config.json").exists():
            convert_gguf(gguf, cache)
        return cls.from_pretrained(cache, name or gguf.stem)

    def prompt_ids(self, messages: Sequence[ChatMessage]) -> list[int]:
        turns = []
        for i, message in enumerate(messages):
            if any(not isinstance(part, str) for part in message.content):
                raise InvalidInput(
                    f"model {self.name!r} is text-only and cannot read the image in "
                    f"messages[{i}]", ("messages", i, "content"))
            turns.append({"role": message.role, "content": "".join(message.content)})
        encoded = self.tokenizer.apply_chat_template(
            turns, add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(encoded["input_ids"])

    @torch.inference_mode()
    def sample(self, prompt: list[int], params: SamplingParams) -> Iterator[int]:
        """Token ids, one per step, with the KV cache; stops when the consumer stops."""
        generator = params.generator()
        ids = torch.tensor([prompt])
        cache = None
        for _ in range(params.max_tokens):
            out = self.model(input_ids=ids, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            token = next_tokens(out.logits[:, -1].float(), params, generator)
            yield int(token[0])
            ids = token[:, None]

    def generate(self, messages: Sequence[ChatMessage],
                 sampling: SamplingParams) -> Iterator[TextDelta]:
        prompt = self.prompt_ids(messages)
        room = self.capabilities.max_tokens - len(prompt)
        if room < 1:
            raise InvalidInput(f"the prompt has {len(prompt)} tokens, over the "
                               f"{self.capabilities.max_tokens}-token context", ("messages",))
        params = replace(sampling, max_tokens=min(sampling.max_tokens, room))
        decode = partial(self.tokenizer.decode, skip_special_tokens=True)
        stops = tuple(sampling.stop_token_ids) + self.stop_token_ids
        yield from stream_text(self.sample(prompt, params), decode, params.max_tokens, stops,
                               sampling.stop, len(prompt))


def build_causal_lm(config: dict) -> torch.nn.Module:
    """The module tree of a stock transformers causal LM (meta-safe)."""
    return AutoModelForCausalLM.from_config(stock_config(config))
