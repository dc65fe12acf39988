"""Model registry: public name -> loaded model, its state and declared capabilities.

Models load on a background thread so the server accepts connections at once; until a
model is ready, requests for it get ModelLoading (HTTP 503).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from polyseek.errors import ModelLoading, UnknownModel
from polyseek.models import DEFAULT_MODEL_NAME, DEFAULT_MODEL_SOURCE, load_model
from polyseek.models.base import Capabilities, Embedder
from polyseek.runtime.batcher import Batcher, BatchLimits
from polyseek.runtime.engine import EmbeddingEngine
from polyseek.runtime.metrics import Metrics

log = logging.getLogger("polyseek.registry")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """NAME=SOURCE, or a bare SOURCE named after its last path component."""
        name, sep, source = text.partition("=")
        if not sep:
            source = text
            name = text.rstrip("/").rsplit("/", 1)[-1]
        if not name or not source:
            raise ValueError(f"expected NAME=SOURCE, got {text!r}")
        return cls(name, source)


DEFAULT_SPEC = ModelSpec(DEFAULT_MODEL_NAME, DEFAULT_MODEL_SOURCE)


@dataclass
class ModelEntry:
    spec: ModelSpec
    state: str = "loading"  # loading | ready | failed
    error: str | None = None
    engine: EmbeddingEngine | None = None

    @property
    def capabilities(self) -> Capabilities | None:
        return self.engine.capabilities if self.engine else None


Loader = Callable[[ModelSpec], Embedder]


def load_spec(spec: ModelSpec) -> Embedder:
    return load_model(spec.source, name=spec.name)


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

    @property
    def ready(self) -> bool:
        return all(e.state == "ready" for e in self.entries.values())

    def load_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.load_all, name="model-loader", daemon=True)
        thread.start()
        return thread

    def load_all(self) -> None:
        for entry in self.entries.values():
            if entry.state != "loading":
                continue
            try:
                model = self.loader(entry.spec)
            except Exception as exc:
                entry.error = f"{type(exc).__name__}: {exc}"
                entry.state = "failed"
                log.error("model %s failed to load: %s", entry.spec.name, entry.error)
                continue
            batcher = Batcher(model, entry.spec.name, self.limits, self.metrics)
            entry.engine = EmbeddingEngine(entry.spec.name, model, batcher)
            entry.state = "ready"
            self.metrics.model_ready.labels(entry.spec.name).set(1)
            log.info("model %s ready", entry.spec.name)

    def entry(self, name: str) -> ModelEntry:
        if name not in self.entries:
            raise UnknownModel(
                f"unknown model {name!r}; available models: {', '.join(self.names)}"
            )
        return self.entries[name]

    def engine(self, name: str) -> EmbeddingEngine:
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
                entry.engine.batcher.close()
