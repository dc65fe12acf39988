"""`polyseek train reranker`: cross-encoder fine-tuning with binary cross-entropy.

Each (query, passage) pair is labelled 1 (positive) or 0 (negative: given, mined with a
retriever, or else drawn at random from the corpus), or scored by a teacher reranker
(`distill_from`). The start is a cross-encoder, or an encoder that gets a fresh one-logit
head. Held-out nDCG@10 of retrieval, and of retrieval reranked, before and after.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from polyseek.eval.data import Dataset
from polyseek.models import DEFAULT_MODEL_SOURCE, load_model, resolve_source
from polyseek.models.base import EncodeJob
from polyseek.models.cross_encoder import CrossEncoder
from polyseek.models.families import is_cross_encoder, is_encoder, read_config
from polyseek.models.text_encoder import token_ids
from polyseek.train import evaluate, loop
from polyseek.train.data import (
    Query,
    TrainDataError,
    TrainingData,
    heldout_dataset,
    load_training_data,
    split_heldout,
    write_beir,
)
from polyseek.train.embedder import REPORT, mine

Pair = tuple[str, str, float]  # query, passage, target in [0, 1]


@dataclass
class RerankerSettings:
    """One training run (every field but `output`, `resume` and `checkpoint_every` must
    match to resume a checkpoint)."""

    data: str
    output: Path
    model: str = DEFAULT_MODEL_SOURCE
    retriever: str = DEFAULT_MODEL_SOURCE  # first stage of the eval; mines negatives
    distill_from: str | None = None
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 16  # pairs per step
    learning_rate: float = 3e-5
    mine_negatives: int = 0
    random_negatives: int = 2  # per query without given or mined negatives
    heldout: float = 0.1
    split: str = "train"
    max_length: int = 256
    depth: int = 20  # candidates reranked per held-out query
    seed: int = 0
    checkpoint_every: int = 50
    resume: bool = False
    on_step: Callable[[int], None] | None = field(default=None, repr=False, compare=False)

    def fingerprint(self) -> dict:
        skip = {"output", "resume", "checkpoint_every", "on_step"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


def load_cross_encoder(source: str) -> tuple[CrossEncoder, Path]:
    """A cross-encoder checkpoint, or an encoder with a new (seeded) one-logit head."""
    directory = resolve_source(source)
    config = read_config(directory)
    if not (is_cross_encoder(config) or is_encoder(config)):
        raise TrainDataError(f"{source}: reranker training takes a transformers encoder or "
                             f"cross-encoder, not model_type {config.get('model_type')!r}")
    model = AutoModelForSequenceClassification.from_pretrained(directory, num_labels=1)
    return CrossEncoder(model, AutoTokenizer.from_pretrained(directory), directory,
                        name=source), directory


def pairs_for(data: TrainingData, train: list[Query], settings: RerankerSettings) -> list[Pair]:
    """Labelled pairs: each positive 1, each negative 0 (random ones where none are known)."""
    pick = random.Random(settings.seed)
    doc_ids = list(data.corpus)
    pairs = []
    for q in train:
        negatives = list(q.negatives)
        if not negatives:
            pool = [d for d in doc_ids if d not in q.positives]
            negatives = pick.sample(pool, min(settings.random_negatives, len(pool)))
        pairs += [(q.text, data.corpus[d], 1.0) for d in q.positives]
        pairs += [(q.text, data.corpus[d], 0.0) for d in negatives]
    return pairs


def distilled(pairs: list[Pair], teacher_source: str) -> list[float]:
    """The teacher's relevance for every pair (targets for the cross-entropy)."""
    teacher = load_model(teacher_source)
    if not hasattr(teacher, "score"):
        raise TrainDataError(f"--distill-from {teacher_source}: the teacher must be a "
                             "cross-encoder reranker")
    targets: list[float] = []
    by_query: dict[str, list[int]] = {}
    for i, (query, _, _) in enumerate(pairs):
        by_query.setdefault(query, []).append(i)
    scored = {}
    for query, rows in by_query.items():
        for i, s in zip(rows, teacher.score(query, [pairs[i][1] for i in rows]), strict=True):
            scored[i] = float(s)
    targets = [scored[i] for i in range(len(pairs))]
    return targets


def logits(cross: CrossEncoder, batch: list[Pair], max_length: int) -> torch.Tensor:
    ids = token_ids(cross.tokenizer, [p[0] for p in batch], [p[1] for p in batch],
                    truncation="only_second", max_length=max_length)
    return cross.logits([EncodeJob(seq) for seq in ids])[:, 0]


def candidates(retriever, dataset: Dataset, doc_vectors: np.ndarray) -> dict[str, list[str]]:
    qids = list(dataset.queries)
    queries = evaluate.embed(retriever, [dataset.queries[q] for q in qids],
                             retriever.capabilities.role_task("query"))
    return evaluate.rankings(queries, doc_vectors, qids, list(dataset.corpus))


