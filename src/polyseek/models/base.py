"""The model contract: declared capabilities, the `Embedder`, `Reranker` and `PairScorer`
protocols, shared pooling and score math.

Models take `Input`s: a text, or an image already fetched and decoded (never a URL or bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from polyseek.errors import InvalidInput

Input = str | Image.Image


@dataclass(frozen=True)
class Capabilities:
    """What a model can do, declared once at load time (never discovered by trial)."""

    kind: str  # "embedding", "chat" or "rerank"
    family: str  # e.g. "hf-encoder"
    modalities: tuple[str, ...] = ("text",)
    tasks: tuple[str, ...] = ()
    dim: int = 0
    min_dim: int = 0  # smallest `dimensions` accepted
    matryoshka_dims: tuple[int, ...] = ()  # trained truncation points, empty if none
    max_tokens: int = 0
    multivector: bool = False
    multivector_dim: int | None = None
    pooling: str = "mean"
    reranker: str | None = None  # how /v1/rerank scores with it: "bi-encoder", "cross-encoder"
    score: str | None = None  # cross-encoders: how a pair's logit becomes relevance ("sigmoid")
    backend: str = "torch"  # what runs the forward pass: "torch" (fp32) or "int8" (ONNX Runtime)
    extras: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def check_task(self, task: str | None) -> None:
        """A task must be one the model declares; a model without tasks takes none."""
        if task is None or task in self.tasks:
            return
        if not self.tasks:
            raise InvalidInput(f"this model has no tasks; omit 'task' (got {task!r})", ("task",))
        valid = ", ".join(self.tasks)
        raise InvalidInput(f"unknown task {task!r}; valid tasks: {valid}", ("task",))

    def role_task(self, role: str) -> str | None:
        """The task for queries or documents (`role` "query" / "document"), if the model
        declares one: what retrieval and bi-encoder reranking embed each side with."""
        names = {"query": ("retrieval.query", "query", "retrieval"),
                 "document": ("retrieval.passage", "passage", "document", "retrieval")}[role]
        return next((name for name in names if name in self.tasks), None)

    def check_dimensions(self, dimensions: int | None) -> None:
        if dimensions is None:
            return
        if not self.min_dim <= dimensions <= self.dim:
            raise InvalidInput(
                f"dimensions must be between {self.min_dim} and {self.dim} for this model "
                f"(got {dimensions})",
                ("dimensions",),
            )

    def check_multivector(self, multivector: bool) -> None:
        if multivector and not self.multivector:
            raise InvalidInput(
                "this model has no multi-vector output; omit 'return_multivector'",
                ("return_multivector",),
            )


@dataclass
class EncodeJob:
    """One sequence for one forward pass.

    `spans` set: return one mean-pooled vector per (start, end) token span (late chunking).
    `multivector` set: return every token's vector; with `with_pooled` too, the pair
    (pooled vector, token vectors) from the same forward pass. Neither: the model's own pooling.
    """

    ids: list[int]
    task: str | None = None
    spans: list[tuple[int, int]] | None = None
    multivector: bool = False
    with_pooled: bool = False

    @property
    def n_tokens(self) -> int:
        return len(self.ids)


@runtime_checkable
class Embedder(Protocol):
    capabilities: Capabilities

    def encode(self, items: Sequence[Input] | Input, task: str | None = None,
               truncate_dim: int | None = None, multivector: bool = False
               ) -> np.ndarray | list[np.ndarray]: ...

    def prepare(self, items: Sequence[Input], task: str | None = None, truncate: bool = True,
                late_chunking: bool = False, multivector: bool = False) -> list[EncodeJob]: ...

    def embed_jobs(self, jobs: Sequence[EncodeJob]) -> list[np.ndarray]: ...


@dataclass
class ChatMessage:
    """One chat turn: text pieces and images in the order they appear."""

    role: str  # system | user | assistant
    content: list[str | Image.Image]


@dataclass
class TextDelta:
    """A piece of generated text; the last one carries the finish reason."""

    text: str
    finish_reason: str | None = None  # "stop" or "length" on the last delta
    prompt_tokens: int = 0
    completion_tokens: int = 0


@runtime_checkable
class Reranker(Protocol):
    capabilities: Capabilities

    def score(self, query: Input, documents: Sequence[Input]) -> list[float]: ...


@runtime_checkable
class PairScorer(Reranker, Protocol):
    """A cross-encoder: one job per (query, document) pair, run by the batcher like any
    embedding job; each job's output is a [1] logit that `capabilities.score` maps to a
    relevance (see `relevance`)."""

    def prepare_pairs(self, query: Input, documents: Sequence[Input]) -> list[EncodeJob]: ...

    def embed_jobs(self, jobs: Sequence[EncodeJob]) -> list[np.ndarray]: ...


@runtime_checkable
class Generator(Protocol):
    capabilities: Capabilities

    def generate(self, messages: Sequence[ChatMessage], sampling) -> Iterator[TextDelta]: ...


def plan_batches(
    lengths: Sequence[int], max_batch_tokens: int, max_batch_size: int
) -> list[list[int]]:
    """Group item indices into batches sorted by length, each within a padded-token budget.

    A batch's cost is len(batch) * longest member (what padding makes it cost); a single item
    longer than the budget gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # sorted ascending, so lengths[i] is the longest member if i joins
        if current and ((len(current) + 1) * lengths[i] > max_batch_tokens
                        or len(current) >= max_batch_size):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def jobs_per_input(items: Sequence[Input], text_job: Callable[[str, int], EncodeJob],
                   image_job: Callable[[Image.Image], EncodeJob]) -> list[EncodeJob]:
    """One job per input of a text-and-image model: `text_job(text, index)` or
    `image_job(image)`."""
    jobs = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            jobs.append(text_job(item, index))
        elif isinstance(item, Image.Image):
            jobs.append(image_job(item))
        else:
            raise TypeError(f"input[{index}]: expected text or image, got {type(item).__name__}")
    return jobs


