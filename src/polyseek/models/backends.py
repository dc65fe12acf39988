"""Backend names: what runs a model's forward pass, chosen per model as `SOURCE@BACKEND`.

Kept free of heavy imports: the CLI parses model specs before it loads anything.
"""

from __future__ import annotations

from pathlib import Path

BACKENDS = ("torch", "int8")



def split_backend(source: str) -> tuple[str, str | None]:
    """`SOURCE@int8` / `SOURCE@torch` -> (SOURCE, backend); a source without a suffix (or an
    existing path that happens to hold an "@") -> (source, None). An unknown suffix that looks
    like a backend name is a ValueError naming the valid ones."""
    base, sep, suffix = source.rpartition("@")
    if not sep or Path(source).expanduser().exists():
        return source, None
    if suffix in BACKENDS:
        return base, suffix
    if suffix.isalnum():
        raise ValueError(f"unknown backend {suffix!r} in {source!r}; valid backends: "
                         f"{', '.join(BACKENDS)}")
    return source, None


class NoBackend(ValueError):
    """The model's family has no such backend."""


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    return backend
