"""API keys: when keys are configured, a request needs 'Authorization: Bearer KEY'.

With keys set, only /health and the web page (with its assets) are open; /docs, /redoc and
/openapi.json need a key unless the operator passes --public-docs, /metrics unless
--public-metrics. /health answers without a key but names no models. Without keys, everything
is open.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

# declares the scheme in /openapi.json (Swagger UI's "Authorize" button); the check is ours
_bearer = HTTPBearer(auto_error=False, description="an API key given to `polyseek serve` with "
                     "--api-key or POLYSEEK_API_KEYS")


def has_valid_key(request: Request) -> bool:
    """True when no keys are configured, or the request carries one of them."""
    keys: frozenset[str] = request.app.state.settings.api_keys
    if not keys:
        return True
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and any(
        secrets.compare_digest(token.strip().encode(), k.encode()) for k in keys)


def require_api_key(request: Request,
                    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    if has_valid_key(request):
        return
    message = "missing or invalid API key: send 'Authorization: Bearer <key>'"
    raise HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def key_guard(keys: frozenset[str], public: bool = False) -> list[DependsParam]:
    """Route dependencies: the key check, unless there are no keys or the routes are public."""
    return [] if public or not keys else [Depends(require_api_key)]
