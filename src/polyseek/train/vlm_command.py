"""`polyseek train vlm`: the two-stage jina-vlm recipe from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def vlm(
    model: Annotated[str, typer.Option(
        "--model", "-m", help="jina-vlm checkpoint directory to start from (stage 2: usually "
        "the stage 1 output)")],
    data: Annotated[Path, typer.Option(
        help="JSONL; stage 1: {\"image\", \"caption\"}; stage 2: {\"image\"?, \"messages\"} or "
        "{\"image\"?, \"prompt\", \"response\"}; image paths relative to the file")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="directory for the trained checkpoint")],
    stage: Annotated[int, typer.Option(
        help="1: connector only (vision tower and language model frozen); 2: connector and "
        "language model (vision tower frozen)")],
    steps: Annotated[int, typer.Option(help="optimiser steps in all")] = 100,
    lr: Annotated[float, typer.Option(help="AdamW learning rate")] = 1e-4,
    batch_size: Annotated[int, typer.Option(help="examples per step")] = 4,
    seed: Annotated[int, typer.Option(help="seeds the data order")] = 0,
    text_data: Annotated[Path | None, typer.Option(
        help="stage 2: JSONL of text-only chats mixed into training")] = None,
    text_only_share: Annotated[float | None, typer.Option(
        help="stage 2: share of steps on text-only chats (default 0.3)")] = None,
    save_every: Annotated[int, typer.Option(help="steps between checkpoints")] = 50,
    log_every: Annotated[int, typer.Option(help="steps between progress lines")] = 10,
    resume: Annotated[bool, typer.Option(
        help="continue from the last checkpoint in --output")] = False,
) -> None:
    """Train jina-vlm's connector (stage 1) or connector + language model (stage 2); writes a
    checkpoint directory that `polyseek serve --model NAME=DIR` serves."""
    if stage not in (1, 2):
        raise typer.BadParameter(f"{stage} is not a stage; use 1 or 2", param_hint="--stage")
    from polyseek.errors import PolyseekError
    from polyseek.train.vlm import VLMTrainConfig, train

    config = VLMTrainConfig(
        model=model, data=data, output=output, stage=stage, steps=steps, lr=lr,
        batch_size=batch_size, seed=seed, text_data=text_data, text_only_share=text_only_share,
        save_every=save_every, log_every=log_every, resume=resume)
    try:
        result = train(config)
    except (ValueError, OSError, PolyseekError) as exc:  # bad data, arguments or files
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if result.losses:
        typer.echo(f"{output}: step {result.step}, loss {result.losses[0]:.4f} -> "
                   f"{result.losses[-1]:.4f} in {result.seconds:.1f}s")
