"""Reading published checkpoints: safetensors (single file or sharded) into a module, strictly."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

log = logging.getLogger("polyseek.checkpoint")


def cache_root() -> Path:
    """Where converted checkpoints are cached: $POLYSEEK_CACHE, else ~/.cache/polyseek."""
    return Path(os.environ.get("POLYSEEK_CACHE", Path.home() / ".cache" / "polyseek"))


DERIVED_FROM = "derived_from.json"  # in a cache entry: the file or directory it was made from


def mark_derived(entry: Path, source: Path) -> None:
    """Record in a cache entry (before it is renamed into place) what it was made from."""
    (entry / DERIVED_FROM).write_text(json.dumps({"source": str(source.resolve())}))


def remove_superseded(entry: Path, source: Path) -> list[Path]:
    """Delete the other finished cache entries beside `entry` made from the same source (an
    older version of the file, or an older recipe) or from a source that no longer exists
    (e.g. the file of an upgraded package): each holds hundreds of MB. Returns them."""
    source = str(source.resolve())
    removed = []
    for sibling in entry.parent.iterdir():
        if sibling == entry or ".tmp" in sibling.name or not sibling.is_dir():
            continue
        try:
            made_from = json.loads((sibling / DERIVED_FROM).read_text())["source"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a marked entry: leave it
        if made_from == source or not Path(made_from).exists():
            log.info("removing %s (superseded by %s)", sibling, entry.name)
            shutil.rmtree(sibling, ignore_errors=True)
            removed.append(sibling)
    return removed


def read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of `model.safetensors` or of the shards its index lists."""
    index = directory / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (directory / "model.safetensors").exists():
        shards = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"{directory} has no model.safetensors (or index of shards)")
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        state.update(load_file(directory / shard))
    return state


def load_strict(module: nn.Module, state: dict[str, torch.Tensor],
                tied: dict[str, str] | None = None) -> None:
    """Load every parameter with strict name and shape checks, assigning the tensors.

    `tied` maps a parameter to the one it shares storage with (e.g. lm_head -> embedding):
    a checkpoint may omit the tied copy; if it stores a different tensor, a warning says so.
    The module may live on the meta device; its tensors are replaced by the checkpoint's.
    """
    state = dict(state)
    for alias, source in (tied or {}).items():
        if alias in state and not torch.equal(state[alias], state[source]):
            log.warning("%s differs from %s although the config ties them; using %s",
                        alias, source, source)
        state[alias] = state[source]
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"checkpoint does not match the module: missing {missing[:5]} ({len(missing)}), "
            f"unexpected {unexpected[:5]} ({len(unexpected)}), shapes {wrong[:5]}"
        )
    module.load_state_dict(state, strict=True, assign=True)
    for alias, source in (tied or {}).items():  # assign=True gave each name its own tensor
        owner, _, name = alias.rpartition(".")
        setattr(module.get_submodule(owner), name, module.get_parameter(source))


def qwen_vl_module_key(key: str) -> str:
    """A Qwen-VL checkpoint's legacy name -> its name in current transformers' module tree.

    `model.X` -> `model.language_model.X` (unless already under language_model/visual),
    `visual.X` -> `model.visual.X`; any other name is unchanged.
    """
    if key.startswith(("model.language_model.", "model.visual.")):
        return key
    if key.startswith("model."):
        return "model.language_model." + key.removeprefix("model.")
    if key.startswith("visual."):
        return "model." + key
    return key
