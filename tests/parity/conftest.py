"""Fixture files of the family a parity test module covers (its `FIXTURE_DIR`)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file


@pytest.fixture(scope="module")
def manifest(request) -> dict:
    """The released checkpoint's parameter names and shapes, and its config."""
    return json.loads((request.module.FIXTURE_DIR / "manifest_real.json").read_text())


@pytest.fixture(scope="module")
def golden(request) -> dict[str, torch.Tensor]:
    """The reference's inputs and outputs on the tiny random weights."""
    return load_file(request.module.FIXTURE_DIR / "golden.safetensors")


@pytest.fixture(scope="module")
def golden_json(request) -> dict:
    return json.loads((request.module.FIXTURE_DIR / "golden.json").read_text())
