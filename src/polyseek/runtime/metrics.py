"""Prometheus metrics of one server instance (own registry, so instances never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_TOKEN_BUCKETS = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "polyseek_requests", "HTTP requests by route and status", ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "polyseek_request_duration_seconds", "HTTP request latency", ["route"], registry=r
        )
        self.batch_size = Histogram(
            "polyseek_batch_size", "sequences per forward pass", ["model"],
            buckets=_SIZE_BUCKETS, registry=r,
        )
        self.batch_tokens = Histogram(
            "polyseek_batch_padded_tokens", "padded tokens per forward pass", ["model"],
            buckets=_TOKEN_BUCKETS, registry=r,
        )
        self.forward_seconds = Histogram(
            "polyseek_forward_seconds", "duration of one forward pass", ["model"], registry=r
        )
        self.queue_depth = Gauge(
            "polyseek_queue_depth", "sequences waiting for a forward pass", ["model"], registry=r
        )
        self.tokens = Counter(
            "polyseek_tokens", "tokens processed by forward passes", ["model"], registry=r
        )
        self.model_ready = Gauge(
            "polyseek_model_ready", "1 when the model is loaded and serving", ["model"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
