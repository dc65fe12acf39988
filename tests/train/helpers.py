"""Tiny real-architecture models and data for the training tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from pairs import write_pairs  # noqa: F401 - re-exported for the tests

from support import MINILM_SOURCE


def write_tiny_encoder(directory: Path, hidden_size: int = 32) -> Path:
    """A tiny random BERT encoder (mean pooling, 64-token context) with MiniLM's tokenizer,
    saved as a checkpoint directory."""
    import torch
    from transformers import BertConfig, BertModel

    from polyseek.models import resolve_source

    config = BertConfig(vocab_size=30522, hidden_size=hidden_size, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=2 * hidden_size,
                        max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    source = resolve_source(MINILM_SOURCE)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"):
        shutil.copy(source / name, directory / name)
    return directory


def write_tiny_jina_v4(directory: Path, texts: list[str]) -> Path:
    """The tiny random jina-embeddings-v4 of the fixtures laid out as a released checkpoint
    directory, with a word-level tokenizer whose vocabulary covers `texts` and the prompts."""
    import json
    import re

    from safetensors.torch import load_file, save_file
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    from support import FIXTURES

    v4 = FIXTURES / "jina-embeddings-v4"
    weights = load_file(v4 / "tiny_weights.safetensors")
    adapters = {k: v for k, v in weights.items() if k.startswith("base_model.")}
    save_file({k: v for k, v in weights.items() if k not in adapters},
              directory / "model.safetensors")
    (directory / "adapters").mkdir()
    save_file(adapters, directory / "adapters" / "adapter_model.safetensors")
    shutil.copy(v4 / "tiny_adapter_config.json", directory / "adapters" / "adapter_config.json")
    shutil.copy(v4 / "tiny_config.json", directory / "config.json")
    (directory / "preprocessor_config.json").write_text(json.dumps(
        {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "merge_size": 2}))
    specials = json.loads((v4 / "golden.json").read_text())["tiny_special_token_ids"]
    pattern = r" ?\w+|[^\w\s]|\n"
    sources = ["Query: ", "Passage: ", "user\nDescribe the image.", *texts,
               *(" " + text for text in texts)]
    words = [w for text in sources for w in re.findall(pattern, text)]
    vocab = {"[UNK]": 1, **{w: i for i, w in enumerate(dict.fromkeys(words), start=2)}}
    assert len(vocab) < min(specials.values())
    tokenizer = Tokenizer(models.WordLevel({**vocab, **specials}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), "isolated")
    tokenizer.add_special_tokens(list(specials))
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<|endoftext|>",
        "model_max_length": 4096}))
    return directory
