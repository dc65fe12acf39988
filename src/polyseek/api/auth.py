"""Bearer-key check for /v1/* when keys are configured."""

from __future__ import annotations

import secrets

from fastapi import Request
from starlette.exceptions import HTTPException


def require_api_key(request: Request) -> None:
    keys: frozenset[str] = request.app.state.settings.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and any(secrets.compare_digest(token.strip(), k) for k in keys):
        return
    message = "missing or invalid API key: send 'Authorization: Bearer <key>'"
    raise HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})