def prepare(settings: RerankerSettings, data: TrainingData, train: list[Query],
            heldout: list[Query], dataset: Dataset, cross: CrossEncoder) -> dict:
    """Computed once: retrieval candidates, mined negatives, targets, the 'before' scores."""
    retriever = load_model(settings.retriever)
    if retriever.capabilities.kind != "embedding":
        raise TrainDataError(f"--retriever {settings.retriever}: not an embedding model")
    doc_ids = list(dataset.corpus)
    doc_vectors = evaluate.embed(retriever, [dataset.corpus[d] for d in doc_ids],
                                 retriever.capabilities.role_task("document"))
    ranked = candidates(retriever, dataset, doc_vectors)
    mined = (mine(retriever, data, train, heldout, settings.mine_negatives, doc_vectors,
                  doc_ids) if settings.mine_negatives else {})
    for q in train:
        q.negatives = list(dict.fromkeys(q.negatives + mined.get(q.id, [])))
    pairs = pairs_for(data, train, settings)
    targets = distilled(pairs, settings.distill_from) if settings.distill_from else \
        [p[2] for p in pairs]
    cross.model.eval()
    before = evaluate.rerank_scores(cross, dataset, ranked, settings.depth)
    return {"candidates": ranked, "pairs": pairs, "targets": targets, "before": before}


def train_reranker(settings: RerankerSettings) -> dict:
    """Run (or resume) one training; returns the report also written to REPORT."""
    if settings.batch_size < 1 or settings.depth < 1:
        raise TrainDataError("--batch-size and --depth must be at least 1")
    started = time.perf_counter()
    data = load_training_data(settings.data, settings.split)
    if data.first_image is not None:
        raise TrainDataError(f"{data.first_image.where}: an image item, but reranker "
                             "training reads text only")
    train, heldout = split_heldout(data, settings.heldout, settings.seed)
    dataset = heldout_dataset(data, heldout)
    output = settings.output
    output.mkdir(parents=True, exist_ok=True)
    config = settings.fingerprint()
    payload = loop.start_state(output, config, settings.resume)
    loop.seed_everything(settings.seed)
    cross, base = load_cross_encoder(settings.model)
    extra = payload["extra"] if payload else prepare(settings, data, train, heldout,
                                                     dataset, cross)
    pairs, targets = extra["pairs"], torch.tensor(extra["targets"])

    def step(index: int) -> tuple[torch.Tensor, dict[str, float]]:
        rows = loop.batch_indices(index, len(pairs), settings.batch_size, settings.seed)
        out = logits(cross, [pairs[i] for i in rows], settings.max_length)
        return F.binary_cross_entropy_with_logits(out, targets[rows]), {}

    loop.seed_everything(settings.seed)
    cross.model.train()
    params = {n: p for n, p in cross.model.named_parameters() if p.requires_grad}
    schedule = loop.Schedule(
        steps=loop.steps_for(len(pairs), settings.batch_size, settings.epochs,
                             settings.max_steps),
        learning_rate=settings.learning_rate, checkpoint_every=settings.checkpoint_every,
        seed=settings.seed)
    state = loop.run(params, step, schedule, output, config, loop.LoopState(extra=extra),
                     payload, settings.on_step, "training reranker")
    cross.model.eval()
    save(cross, base, output)
    write_beir(dataset, output / "heldout")
    after = evaluate.rerank_scores(load_model(str(output), backend="torch"), dataset,
                                   extra["candidates"], settings.depth)
    report = {
        "model": settings.model, "retriever": settings.retriever,
        "distill_from": settings.distill_from, "output": str(output),
        "train_queries": len(train), "train_pairs": len(pairs),
        "heldout_queries": len(heldout), "corpus": len(data.corpus), "depth": settings.depth,
        "steps": schedule.steps,
        "loss_first": state.losses[0]["loss"] if state.losses else None,
        "loss_last": loop.mean_loss(state.losses[-max(1, len(state.losses) // 10):]),
        "ndcg@10": {"retrieval": extra["before"]["retrieval"],
                    "before": extra["before"]["reranked"], "after": after["reranked"]},
        "seconds": round(time.perf_counter() - started, 1),
        "losses": state.losses,
    }
    (output / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    loop.checkpoint_path(output).unlink(missing_ok=True)
    return report


def save(cross: CrossEncoder, base: Path, output: Path) -> None:
    """config.json (a *ForSequenceClassification), safetensors, the tokenizer files."""
    cross.model.save_pretrained(output, safe_serialization=True)
    cross.tokenizer.save_pretrained(output)
    if (base / "sentence_bert_config.json").exists():
        shutil.copy(base / "sentence_bert_config.json", output / "sentence_bert_config.json")
