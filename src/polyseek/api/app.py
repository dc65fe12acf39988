"""The FastAPI application: settings, lifespan (background model loading), routes."""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from polyseek import __version__
from polyseek.api import chat, embeddings, models, rerank, search, web
from polyseek.api.auth import require_api_key
from polyseek.api.errors import error_response, install_error_handlers
from polyseek.api.middleware import BodySizeLimit, PrometheusMiddleware, UnexpectedErrors
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

    app = FastAPI(title="polyseek", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.started = int(time.time())
    app.state.store = search.StoreHolder(settings.data_dir, settings.qdrant_url)
    install_error_handlers(app)

    for router in (embeddings.router, rerank.router, chat.router, models.router,
                   search.router):
        app.include_router(router, dependencies=[Depends(require_api_key)])

    app.include_router(web.router)  # the page itself is public; its fetches send the key

    @app.get("/health")
    async def health() -> Response:
        loading = [n for n, e in registry.entries.items() if e.state == "loading"]
        failed = {n: e.error for n, e in registry.entries.items() if e.state == "failed"}
        if failed:
            names = ", ".join(f"{n} ({err})" for n, err in failed.items())
            return error_response(503, f"Model failed to load: {names}", "model_failed")
        if loading:
            message = f"Model is loading, please retry in a few seconds: {', '.join(loading)}"
            return error_response(503, message, "model_loading")
        return JSONResponse({"status": "ok", "models": registry.names})

    @app.get("/metrics", include_in_schema=False)
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
