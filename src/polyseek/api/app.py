"""The FastAPI application: settings, lifespan (background model loading), routes."""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from polyseek import __version__
from polyseek.api import chat, classify, embeddings, models, rerank, search, segment, web
from polyseek.api.auth import has_valid_key, key_guard
from polyseek.api.chat_schemas import exact_seed_bounds
from polyseek.api.docs import docs_router
from polyseek.api.errors import error_response, install_error_handlers
from polyseek.api.middleware import BodySizeLimit, PrometheusMiddleware, UnexpectedErrors
from polyseek.api.schemas import UNAUTHORIZED, error_responses
from polyseek.client import Advertisement, find_server
from polyseek.inputs.images import ImageLimits
from polyseek.runtime.batcher import BatchLimits
from polyseek.runtime.metrics import Metrics
from polyseek.runtime.registry import ModelRegistry, ModelSpec, default_specs

log = logging.getLogger("polyseek.api")


@dataclass
class ServerSettings:
    models: list[ModelSpec] = field(default_factory=default_specs)
    api_keys: frozenset[str] = frozenset()
    max_inputs: int = 2048  # inputs per request
    max_body_bytes: int = 16 * 1024 * 1024
    batch: BatchLimits = field(default_factory=BatchLimits)
    image_limits: ImageLimits = field(default_factory=ImageLimits)
    data_dir: str = "polyseek-data"  # embedded Qdrant store for /v1/index and /v1/search
    qdrant_url: str | None = None  # a Qdrant server or cluster instead
    # the base URL the CLI reaches this server at, advertised in the embedded store's
    # directory while the server runs (`polyseek serve` sets it; see polyseek.client)
    advertise_url: str | None = None
    public_docs: bool = False  # with api_keys: /docs, /redoc and /openapi.json need no key
    public_metrics: bool = False  # with api_keys: /metrics needs no key


class Health(BaseModel):
    status: Literal["ok"]
    models: list[str] | None = Field(
        None, description="the served models; only with a valid key when keys are set")


def create_app(settings: ServerSettings | None = None,
               registry: ModelRegistry | None = None) -> FastAPI:
    """The server app; models start loading when it starts, requests are served at once."""
    settings = settings or ServerSettings()
    metrics = registry.metrics if registry else Metrics()
    registry = registry or ModelRegistry(settings.models, settings.batch, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        advert = _advertise(settings)
        registry.load_in_background()
        try:
            yield
        finally:
            registry.close()
            app.state.store.close()
            if advert:
                advert.close()

    # the docs routes are ours (docs.py): assets served locally, and behind the key when set
    app = FastAPI(title="polyseek", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.started = int(time.time())
    app.state.store = search.StoreHolder(settings.data_dir, settings.qdrant_url)
    install_error_handlers(app)

    def openapi() -> dict:  # FastAPI's document, plus the schemas of the chat event stream
        if app.openapi_schema is None:
            document = FastAPI.openapi(app)
            components = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in chat.stream_schemas().items():
                components.setdefault(name, schema)
            exact_seed_bounds(document)
        return app.openapi_schema

    app.openapi = openapi

    keys = settings.api_keys
    for router in (embeddings.router, rerank.router, chat.router, models.router,
                   search.router, segment.router, classify.router):
        app.include_router(router, dependencies=key_guard(keys),
                           responses=UNAUTHORIZED if keys else None)

    app.include_router(web.router)  # the page itself is public; its fetches send the key
    app.include_router(docs_router(key_guard(keys, settings.public_docs)))

    @app.get("/health", response_model=Health, response_model_exclude_none=True,
             responses=error_responses(503, e503="a model is loading or failed to load"))
    async def health(request: Request) -> Response:
        """Open to all; without a valid key (when keys are set) it names no models."""
        named = has_valid_key(request)
        loading = [n for n, e in registry.entries.items() if e.state == "loading"]
        failed = {n: e.error for n, e in registry.entries.items() if e.state == "failed"}
        if failed:
            names = ", ".join(f"{n} ({err})" for n, err in failed.items())
            return error_response(503, f"Model failed to load: {names}" if named else
                                  "A model failed to load", "model_failed")
        if loading:
            message = "Model is loading, please retry in a few seconds"
            return error_response(503, f"{message}: {', '.join(loading)}" if named else message,
                                  "model_loading")
        return JSONResponse({"status": "ok", "models": registry.names} if named else
                            {"status": "ok"})

    @app.get("/metrics", include_in_schema=False,
             dependencies=key_guard(keys, settings.public_metrics))
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(PrometheusMiddleware, metrics=metrics)
    app.add_middleware(UnexpectedErrors)
    return app


def _advertise(settings: ServerSettings) -> Advertisement | None:
    """Tell CLIs on this machine that this server serves the embedded store's directory."""
    if not settings.advertise_url or settings.qdrant_url:
        return None
    advert = Advertisement.claim(settings.data_dir, settings.advertise_url)
    if advert is None:
        other = find_server(settings.data_dir)
        log.warning("another polyseek server (%s) serves %s; this one cannot use its store",
                    other.url if other else "unknown", settings.data_dir)
    return advert
