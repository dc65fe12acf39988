"""Writing trained models as self-contained checkpoint directories `polyseek serve` loads."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors import safe_open

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".pt", ".h5", ".msgpack", ".ckpt")
MODULE_DIR = re.compile(r"^\d+_\w+$")  # sentence-transformers modules: 1_Pooling, 2_Normalize
ST_CONFIG = "config_sentence_transformers.json"
SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "F64": torch.float64}


def copy_base_files(base: Path, output: Path, weights: bool = False) -> None:
    """The base checkpoint's config, tokenizer and sentence-transformers files (and with
    `weights`, its safetensors: hard-linked when on the same file system, else copied)."""
    output.mkdir(parents=True, exist_ok=True)
    for item in base.iterdir():
        target = output / item.name
        if item.is_dir():
            if MODULE_DIR.match(item.name):
                shutil.copytree(item, target, dirs_exist_ok=True)
        elif item.suffix in WEIGHT_SUFFIXES:
            if weights and item.suffix == ".safetensors":
                link_or_copy(item, target)
        elif item.name != "README.md" and not item.name.startswith("."):
            shutil.copy2(item, target)


def link_or_copy(source: Path, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copy2(source, tmp)
    os.replace(tmp, target)


def set_prompt(output: Path, task: str, prompt: str) -> None:
    """Name `prompt` for `task` in the directory's sentence-transformers config."""
    if not prompt:
        return
    path = output / ST_CONFIG
    config = json.loads(path.read_text()) if path.exists() else {}
    config.setdefault("prompts", {})[task] = prompt
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def replace_dir(source: Path, target: Path) -> None:
    """Move the finished `source` directory to `target`, replacing what was there."""
    if target.exists():
        old = target.with_name(target.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)


def stored_dtypes(directory: Path) -> dict[str, torch.dtype]:
    """The dtype of every tensor in a checkpoint's safetensors files (read from headers)."""
    dtypes = {}
    for path in sorted(directory.glob("*.safetensors")):
        with safe_open(path, "pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                dtype = SAFETENSORS_DTYPES.get(f.get_slice(key).get_dtype())
                if dtype is not None:
                    dtypes[key] = dtype
    return dtypes
