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
