"""Classification on embeddings: zero-shot (inputs against label texts) and few-shot (a
linear head trained on labelled examples, kept on disk under the data directory).

Both embed through the model's `EmbeddingEngine` (so its batcher) with the task that suits
classification where the model declares one; nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyseek.errors import InvalidInput, PolyseekError
from polyseek.models.base import Capabilities, Input
from polyseek.runtime.engine import EmbeddingEngine
from polyseek.runtime.linear_head import LinearHead, fit_linear_head, softmax

# cosine similarities are scaled by this before the softmax (CLIP's logit scale): an
# embedding model's cosines to label texts differ by hundredths, and a softmax of them as they
# are would say every label is about equally likely
ZERO_SHOT_SCALE = 100.0
# task names that mean "classification" or, failing that, symmetric text similarity
CLASSIFICATION_TASKS = ("classification", "Classification", "text-matching")
CLASSIFIER_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
FORMAT = 1  # the classifier file's layout version


class ClassifierNotFound(PolyseekError):
    """No classifier of that id under the data directory (HTTP 404)."""


class ClassifierUnreadable(PolyseekError):
    """The classifier's file exists but cannot be read (HTTP 409): delete it, train again."""


def classification_task(capabilities: Capabilities) -> str | None:
    """The task a model embeds classification inputs and labels with: its "classification"
    task (jina-embeddings-v3), else "text-matching" (e5's "query: ", v4's matching adapter),
    else none."""
    return next((t for t in CLASSIFICATION_TASKS if t in capabilities.tasks), None)


@dataclass
class Classification:
    """Per input the probability of each label, rows summing to 1."""

    labels: list[str]
    probabilities: np.ndarray  # [inputs, labels] float64
    n_tokens: int


async def zero_shot(engine: EmbeddingEngine, inputs: Sequence[Input], labels: Sequence[str],
                    truncate: bool = False) -> Classification:
    """Softmax over labels of the scaled cosine between each input and each label text."""
    task = classification_task(engine.capabilities)
    found, named = await asyncio.gather(
        engine.embed(inputs, task=task, truncate=truncate),
        engine.embed(labels, task=task, truncate=True))
    cosines = np.stack(found.vectors).astype(np.float64) @ np.stack(named.vectors).T
    return Classification(list(labels), softmax(ZERO_SHOT_SCALE * cosines),
                          found.n_tokens + named.n_tokens)


@dataclass
class Classifier:
    """A few-shot classifier: every example's embedding and label, and the head fitted on
    them (refitted on all of them when more come)."""

    id: str
    model: str
    task: str | None
    classes: list[str]  # in the order first seen
    vectors: np.ndarray  # [examples, dim] float32
    targets: np.ndarray  # [examples] int64 indexes into classes
    head: LinearHead
    created: int
    updated: int

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def check_engine(self, engine: EmbeddingEngine) -> None:
        """The served model must still embed as it did when the classifier was trained."""
        caps = engine.capabilities
        if caps.dim != self.dim or (self.task is not None and self.task not in caps.tasks):
            raise InvalidInput(
                f"classifier {self.id!r} was trained with model {self.model!r} as it was "
                f"then ({self.dim} dimensions, task {self.task!r}); the model now served under "
                f"that name embeds differently ({caps.dim} dimensions, tasks "
                f"{list(caps.tasks)}): train a new classifier", ("classifier_id",))

    async def classify(self, engine: EmbeddingEngine, inputs: Sequence[Input],
                       truncate: bool = False) -> Classification:
        self.check_engine(engine)
        found = await engine.embed(inputs, task=self.task, truncate=truncate)
        probabilities = self.head.probabilities(np.stack(found.vectors))
        return Classification(list(self.classes), probabilities, found.n_tokens)


@dataclass
class Training:
    classifier: Classifier
    n_examples: int  # in this request
    n_tokens: int


