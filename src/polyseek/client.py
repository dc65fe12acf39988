"""The CLI's way to a running server: finding the one that serves a data directory, and
calling its HTTP API.

A server on the embedded store advertises itself in `DATA/polyseek.server` (JSON: its base
URL and pid) and holds an exclusive lock on that file while it runs; the lock goes with the
process, so a file left behind by a killed server is recognised as stale (nobody holds it).
Its store lock (`polyseek.lock`) is taken only on the first store request, so the CLI looks
for the advertisement, not for that lock: once a server runs on a directory, the CLI sends
its searches there instead of opening the store itself.

Imports only the standard library and httpx: the CLI answers through a server without
loading torch, Qdrant or a model.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ADVERT_FILE = "polyseek.server"
LOADING_WAIT = 180.0  # seconds a request waits for the server's models to finish loading


@dataclass(frozen=True)
class Advertised:
    url: str
    pid: int | None = None


class Advertisement:
    """The running server's entry in its data directory (see the module doc)."""

    def __init__(self, handle, path: Path):
        self._handle, self.path = handle, path

    @classmethod
    def claim(cls, data_dir: str | Path, url: str) -> Advertisement | None:
        """Advertise `url` for `data_dir`; None if another live server already does."""
        path = Path(data_dir) / ADVERT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - held open while the server runs
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"url": url, "pid": os.getpid()}))
        handle.flush()
        return cls(handle, path)

    def close(self) -> None:
        if self._handle is not None:
            self.path.unlink(missing_ok=True)  # gone before the lock is released
            self._handle.close()
            self._handle = None


def find_server(data_dir: str | Path) -> Advertised | None:
    """The live server advertised in `data_dir`, if any."""
    path = Path(data_dir) / ADVERT_FILE
    deadline = time.monotonic() + 1.0
    while True:
        try:
            handle = open(path)  # noqa: SIM115 - closed below
        except OSError:
            return None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return None  # nobody holds it: left by a server that is gone
            except BlockingIOError:
                pass
            text = handle.read().strip()
        if text:
            try:
                record = json.loads(text)
                return Advertised(str(record["url"]), record.get("pid"))
            except (ValueError, KeyError, TypeError):
                return None
        if time.monotonic() > deadline:  # locked but empty: a server writing it right now
            return None
        time.sleep(0.02)


def base_url(host: str, port: int) -> str:
    """How a client on this machine reaches a server bound to `host`:`port`."""
    local = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{local}]:{port}" if ":" in local else f"http://{local}:{port}"


class ServerError(Exception):
    """A request the server refused or could not answer; the message says why."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ServerClient:
    """A few calls to a polyseek server, each waiting while its models are still loading."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 300.0,
                 on_wait: Callable[[str], None] | None = None):
        import httpx

        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        local = urlsplit(self.url).hostname in ("127.0.0.1", "localhost", "::1")
        # a server on this machine is never reached through a proxy from the environment
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout,
                                  trust_env=not local)
        self._on_wait = on_wait

    def __enter__(self) -> ServerClient:
        return self

    def __exit__(self, *exc) -> None:
        self._http.close()

    def request(self, method: str, path: str, body: dict | None = None):
        """The JSON answer of one call (None for an empty one); ServerError otherwise."""
        with self._send(method, path, body) as response:
            response.read()
            return response.json() if response.content else None

    def events(self, path: str, body: dict) -> Iterator[dict]:
        """The JSON events of a server-sent event stream (POST), as they arrive, up to
        `[DONE]`; ServerError for a refused request or an error event."""
        import httpx

        with self._send("POST", path, body) as response:
            try:
                for line in response.iter_lines():
                    data = line.removeprefix("data:").strip() if line.startswith("data:") \
                        else None
                    if data == "[DONE]":
                        return
                    if data:
                        event = json.loads(data)
                        if isinstance(event.get("error"), dict):
                            raise ServerError(str(event["error"].get("message")))
                        yield event
            except httpx.HTTPError as exc:
                raise ServerError(f"the stream from {self.url} broke off: {exc}") from exc

    @contextlib.contextmanager
    def _send(self, method: str, path: str, body: dict | None) -> Iterator:
        """The response to one call, streamed, once the models have loaded; ServerError for
        an error status."""
        import httpx

        deadline = time.monotonic() + LOADING_WAIT
        told = False
        while True:
            try:
                response = self._http.send(self._http.build_request(method, path, json=body),
                                           stream=True)
            except httpx.HTTPError as exc:
                raise ServerError(f"cannot reach the polyseek server at {self.url}: "
                                  f"{exc}") from exc
            try:
                if response.status_code >= 400:
                    response.read()
                    error = _error_of(response)
                    if response.status_code == 503 and error[1] == "model_loading" \
                            and time.monotonic() < deadline:
                        if not told and self._on_wait:
                            self._on_wait(f"waiting for the server's models to load "
                                          f"({self.url})")
                            told = True
                        time.sleep(0.5)
                        continue
                    if response.status_code == 401:
                        raise ServerError(f"the server at {self.url} needs an API key: pass "
                                          "--api-key or set POLYSEEK_API_KEY", 401)
                    raise ServerError(error[0], response.status_code)
                yield response
                return
            finally:
                response.close()


def _error_of(response) -> tuple[str, str]:
    """(message, type) of an error response in either of the server's shapes."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}", ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message")), str(body["error"].get("type", ""))
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI's validation shape
        return "; ".join(f"{'.'.join(map(str, d.get('loc', [])[1:]))}: {d.get('msg')}"
                         for d in detail if isinstance(d, dict)), "invalid_request_error"
    return str(detail or body), ""
