"""`polyseek train embedder`: contrastive fine-tuning of an encoder (full, or a task LoRA).

InfoNCE over in-batch and hard negatives (given, or mined with the starting model), summed
over Matryoshka prefixes; held-out nDCG@10 (and its Matryoshka curve) before and after.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from polyseek.eval.data import Dataset
from polyseek.models import DEFAULT_MODEL_SOURCE, load_model, resolve_source
from polyseek.models.base import Embedder, truncate_and_normalize
from polyseek.models.hf_encoder import HFEncoder
from polyseek.models.jina_clip import JinaClipV2
from polyseek.models.jina_v3 import JinaEmbeddingsV3
from polyseek.models.jina_v4 import JinaEmbeddingsV4
from polyseek.train import evaluate, loop
from polyseek.train.data import (
    Example,
    TrainDataError,
    TrainingData,
    examples,
    heldout_dataset,
    load_training_data,
    split_heldout,
    write_beir,
)
from polyseek.train.jina_clip_trainee import JinaClipTrainee
from polyseek.train.jina_v3_trainee import JinaV3Trainee
from polyseek.train.jina_v4_trainee import JinaV4Trainee
from polyseek.train.losses import (
    false_negative_mask,
    late_interaction_info_nce,
    matryoshka_info_nce,
)
from polyseek.train.trainee import EncoderTrainee, Trainee

CURVE_DIMS = (64, 128, 256)  # curve points when neither the model nor the run names dims
REPORT = "train_report.json"


@dataclass
class EmbedderSettings:
    """One training run (every field but `output`, `resume` and `checkpoint_every` must
    match to resume a checkpoint)."""

    data: str
    output: Path
    model: str = DEFAULT_MODEL_SOURCE
    lora: bool = False
    task: str | None = None  # the adapter's task name (LoRA)
    prompt: str | None = None  # the adapter task's prompt; default: the model's query prompt
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 16
    learning_rate: float | None = None  # default 3e-5 (full) or 3e-4 (LoRA)
    temperature: float = 0.05
    matryoshka_dims: tuple[int, ...] | None = None
    matryoshka_weights: tuple[float, ...] | None = None  # one per dim; the full size weighs 1
    mine_negatives: int = 0
    negatives_per_query: int = 1
    heldout: float = 0.1
    split: str = "train"
    max_length: int = 128
    lora_rank: int | None = None  # default 8 (alpha 2 x rank); v3/v4 tasks take the model's
    train_embeddings: bool = False  # full fine-tuning: also the token embedding matrix
    seed: int = 0
    checkpoint_every: int = 50
    resume: bool = False
    on_step: Callable[[int], None] | None = field(default=None, repr=False, compare=False)

    def fingerprint(self) -> dict:
        skip = {"output", "resume", "checkpoint_every", "on_step"}
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items() if k not in skip}


def check_settings(s: EmbedderSettings) -> None:
    if s.lora and not s.task:
        raise TrainDataError("--lora needs --task NAME: the task the adapter is served as")
    if s.task and not s.lora:
        raise TrainDataError("--task names a LoRA adapter; add --lora")
    if s.lora_rank and not s.lora:
        raise TrainDataError("--lora-rank is a LoRA adapter's rank; add --lora --task NAME")
    if s.batch_size < 2:
        raise TrainDataError("--batch-size must be at least 2 (in-batch negatives)")
    if s.temperature <= 0:
        raise TrainDataError("--temperature must be positive")
    if s.mine_negatives < 0 or s.negatives_per_query < 0:
        raise TrainDataError("negative counts must be 0 or more")


def load_trainee(settings: EmbedderSettings) -> tuple[Trainee, Embedder, Path]:
    """The model to train (as loaded for serving), wrapped for its family, and its
    checkpoint directory."""
    directory = resolve_source(settings.model)
    model = load_model(settings.model, backend="torch")
    if isinstance(model, HFEncoder):
        trainee = EncoderTrainee(
            model, settings.model, lora=settings.lora, task=settings.task,
            prompt=settings.prompt, lora_rank=settings.lora_rank or 8,
            train_embeddings=settings.train_embeddings,
            max_length=settings.max_length)
    elif isinstance(model, JinaEmbeddingsV3 | JinaEmbeddingsV4) and settings.lora_rank:
        raise TrainDataError(f"{settings.model}: a new {model.capabilities.family} task takes "
                             "the rank of the model's adapters (one for every task); drop "
                             "--lora-rank")
    elif isinstance(model, JinaEmbeddingsV3):
        trainee = JinaV3Trainee(model, settings.lora, settings.task, prompt=settings.prompt,
                                max_length=settings.max_length, seed=settings.seed)
    elif isinstance(model, JinaEmbeddingsV4):
        trainee = JinaV4Trainee(model, settings.lora, settings.task, settings.prompt,
                                settings.max_length)
    elif isinstance(model, JinaClipV2):
        trainee = JinaClipTrainee(model, settings.lora, settings.task, settings.prompt,
                                  settings.max_length, settings.train_embeddings)
    else:
        raise TrainDataError(f"{settings.model}: embedder training takes a transformers "
                             "encoder (hf-encoder family, full or --lora), "
                             "jina-embeddings-v3/v4 (--lora --task NAME) or jina-clip-v2 "
                             f"(full), not {model.capabilities.family}")
    return trainee, model, directory


def check_modalities(data: TrainingData, encoder: Embedder, source: str) -> None:
    """Image items need a model that reads images."""
    image = data.first_image
    if image is not None and "image" not in encoder.capabilities.modalities:
        raise TrainDataError(f"{image.where}: an image item, but {source} "
                             f"({encoder.capabilities.family}) reads text only; train a "
                             "model that reads images (jina-clip-v2, jina-embeddings-v4)")


def mine(encoder: Embedder, data: TrainingData, train: list, heldout: list, count: int,
         doc_vectors: np.ndarray, doc_ids: list[str]) -> dict[str, list[str]]:
    """Per training query, its `count` nearest passages under the starting model that are
    not among its positives nor held-out positives."""
    caps = encoder.capabilities
    queries = evaluate.embed(encoder, [q.text for q in train], caps.role_task("query"))
    similarity = truncate_and_normalize(queries, None, True) @ \
        truncate_and_normalize(doc_vectors, None, True).T
    held = {d for q in heldout for d in q.positives}
    banned_columns = np.array([d in held for d in doc_ids])
    similarity[:, banned_columns] = -np.inf
    mined = {}
    for row, query in enumerate(train):
        own = {data.corpus[d] for d in query.positives}
        picks = []
        for j in np.argsort(-similarity[row], kind="stable"):
            if len(picks) == count or similarity[row, j] == -np.inf:
                break
            if doc_ids[j] not in query.positives and data.corpus[doc_ids[j]] not in own:
                picks.append(doc_ids[j])
        mined[query.id] = picks
    return mined


def curve_dims(settings: EmbedderSettings, encoder: Embedder) -> tuple[tuple[int, ...], list]:
    """(dims the loss covers, dims the held-out curve reports)."""
    trained = tuple(settings.matryoshka_dims or encoder.capabilities.matryoshka_dims or ())
    full = encoder.capabilities.dim
    if any(d < 1 or d > full for d in trained):
        raise TrainDataError(f"--matryoshka-dims must lie between 1 and {full}")
    return trained, sorted(set(trained or CURVE_DIMS))


def loss_weights(settings: EmbedderSettings, trained: tuple[int, ...]) -> dict[int, float]:
    """The Matryoshka term weight of each trained dim (the others weigh 1)."""
    weights = settings.matryoshka_weights
    if not weights:
        return {}
    if len(weights) != len(trained):
        raise TrainDataError(f"--matryoshka-weights gives {len(weights)} weights for "
                             f"{len(trained)} Matryoshka dims {list(trained)}")
    if any(w <= 0 for w in weights):
        raise TrainDataError("--matryoshka-weights must be positive")
    return dict(zip(trained, weights, strict=True))


def prepare(encoder: Embedder, data: TrainingData, train: list, heldout: list,
            dataset: Dataset, settings: EmbedderSettings, dims: list[int]) -> dict:
    """What is computed once with the starting model: the held-out curve, mined negatives."""
    caps = encoder.capabilities
    doc_ids = list(dataset.corpus)
    doc_vectors = evaluate.embed(encoder, [dataset.corpus[d] for d in doc_ids],
                                 caps.role_task("document"))
    before = evaluate.dense_curve(encoder, dataset, caps.role_task("query"),
                                  caps.role_task("document"), dims, doc_vectors)
    mined = (mine(encoder, data, train, heldout, settings.mine_negatives, doc_vectors, doc_ids)
             if settings.mine_negatives else {})
    extra = {"before": before, "mined": mined}
    if caps.multivector:
        extra["before_multi"] = evaluate.maxsim_ndcg(encoder, dataset, caps.role_task("query"),
                                                     caps.role_task("document"))
    return extra


def step_function(trainee: Trainee, rows: list[Example], settings: EmbedderSettings,
                  dims: tuple[int, ...], weights: dict[int, float]) -> loop.StepFn:
    def step(index: int) -> tuple[torch.Tensor, dict[str, float]]:
        batch = [rows[i] for i in loop.batch_indices(index, len(rows), settings.batch_size,
                                                     settings.seed)]
        pick = random.Random(settings.seed * 7919 + index)
        negatives = [text for row in batch for text in pick.sample(
            row.negatives, min(settings.negatives_per_query, len(row.negatives)))]
        documents = [row.positive for row in batch] + negatives
        queries = trainee.encode([row.query for row in batch], "query")
        docs = trainee.encode(documents, "document")
        mask = false_negative_mask([row.positives for row in batch], documents)
        total, terms = matryoshka_info_nce(queries.pooled, docs.pooled, mask,
                                           settings.temperature, dims, weights)
        logged = {f"loss@{d}": float(t.detach()) for d, t in terms.items()}
        if queries.tokens is not None:  # the multi-vector head: late-interaction InfoNCE
            late = late_interaction_info_nce(queries.tokens, queries.mask, docs.tokens,
                                             docs.mask, mask, settings.temperature)
            total = total + late
            logged["loss@multi"] = float(late.detach())
        return total, logged

    return step


def train_embedder(settings: EmbedderSettings) -> dict:
    """Run (or resume) one training; returns the report also written to REPORT."""
    check_settings(settings)
    started = time.perf_counter()
    data = load_training_data(settings.data, settings.split)
    train, heldout = split_heldout(data, settings.heldout, settings.seed)
    dataset = heldout_dataset(data, heldout)
    output = settings.output
    output.mkdir(parents=True, exist_ok=True)
    config = settings.fingerprint()
    payload = loop.start_state(output, config, settings.resume)
    trainee, encoder, base = load_trainee(settings)
    check_modalities(data, encoder, settings.model)
    trained_dims, dims = curve_dims(settings, encoder)
    weights = loss_weights(settings, trained_dims)
    extra = payload["extra"] if payload else prepare(encoder, data, train, heldout, dataset,
                                                     settings, dims)
    for query in train:
        query.negatives = list(dict.fromkeys(query.negatives + extra["mined"].get(query.id, [])))
    rows = examples(data, train)
    loop.seed_everything(settings.seed)
    trainee.module.train()
    schedule = loop.Schedule(
        steps=loop.steps_for(len(rows), settings.batch_size, settings.epochs,
                             settings.max_steps),
        learning_rate=settings.learning_rate or (3e-4 if settings.lora else 3e-5),
        checkpoint_every=settings.checkpoint_every, seed=settings.seed)
    clock = time.perf_counter()
    state = loop.run(trainee.params, step_function(trainee, rows, settings, trained_dims, weights),
                     schedule, output, config, loop.LoopState(extra=extra), payload,
                     settings.on_step, "training embedder")
    train_seconds = round(time.perf_counter() - clock, 1)
    trainee.module.eval()
    trainee.save(base, output, trained_dims)
    write_beir(dataset, output / "heldout")
    tuned = load_model(str(output), backend="torch")
    after = evaluate.dense_curve(tuned, dataset, *trainee.served_tasks(), dims)
    report = {
        "model": settings.model, "mode": "lora" if settings.lora else "full",
        "task": settings.task, "output": str(output),
        "train_queries": len(train), "train_examples": len(rows),
        "heldout_queries": len(heldout), "corpus": len(data.corpus),
        "steps": schedule.steps, "matryoshka_dims": list(trained_dims),
        "matryoshka_weights": {str(d): w for d, w in weights.items()} or None,
        "loss_first": state.losses[0]["loss"] if state.losses else None,
        "loss_last": loop.mean_loss(state.losses[-max(1, len(state.losses) // 10):]),
        "ndcg@10": {"before": extra["before"], "after": after},
        **multivector_scores(tuned, dataset, extra, trainee.served_tasks()),
        "adapter_mb": trainee.adapter_mb(output),
        "train_seconds": train_seconds,
        "seconds": round(time.perf_counter() - started, 1),
        "losses": state.losses,
    }
    (output / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    loop.checkpoint_path(output).unlink(missing_ok=True)
    return report


def multivector_scores(tuned: Embedder, dataset: Dataset, extra: dict,
                       tasks: tuple[str | None, str | None]) -> dict:
    """For a multi-vector model, the held-out MaxSim nDCG@10 before and after."""
    if "before_multi" not in extra:
        return {}
    return {"maxsim_ndcg@10": {"before": extra["before_multi"],
                               "after": evaluate.maxsim_ndcg(tuned, dataset, *tasks)}}

