"""Model registry: public name -> loaded model, its state and declared capabilities.

Models load on a background thread so the server accepts connections at once; until a
model is ready, requests for it get ModelLoading (HTTP 503).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from polyseek.errors import ModelLoading, UnknownModel, WrongModelKind
from polyseek.models import (
    DEFAULT_CHAT_NAME,
    DEFAULT_CHAT_SOURCE,
    DEFAULT_MODEL_NAME,
    DEFAULT_MODEL_SOURCE,
    load_model,
    resolve_source,
)
from polyseek.models.backends import NoBackend, check_backend, split_backend
from polyseek.models.base import Capabilities, Embedder, Generator, PairScorer
from polyseek.runtime.batcher import Batcher, BatchLimits
from polyseek.runtime.chat_engine import ChatEngine
from polyseek.runtime.engine import EmbeddingEngine
from polyseek.runtime.metrics import Metrics
from polyseek.runtime.rerank import RerankEngine

log = logging.getLogger("polyseek.registry")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str  # may end in @torch / @int8, which wins over `backend`
    backend: str | None = None  # the server's --backend, where the model's family has it

    @classmethod
    def parse(cls, text: str, backend: str | None = None) -> ModelSpec:
        """NAME=SOURCE[@BACKEND], or a bare SOURCE named after its last path component."""
        name, sep, source = text.partition("=")
        if not sep:
            source = text
            name = split_backend(text)[0].rstrip("/").rsplit("/", 1)[-1]
        if not name or not source:
            raise ValueError(f"expected NAME=SOURCE, got {text!r}")
        split_backend(source)  # an unknown @BACKEND fails here, not at load time
        return cls(name, source, check_backend(backend) if backend else None)


DEFAULT_SPEC = ModelSpec(DEFAULT_MODEL_NAME, DEFAULT_MODEL_SOURCE)
DEFAULT_CHAT_SPEC = ModelSpec(DEFAULT_CHAT_NAME, DEFAULT_CHAT_SOURCE)


def default_specs(backend: str | None = None) -> list[ModelSpec]:
    """The embedded defaults: multilingual-e5-small embeddings (on `backend` if given), and
    SmolLM2 chat (torch) when its package is there."""
    embedder = ModelSpec.parse(f"{DEFAULT_SPEC.name}={DEFAULT_SPEC.source}", backend)
    try:
        resolve_source(DEFAULT_CHAT_SOURCE)
    except FileNotFoundError as exc:
        log.warning("no default chat model: %s", exc)
        return [embedder]
    return [embedder, DEFAULT_CHAT_SPEC]


@dataclass
class ModelEntry:
    spec: ModelSpec
    state: str = "loading"  # loading | ready | failed
    error: str | None = None
    engine: EmbeddingEngine | ChatEngine | RerankEngine | None = None

    @property
    def capabilities(self) -> Capabilities | None:
        return self.engine.capabilities if self.engine else None


Loader = Callable[[ModelSpec], Embedder | Generator | PairScorer]


def load_spec(spec: ModelSpec) -> Embedder | Generator | PairScorer:
    """The model on its backend: SOURCE's @BACKEND, else the server's --backend where the
    family has it (torch otherwise, with a warning), else the model's default."""
    source, suffix = split_backend(spec.source)
    if suffix or spec.backend is None:
        return load_model(spec.source, name=spec.name)
    try:
        return load_model(source, name=spec.name, backend=spec.backend)
    except NoBackend as exc:
        log.warning("%s; serving it on torch", exc)
        return load_model(source, name=spec.name, backend="torch")


class ModelRegistry:
    def __init__(
        self,
        specs: list[ModelSpec],
        limits: BatchLimits | None = None,
        metrics: Metrics | None = None,
        loader: Loader = load_spec,
    ):
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique: {names}")
        self.entries = {s.name: ModelEntry(s) for s in specs}
        self.limits = limits or BatchLimits()
        self.metrics = metrics or Metrics()
        self.loader = loader

    @property
    def names(self) -> list[str]:
        return list(self.entries)

    def load_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.load_all, name="model-loader", daemon=True)
        thread.start()
        return thread

    def load_all(self) -> None:
        """Load every model still loading, one after the other; each start, readiness (with
        how long it took) and failure is logged."""
        started = time.monotonic()
        for entry in self.entries.values():
            if entry.state != "loading":
                continue
            log.info("loading model %s from %s", entry.spec.name, entry.spec.source)
            began = time.monotonic()
            try:
                model = self.loader(entry.spec)
            except Exception as exc:
                entry.error = f"{type(exc).__name__}: {exc}"
                entry.state = "failed"
                log.error("model %s failed to load after %.1f s: %s", entry.spec.name,
                          time.monotonic() - began, entry.error)
                continue
            name = entry.spec.name
            kind = model.capabilities.kind
            if kind == "chat":
                entry.engine = ChatEngine(name, model, self.metrics)
            else:  # embedding models and cross-encoders (`PairScorer`s) run on a batcher
                batcher = Batcher(model, name, self.limits, self.metrics)
                engine = RerankEngine if kind == "rerank" else EmbeddingEngine
                entry.engine = engine(name, model, batcher)
            entry.state = "ready"
            self.metrics.model_ready.labels(entry.spec.name).set(1)
            caps = model.capabilities
            log.info("model %s ready in %.1f s (%s%s, %s)", name, time.monotonic() - began,
                     kind, f", {caps.dim} dimensions" if caps.dim else "", caps.backend)
        ready = sum(e.state == "ready" for e in self.entries.values())
        log.info("%d of %d models ready after %.1f s", ready, len(self.entries),
                 time.monotonic() - started)

    def entry(self, name: str) -> ModelEntry:
        if name not in self.entries:
            raise UnknownModel(
                f"unknown model {name!r}; available models: {', '.join(self.names)}"
            )
        return self.entries[name]

    def embedding_engine(self, name: str) -> EmbeddingEngine:
        return self._engine(name, EmbeddingEngine, "embedding", "/v1/chat/completions")

    def chat_engine(self, name: str) -> ChatEngine:
        return self._engine(name, ChatEngine, "chat", "/v1/embeddings")

    def rerank_engine(self, name: str) -> RerankEngine | EmbeddingEngine:
        engine = self.engine(name)
        if isinstance(engine, ChatEngine) or engine.capabilities.reranker is None:
            raise WrongModelKind(f"model {name!r} cannot rerank")
        return engine

    def _engine(self, name: str, kind: type, label: str, other_route: str):
        engine = self.engine(name)
        if not isinstance(engine, kind):
            raise WrongModelKind(f"model {name!r} is not a {label} model; use {other_route}")
        return engine

    def engine(self, name: str) -> EmbeddingEngine | ChatEngine | RerankEngine:
        """The ready engine for `name`; UnknownModel or ModelLoading otherwise."""
        entry = self.entry(name)
        if entry.state == "failed":
            raise ModelLoading(f"Model {name!r} failed to load: {entry.error}")
        if entry.engine is None:
            raise ModelLoading(f"Model is loading, please retry in a few seconds ({name!r})")
        return entry.engine

    def close(self) -> None:
        for entry in self.entries.values():
            if entry.engine:
                entry.engine.close()
