"""The two-stage jina-vlm recipe.

Stage 1 aligns the vision-language connector (attention pooling + projector) on image-caption
pairs with the vision tower and the language model frozen. Stage 2 trains the connector and
the language model (the vision tower stays frozen) on instruction chats, mixed with a share of
text-only chats so the language model keeps its text skills. The loss is next-token cross
entropy on assistant tokens only.

Every step's batch is a function of (seed, step): a resumed run continues exactly where the
saved one stopped.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from polyseek.models.jina_vlm.generator import JinaVLMGenerator
from polyseek.models.jina_vlm.model import JinaVLMForConditionalGeneration
from polyseek.train.vlm_checkpoint import (
    OPTIMIZER_FILE,
    latest_checkpoint,
    read_state,
    support_files,
    write_checkpoint,
)
from polyseek.train.vlm_data import (
    IGNORE,
    ChatEncoder,
    DataError,
    Encoded,
    Example,
    collate,
    load_captions,
    load_chats,
)

CONNECTOR = "model.vision_model.vl_connector."
LANGUAGE_MODEL = ("model.language_model.", "lm_head.")
TRAINED = {1: (CONNECTOR,), 2: (CONNECTOR, *LANGUAGE_MODEL)}
TRAINED_NAMES = {1: "the connector", 2: "the connector and the language model"}
DEFAULT_TEXT_ONLY_SHARE = 0.3
# a resumed run must repeat these, or its batches would not continue the saved run's
RESUME_KEYS = ("stage", "seed", "batch_size", "text_only_share")


class TrainingError(ValueError):
    """Arguments or files the recipe cannot run with."""


@dataclass
class VLMTrainConfig:
    model: str  # jina-vlm checkpoint directory (or anything polyseek.load_model resolves)
    data: Path  # stage 1: captions JSONL; stage 2: chats JSONL
    output: Path
    stage: int
    steps: int = 100
    lr: float = 1e-4
    batch_size: int = 4
    seed: int = 0
    text_data: Path | None = None  # stage 2: extra text-only chats
    text_only_share: float | None = None  # stage 2 (default 0.3); fraction of batches
    save_every: int = 50
    log_every: int = 10
    resume: bool = False
    max_grad_norm: float = 1.0


@dataclass
class TrainResult:
    output: Path
    start_step: int  # steps already done before this run
    step: int  # steps done after it
    losses: list[float] = field(default_factory=list)  # one per step run here
    text_only: list[bool] = field(default_factory=list)  # per step run here
    seconds: float = 0.0

    @property
    def text_only_batches(self) -> int:
        return sum(self.text_only)


def stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def freeze_for_stage(model: JinaVLMForConditionalGeneration, stage: int) -> list[str]:
    """Let only the stage's modules learn; returns the trainable parameter names."""
    prefixes = TRAINED[stage]
    names = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(prefixes))
        if parameter.requires_grad:
            names.append(name)
    return names


def text_only_schedule(steps: int, share: float) -> list[bool]:
    """Which steps take a text-only batch: spread evenly, floor(n * share) of the first n."""
    def done(n: int) -> int:
        return math.floor(n * share + 1e-9)
    return [done(i + 1) > done(i) for i in range(steps)]


def batch_indices(size: int, batch_size: int, seed: int, pool: int, k: int) -> list[int]:
    """The k-th batch of a pool of `size` examples: consecutive slices of a stream of
    seeded shuffles (one per epoch)."""
    out = []
    for position in range(k * batch_size, (k + 1) * batch_size):
        epoch, offset = divmod(position, size)
        order = np.random.default_rng([seed, pool, epoch]).permutation(size)
        out.append(int(order[offset]))
    return out


def batch_for_step(pools: tuple[list[Encoded], list[Encoded]], schedule: list[bool], step: int,
                   batch_size: int, seed: int) -> list[Encoded]:
    """The batch of `step`: the next one from the text-only pool if the schedule says so,
    else from the image pool."""
    text_only = schedule[step]
    earlier_text = sum(schedule[:step])
    k = earlier_text if text_only else step - earlier_text  # batches this pool gave before
    pool = pools[int(text_only)]
    return [pool[i] for i in batch_indices(len(pool), batch_size, seed, int(text_only), k)]


def loss_on(model: JinaVLMForConditionalGeneration, batch: tuple) -> torch.Tensor:
    """Mean next-token cross entropy over the positions with a label."""
    inputs, labels = batch
    logits = model(inputs)
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)


def _check(config: VLMTrainConfig) -> float:
    """Validate the arguments; returns the text-only share."""
    if config.stage not in TRAINED:
        raise TrainingError(f"unknown stage {config.stage}: 1 (connector) or 2 (connector + "
                            "language model)")
    for name in ("steps", "batch_size", "save_every", "log_every"):
        if getattr(config, name) < 1:
            raise TrainingError(f"{name} must be at least 1")
    if not config.lr > 0:
        raise TrainingError("lr must be positive")
    if config.stage == 1:
        if config.text_data is not None or config.text_only_share:
            raise TrainingError("stage 1 trains on image-caption pairs only; text-only data "
                                "belongs to stage 2")
        return 0.0
    share = DEFAULT_TEXT_ONLY_SHARE if config.text_only_share is None else config.text_only_share
    if not 0 <= share < 1:
        raise TrainingError(f"text-only share must be in [0, 1), got {share}")
    return share


