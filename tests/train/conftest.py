import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import write_pairs, write_tiny_encoder, write_tiny_jina_v4  # noqa: E402
from pairs import rows  # noqa: E402


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    return write_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl")


@pytest.fixture(scope="session")
def tiny_jina_v4(tmp_path_factory) -> Path:
    """The tiny random jina-embeddings-v4, its tokenizer covering the training pairs."""
    texts = [text for row in rows() for text in (row["query"], row["positive"],
                                                 *row.get("negatives", []))]
    return write_tiny_jina_v4(tmp_path_factory.mktemp("tiny-jina-v4"), texts)
