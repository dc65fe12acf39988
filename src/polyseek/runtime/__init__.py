"""Serving runtime: model registry, dynamic batching, output encodings, metrics."""
