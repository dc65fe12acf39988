"""The family table: every row resolves, and the README's model table is generated from it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from polyseek.models import build_module
from polyseek.models.families import FAMILIES, families_markdown, family_of

from support import FIXTURES, REPO

JINA = ["jina-embeddings-v2", "jina-embeddings-v3", "jina-clip-v2", "jina-embeddings-v4",
        "jina-reranker-m0", "jina-vlm"]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_row_names_a_builder_and_a_loadable_class(family):
    assert callable(family.resolve(family.builder))
    assert callable(family.serving_class().from_pretrained)
    caps = family.capabilities()
    assert (caps.kind, caps.family, caps.modalities) == (family.kind, family.name,
                                                         family.modalities)


@pytest.mark.parametrize("name", JINA)
def test_released_and_tiny_configs_pick_their_family_and_build_on_meta(name):
    released = json.loads((FIXTURES / name / "manifest_real.json").read_text())["config"]
    tiny = json.loads((FIXTURES / name / "tiny_config.json").read_text())
    tiny = tiny.get("clip_config", tiny)  # clip's fixture also carries its text base config
    assert family_of(released).name == family_of(tiny).name == name
    with torch.device("meta"):
        module = build_module(tiny)
    assert all(p.device.type == "meta" for p in module.parameters())


def test_a_config_no_family_knows_is_a_clear_error():
    with pytest.raises(ValueError, match="unsupported model family.*'t5'"):
        family_of({"model_type": "t5", "architectures": ["T5Model"]})


def test_readme_model_table_is_the_generated_one():
    out = subprocess.run([sys.executable, "-m", "polyseek", "models", "--families"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == families_markdown()
    assert families_markdown() in (REPO / "README.md").read_text()


def test_readme_reranks_with_cross_encoders_only():
    """Every rerank the README shows names a cross-encoder, never a bundled bi-encoder (it
    would change nothing and cost seconds per query), and the README says why."""
    import re

    readme = (REPO / "README.md").read_text()
    named = set(re.findall(r'(?:"rerank": "|--rerank )([\w.-]+)', readme))
    assert named, "the README shows no rerank"
    assert not named & {"multilingual-e5-small", "all-MiniLM-L6-v2", "e5", "minilm"}, named
    assert re.search(r"Do not\s+rerank\s+with\s+the\s+bi-encoder", readme)
