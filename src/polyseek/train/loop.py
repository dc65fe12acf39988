"""The training loop both recipes share: seeded batches, AdamW with linear warm-up and decay,
tqdm progress on stderr, and atomic checkpoints in the output directory to resume from."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from polyseek.train.data import TrainDataError

CHECKPOINT = "checkpoint.pt"

StepFn = Callable[[int], tuple[torch.Tensor, dict[str, float]]]  # step -> (loss, logged terms)


@dataclass
class Schedule:
    steps: int
    learning_rate: float
    warmup: float = 0.1  # fraction of the steps
    weight_decay: float = 0.01
    checkpoint_every: int = 50
    seed: int = 0


@dataclass
class LoopState:
    """What a run carries across a resume besides the weights: the loss of each step done
    and whatever the recipe computed before training (held-out scores, mined negatives)."""

    step: int = 0
    losses: list[dict[str, float]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_order(n: int, epoch: int, seed: int) -> list[int]:
    """A seeded permutation of range(n) per epoch."""
    order = list(range(n))
    random.Random(seed * 100_003 + epoch).shuffle(order)
    return order


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> list[int]:
    """The example indices of `step`: consecutive slices of each epoch's permutation (the
    last, shorter slice of an epoch is dropped when the epoch has a full batch)."""
    per_epoch = max(1, n // batch_size)
    epoch, position = divmod(step, per_epoch)
    order = epoch_order(n, epoch, seed)
    return order[position * batch_size : (position + 1) * batch_size]


def steps_for(n: int, batch_size: int, epochs: float, max_steps: int | None) -> int:
    steps = max(1, round(max(1, n // batch_size) * epochs))
    return min(steps, max_steps) if max_steps else steps


def _lr_factor(schedule: Schedule) -> Callable[[int], float]:
    warm = max(1, round(schedule.steps * schedule.warmup))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (schedule.steps - step) / max(1, schedule.steps - warm))

    return factor


def checkpoint_path(output: Path) -> Path:
    return output / CHECKPOINT


def save_checkpoint(path: Path, params: dict[str, torch.nn.Parameter], optimizer, scheduler,
                    state: LoopState, config: dict) -> None:
    """Everything to continue from `state.step`, written to a temporary file and renamed into
    place (a kill never leaves half a checkpoint)."""
    payload = {"config": config, "step": state.step, "losses": state.losses,
               "extra": state.extra, "params": {k: p.detach() for k, p in params.items()},
               "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
               "torch_rng": torch.get_rng_state()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, config: dict) -> dict:
    """The checkpoint at `path`; TrainDataError if it belongs to a run with other settings."""
    payload = torch.load(path, weights_only=False)
    changed = sorted(k for k in set(config) | set(payload["config"])
                     if config.get(k) != payload["config"].get(k))
    if changed:
        raise TrainDataError(f"{path} was written by a run with other settings "
                             f"({', '.join(changed)}); resume with the same ones, or start "
                             "afresh in another --output")
    return payload


def start_state(output: Path, config: dict, resume: bool) -> dict | None:
    """The checkpoint to continue from (None: start afresh); a checkpoint left by an
    unfinished run is never overwritten without --resume."""
    path = checkpoint_path(output)
    if not path.exists():
        if resume:
            tqdm.write(f"no checkpoint in {output}: starting from the beginning")
        return None
    if not resume:
        raise TrainDataError(f"{output} holds the checkpoint of an unfinished run: pass "
                             "--resume to continue it, or remove it to start afresh")
    return load_checkpoint(path, config)


def run(params: dict[str, torch.nn.Parameter], step_fn: StepFn, schedule: Schedule,
        output: Path, config: dict, state: LoopState, payload: dict | None = None,
        on_step: Callable[[int], None] | None = None, description: str = "training"
        ) -> LoopState:
    """Optimise `params` for `schedule.steps` steps of `step_fn`, from `payload` (a
    checkpoint) when given; checkpoints every `checkpoint_every` steps and at the end."""
    trainable = list(params.values())
    optimizer = torch.optim.AdamW(trainable, lr=schedule.learning_rate,
                                  weight_decay=schedule.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(schedule))
    if payload is not None:
        with torch.no_grad():
            for name, tensor in payload["params"].items():
                params[name].copy_(tensor)
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        torch.set_rng_state(payload["torch_rng"])
        state.step, state.losses = payload["step"], payload["losses"]
    path = checkpoint_path(output)
    bar = tqdm(total=schedule.steps, initial=state.step, desc=description, unit="step",
               dynamic_ncols=True)
    while state.step < schedule.steps:
        loss, terms = step_fn(state.step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        state.step += 1
        state.losses.append({"loss": float(loss.detach()), **terms})
        bar.update(1)
        bar.set_postfix(loss=f"{state.losses[-1]['loss']:.4f}")
        if state.step % schedule.checkpoint_every == 0 or state.step == schedule.steps:
            save_checkpoint(path, params, optimizer, scheduler, state, config)
        if on_step is not None:
            on_step(state.step)
    bar.close()
    return state


def mean_loss(losses: Sequence[dict[str, float]], key: str = "loss") -> float:
    values = [row[key] for row in losses if key in row]
    return float(np.mean(values)) if values else float("nan")