def _load_examples(config: VLMTrainConfig, share: float) -> tuple[list[Example], list[Example]]:
    """(image examples, text-only examples) for the stage."""
    if config.stage == 1:
        return load_captions(config.data), []
    examples = load_chats(config.data)
    if config.text_data is not None:
        extra = load_chats(config.text_data)
        if not all(e.text_only for e in extra):
            where = next(e.where for e in extra if not e.text_only)
            raise DataError(f"{where}: text-only data must have no image")
        examples += extra
    images = [e for e in examples if not e.text_only]
    texts = [e for e in examples if e.text_only]
    if not images:
        raise DataError(f"{config.data}: stage 2 needs examples with an image")
    if share > 0 and not texts:
        raise DataError(f"a text-only share of {share:g} needs text-only chats: pass "
                        "--text-data or add records without an image")
    return images, texts


def _start(config: VLMTrainConfig, share: float) -> tuple[Path, dict | None]:
    """(directory to load the model from, saved state to resume or None)."""
    output = config.output
    if config.resume:
        checkpoint = latest_checkpoint(output) if output.is_dir() else None
        if checkpoint is None:
            raise TrainingError(f"nothing to resume: {output} holds no checkpoint")
        state = read_state(checkpoint)
        wanted = {"stage": config.stage, "seed": config.seed, "batch_size": config.batch_size,
                  "text_only_share": share}
        changed = [f"{k} {state['config'][k]} -> {wanted[k]}" for k in RESUME_KEYS
                   if state["config"][k] != wanted[k]]
        if changed:
            raise TrainingError(f"cannot resume {checkpoint} with other settings: "
                                + ", ".join(changed))
        return checkpoint, state
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise TrainingError(f"{output} exists and is not empty; pass --resume to continue "
                            "its training or choose a new directory")
    from polyseek.models import resolve_source
    from polyseek.models.families import family_of, read_config

    directory = resolve_source(config.model)
    family = family_of(read_config(directory)).name
    if family != "jina-vlm":
        raise TrainingError(f"{config.model} is a {family} checkpoint, not jina-vlm")
    return directory, None


def train(config: VLMTrainConfig, log: Callable[[str], None] = stderr) -> TrainResult:
    """Run (or resume) the stage's training up to `config.steps`; returns the losses."""
    share = _check(config)
    image_examples, text_examples = _load_examples(config, share)
    directory, saved = _start(config, share)
    generator = JinaVLMGenerator.from_pretrained(directory)
    model = generator.model
    freeze_for_stage(model, config.stage)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=0.0)
    start = 0
    history: dict = {"losses": [], "text_only": []}
    if saved is not None:
        optimizer.load_state_dict(torch.load(directory / OPTIMIZER_FILE, weights_only=True))
        for group in optimizer.param_groups:
            group["lr"] = config.lr
        start = saved["step"]
        history = {"losses": saved["losses"], "text_only": saved["text_only"]}
    support = support_files(directory)

    encoder = ChatEncoder(generator.tokenizer, model.config.text.embedding_size)
    pools = ([encoder(e) for e in image_examples], [encoder(e) for e in text_examples])
    schedule = text_only_schedule(config.steps, share)
    n_trainable = sum(p.numel() for p in parameters)
    n_total = sum(p.numel() for p in model.parameters())
    log(f"stage {config.stage}: {len(pools[0])} image examples, {len(pools[1])} text-only; "
        f"training {TRAINED_NAMES[config.stage]} ({n_trainable:,} of {n_total:,} parameters)"
        + (f"; resuming at step {start}" if start else ""))
    result = TrainResult(config.output, start, start)
    if start >= config.steps:
        log(f"already trained for {start} steps (--steps {config.steps}): nothing to do")
        return result

    began = time.perf_counter()
    for step in range(start, config.steps):
        text_only = schedule[step]
        batch = batch_for_step(pools, schedule, step, config.batch_size, config.seed)
        inputs = collate(generator.processor, batch, model.config.text.max_sequence_length)
        loss = loss_on(model, inputs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
        optimizer.step()
        result.losses.append(float(loss.detach()))
        result.text_only.append(text_only)
        result.step = step + 1
        if step == start or result.step % config.log_every == 0 or result.step == config.steps:
            elapsed = time.perf_counter() - began
            log(f"step {result.step}/{config.steps}  loss {result.losses[-1]:.4f}  "
                f"{'text-only' if text_only else 'image'}  {elapsed:.1f}s")
        if result.step % config.save_every == 0 or result.step == config.steps:
            state = {"step": result.step, "config": _saved_config(config, share),
                     "losses": history["losses"] + result.losses,
                     "text_only": history["text_only"] + result.text_only}
            write_checkpoint(config.output, model, optimizer, support, state)
    result.seconds = time.perf_counter() - began
    log(f"saved {config.output} (step {result.step})")
    return result


def _saved_config(config: VLMTrainConfig, share: float) -> dict:
    saved = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
    saved["text_only_share"] = share
    return saved