class ClassifierStore:
    """Classifiers as files `ROOT/<id>.npz`, each written whole (temp file + rename)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._cache: dict[str, tuple[tuple[int, int], Classifier]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        if self.root.is_dir():  # a write cut short by a crash left its temp file
            for partial in self.root.glob(".*.tmp"):
                partial.unlink(missing_ok=True)

    def path(self, classifier_id: str) -> Path:
        return self.root / f"{classifier_id}.npz"

    def get(self, classifier_id: str) -> Classifier:
        """The classifier, read from disk unless the cached copy is current."""
        path = self.path(classifier_id)
        try:
            if not re.fullmatch(CLASSIFIER_ID, classifier_id):
                raise FileNotFoundError(classifier_id)  # no file can have that name
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ClassifierNotFound(f"unknown classifier {classifier_id!r}; train one with "
                                     f"POST /v1/train") from None
        key = (stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(classifier_id)
        if cached and cached[0] == key:
            return cached[1]
        classifier = _read(path, classifier_id)
        self._cache[classifier_id] = (key, classifier)
        return classifier

    def list(self) -> list[tuple[str, Classifier | ClassifierUnreadable]]:
        """Every classifier by id, oldest first; an unreadable file as its error, last."""
        found: list[tuple[str, Classifier | ClassifierUnreadable]] = []
        paths = self.root.glob("*.npz") if self.root.is_dir() else []
        for path in paths:
            try:
                found.append((path.stem, self.get(path.stem)))
            except ClassifierUnreadable as error:
                found.append((path.stem, error))
            except ClassifierNotFound:  # deleted meanwhile, or not a classifier's name
                continue
        return sorted(found, key=lambda pair: (
            isinstance(pair[1], ClassifierUnreadable), getattr(pair[1], "created", 0), pair[0]))

    def delete(self, classifier_id: str) -> None:
        """Remove the classifier's file; ClassifierNotFound if there is none."""
        if not re.fullmatch(CLASSIFIER_ID, classifier_id):
            raise ClassifierNotFound(f"unknown classifier {classifier_id!r}")
        try:
            self.path(classifier_id).unlink()
        except FileNotFoundError:
            raise ClassifierNotFound(f"unknown classifier {classifier_id!r}") from None
        self._cache.pop(classifier_id, None)

    async def train(self, engine: EmbeddingEngine, model: str, inputs: Sequence[Input],
                    labels: Sequence[str], classifier_id: str | None = None,
                    truncate: bool = False) -> Training:
        """A new classifier from labelled examples, or `classifier_id` trained further with
        more: the head is refitted on every example it has seen. Nothing is written unless
        the whole request succeeds."""
        existing = self.get(classifier_id) if classifier_id else None
        if existing:
            existing.check_engine(engine)
            task = existing.task
        else:
            task = classification_task(engine.capabilities)
        classes = list(existing.classes) if existing else []
        _refuse_one_label(classes, labels)
        found = await engine.embed(inputs, task=task, truncate=truncate)
        new_vectors = np.stack(found.vectors).astype(np.float32)
        lock = self._locks.setdefault(classifier_id, asyncio.Lock()) if classifier_id \
            else asyncio.Lock()
        async with lock:  # a concurrent request on the same classifier goes after this one
            existing = self.get(classifier_id) if classifier_id else None
            classes = list(existing.classes) if existing else []
            for label in labels:
                if label not in classes:
                    classes.append(label)
            targets = np.array([classes.index(label) for label in labels], dtype=np.int64)
            if existing:
                vectors = np.concatenate([existing.vectors, new_vectors])
                targets = np.concatenate([existing.targets, targets])
            else:
                vectors = new_vectors
            head = await asyncio.to_thread(fit_linear_head, vectors, targets, len(classes))
            now = int(time.time())
            classifier = Classifier(
                id=classifier_id or uuid.uuid4().hex, model=model, task=task, classes=classes,
                vectors=vectors, targets=targets, head=head,
                created=existing.created if existing else now, updated=now)
            await asyncio.to_thread(self._write, classifier)
        return Training(classifier, len(labels), found.n_tokens)

    def _write(self, classifier: Classifier) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "id": classifier.id, "model": classifier.model,
                "task": classifier.task, "classes": classifier.classes,
                "created": classifier.created, "updated": classifier.updated}
        fd, temp = tempfile.mkstemp(dir=self.root, prefix=f".{classifier.id}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                np.savez(file, meta=np.array(json.dumps(meta)), vectors=classifier.vectors,
                         targets=classifier.targets, weights=classifier.head.weights,
                         bias=classifier.head.bias)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, self.path(classifier.id))
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        stat = self.path(classifier.id).stat()
        self._cache[classifier.id] = ((stat.st_mtime_ns, stat.st_size), classifier)


def _refuse_one_label(classes: list[str], labels: Sequence[str]) -> None:
    """422 when the classifier would know fewer than two labels."""
    known = {*classes, *labels}
    if len(known) < 2:
        raise InvalidInput(
            f"fewer than two labels: a classifier needs examples of at least two labels "
            f"(got only {next(iter(known))!r})", ("input",))


def _read(path: Path, classifier_id: str) -> Classifier:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, not {FORMAT}")
            head = LinearHead(data["weights"], data["bias"])
            classifier = Classifier(
                id=classifier_id, model=meta["model"], task=meta["task"],
                classes=list(meta["classes"]), vectors=data["vectors"],
                targets=data["targets"], head=head, created=int(meta["created"]),
                updated=int(meta["updated"]))
    except Exception as error:  # any damage: truncated zip, missing array, bad JSON, ...
        raise ClassifierUnreadable(
            f"classifier {classifier_id!r} cannot be read from {path} ({error}); delete it "
            f"(DELETE /v1/classifiers/{classifier_id}) and train it again") from error
    n_classes, dim = classifier.head.weights.shape
    if (classifier.vectors.ndim != 2 or classifier.vectors.shape[1] != dim
            or len(classifier.targets) != len(classifier.vectors)
            or n_classes != len(classifier.classes)):
        raise ClassifierUnreadable(
            f"classifier {classifier_id!r} in {path} is inconsistent (its arrays do not fit "
            f"together); delete it (DELETE /v1/classifiers/{classifier_id}) and train it again")
    return classifier
