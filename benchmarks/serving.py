"""Starting and watching a real `polyseek serve` subprocess, shared by the benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

HEALTH_TIMEOUT_S = 300.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def polyseek_server(port: int, log_path: Path, *args: str, env: dict[str, str] | None = None,
                    launcher: tuple[str, ...] = ("-m", "polyseek"),
                    ) -> Iterator[subprocess.Popen]:
    """The server as a subprocess (output to `log_path`); terminated and reaped on exit.

    env: added to this process's environment; launcher: Python's arguments before the CLI's."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    command = [sys.executable, *launcher, "serve", "--port", str(port),
               "--log-level", "warning", *args]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_healthy(base_url: str, proc: subprocess.Popen, timeout: float = HEALTH_TIMEOUT_S) -> None:
    """Poll GET /health until 200; fail if the server exits or the timeout passes."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with code {proc.returncode}")
            try:
                if client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
    raise TimeoutError(f"server not healthy after {timeout:.0f}s")


def peak_rss_mib(pid: int | str) -> float:
    """VmHWM (peak resident set) of a live process ('self' for this one), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")
