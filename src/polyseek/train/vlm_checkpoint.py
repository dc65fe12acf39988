"""Checkpoints of the jina-vlm recipe: a loadable model directory plus resumable state.

`OUTPUT/checkpoint-N/` holds everything at step N: `config.json`, `model.safetensors`, the
tokenizer and processor files, `optimizer.pt` and `trainer_state.json`. It is written under a
temporary name and renamed into place, so a checkpoint is either complete or absent. `OUTPUT/`
itself always holds the latest model (hard links to the checkpoint's files, each replaced
atomically), so `polyseek.load_model(OUTPUT)` loads it; only the latest checkpoint is kept.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from polyseek.models.jina_vlm.model import JinaVLMForConditionalGeneration

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
WEIGHTS_FILE = "model.safetensors"
_NOT_SUPPORT = (".safetensors", ".safetensors.index.json", ".bin", ".pt", ".pth", ".gguf")


def support_files(directory: Path) -> dict[str, bytes]:
    """The checkpoint's files other than weights and training state: config, tokenizer,
    chat template, processor settings (read into memory: the directory may be replaced)."""
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())
            if path.is_file() and not path.name.endswith(_NOT_SUPPORT)
            and path.name != STATE_FILE}


def model_tensors(model: JinaVLMForConditionalGeneration) -> dict[str, torch.Tensor]:
    """The state dict under the released names; a tied `lm_head.weight` is left out."""
    state = model.state_dict()
    if model.config.text.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    return {name: tensor.detach().contiguous() for name, tensor in state.items()}


def latest_checkpoint(output: Path) -> Path | None:
    """The complete `checkpoint-N` directory with the highest N, if any."""
    found = [p for p in output.glob("checkpoint-*")
             if p.is_dir() and (p / STATE_FILE).is_file() and p.name[11:].isdigit()]
    return max(found, key=lambda p: int(p.name[11:]), default=None)


def read_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / STATE_FILE).read_text())


def write_checkpoint(output: Path, model: JinaVLMForConditionalGeneration,
                     optimizer: torch.optim.Optimizer, support: dict[str, bytes],
                     state: dict) -> Path:
    """Write `checkpoint-{state['step']}` atomically, publish its model files in `output`,
    and remove older checkpoints. Returns the checkpoint directory."""
    output.mkdir(parents=True, exist_ok=True)
    final = output / f"checkpoint-{state['step']}"
    partial = output / f".{final.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    for name, data in support.items():
        (partial / name).write_bytes(data)
    save_file(model_tensors(model), partial / WEIGHTS_FILE, metadata={"format": "pt"})
    (partial / WEIGHTS_FILE).chmod(0o644)  # readable like the other files
    torch.save(optimizer.state_dict(), partial / OPTIMIZER_FILE)
    (partial / STATE_FILE).write_text(json.dumps(state, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    _publish(final, output)
    for old in output.glob("checkpoint-*"):
        if old != final and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return final


def _publish(checkpoint: Path, output: Path) -> None:
    """Make `output` hold the checkpoint's model files, each swapped in atomically."""
    for source in sorted(checkpoint.iterdir()):
        if source.name == OPTIMIZER_FILE:
            continue
        temporary = output / f".{source.name}.tmp"
        temporary.unlink(missing_ok=True)
        try:
            os.link(source, temporary)
        except OSError:  # no hard links on this file system
            shutil.copy2(source, temporary)
        os.replace(temporary, output / source.name)