def per_input(jobs: Sequence[EncodeJob], outputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Flatten job outputs to one array per input: a late-chunking job yields one per span."""
    vectors: list[np.ndarray] = []
    for job, out in zip(jobs, outputs, strict=True):
        vectors.extend(out if job.spans is not None else [out])
    return vectors


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int,
              left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> (ids, attention mask), both [B, L_max] int64, padded right (or left)."""
    width = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(sequences):
        cols = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, cols] = torch.tensor(seq, dtype=torch.long)
        mask[row, cols] = 1
    return ids, mask


def run_jobs(model: Embedder | PairScorer, jobs: Sequence[EncodeJob], batch_size: int,
             max_batch_tokens: int = 1 << 30) -> list[np.ndarray]:
    """Run `jobs` through `model.embed_jobs` in length-sorted batches; one output per input."""
    outputs: list[np.ndarray] = [np.empty(0)] * len(jobs)
    lengths = [job.n_tokens for job in jobs]
    for batch in plan_batches(lengths, max_batch_tokens, batch_size):
        for i, out in zip(batch, model.embed_jobs([jobs[i] for i in batch]), strict=True):
            outputs[i] = out
    return per_input(jobs, outputs)


def encode_inputs(model: Embedder, items: Sequence[Input] | Input, task: str | None,
                  truncate_dim: int | None, multivector: bool, normalize: bool,
                  late_chunking: bool, batch_size: int) -> np.ndarray | list[np.ndarray]:
    """The Python `encode` every Embedder shares: [N, dim] float32 cut to the first
    `truncate_dim` components (any size HTTP's `dimensions` takes), L2-normalised unless
    `normalize=False`; with `multivector`, one [T_i, D] array per input. Inputs longer than
    the context are truncated.

    One text or image (not in a list) gives its vector alone, [dim] (with `multivector`, its
    [T, D] array), as sentence-transformers does; an empty list gives [0, dim] (or [])."""
    model.capabilities.check_dimensions(truncate_dim)
    single = isinstance(items, str | Image.Image)
    if single:
        items = [items]
    dim = truncate_dim or model.capabilities.dim
    if not items:
        return [] if multivector else np.zeros((0, dim), np.float32)
    jobs = model.prepare(items, task, True, late_chunking, multivector)
    outputs = run_jobs(model, jobs, batch_size)
    if multivector:
        vectors = [truncate_and_normalize(v, None, normalize) for v in outputs]
    else:
        vectors = truncate_and_normalize(np.stack(outputs), truncate_dim, normalize)
    return vectors[0] if single else vectors


def truncate_and_normalize(vectors: np.ndarray, dim: int | None, normalize: bool) -> np.ndarray:
    """Matryoshka truncation to the first `dim` components, then optional L2 normalisation.

    vectors: [..., D] -> [..., dim]
    """
    if dim is not None:
        vectors = vectors[..., :dim]
    if normalize:
        norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-logits))


SCORE_FUNCTIONS = {"sigmoid": sigmoid}


def relevance(capabilities: Capabilities, logits: Sequence[float]) -> list[float]:
    """Pair logits -> relevance scores, by the model's declared score function."""
    return SCORE_FUNCTIONS[capabilities.score](np.asarray(logits, dtype=np.float64)).tolist()


def score_pairs(model: PairScorer, query: Input, documents: Sequence[Input], batch_size: int,
                max_batch_tokens: int = 1 << 30) -> list[float]:
    """The common `score` of cross-encoders: relevance per document, in order (one document
    not in a list is scored as a list of one)."""
    if isinstance(documents, str) or not isinstance(documents, Sequence):
        documents = [documents]
    if not documents:
        return []
    jobs = model.prepare_pairs(query, documents)
    logits = [out[0] for out in run_jobs(model, jobs, batch_size, max_batch_tokens)]
    return relevance(model.capabilities, logits)
