"""Errors as data: each polyseek error class has one status and one JSON shape.

422 keeps FastAPI's validation shape ({"detail": [...]}); every other error is
{"error": {"message", "type", "code"}}, the shape OpenAI's and Jina's clients read.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from polyseek.errors import (
    InputTooLarge,
    InvalidInput,
    ModelLoading,
    Overloaded,
    PolyseekError,
    UnknownModel,
    WrongModelKind,
)
from polyseek.retrieval.store import CollectionNotFound, StoreBusy, StoreUnavailable
from polyseek.runtime.classify import ClassifierNotFound, ClassifierUnreadable

# error class -> (status, type)
_STATUS: dict[type[PolyseekError], tuple[int, str]] = {
    UnknownModel: (400, "model_not_found"),
    CollectionNotFound: (404, "collection_not_found"),
    ClassifierNotFound: (404, "classifier_not_found"),
    ClassifierUnreadable: (409, "classifier_unreadable"),
    WrongModelKind: (400, "invalid_request_error"),
    InputTooLarge: (413, "input_too_large"),
    Overloaded: (429, "overloaded"),
    ModelLoading: (503, "model_loading"),
    StoreBusy: (409, "store_busy"),
    StoreUnavailable: (503, "store_unavailable"),
}
_RETRY_AFTER = {429: "1", 503: "5"}
_HTTP_TYPES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               413: "request_too_large"}


def error_response(status: int, message: str, kind: str, headers: dict | None = None):
    headers = dict(headers or {})
    if status in _RETRY_AFTER:
        headers.setdefault("Retry-After", _RETRY_AFTER[status])
    body = {"error": {"message": message, "type": kind, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def validation_response(message: str, loc: tuple) -> JSONResponse:
    detail = [{"type": "value_error", "loc": ["body", *loc], "msg": message}]
    return JSONResponse({"detail": detail}, status_code=422)


async def _polyseek_error(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, InvalidInput):
        return validation_response(str(exc), exc.loc)
    for cls, (status, kind) in _STATUS.items():
        if isinstance(exc, cls):
            return error_response(status, str(exc), kind)
    return error_response(400, str(exc), "invalid_request_error")


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        # FastAPI's "error parsing the body": a JSON body that is not UTF-8 text
        detail = [{"type": "json_invalid", "loc": ["body"],
                   "msg": f"invalid JSON: the body is not UTF-8 text ({exc.__cause__})"}]
        return JSONResponse({"detail": detail}, status_code=422)
    kind = _HTTP_TYPES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, str(exc.detail), kind, exc.headers)


def json_error_message(doc: str | bytes, pos: int, reason: str) -> str:
    """Where a JSON body stops parsing and why, e.g. "invalid JSON at line 1, column 9
    (character 8): Expecting ',' delimiter, at '}'"."""
    text = doc.decode("utf-8", "replace") if isinstance(doc, bytes) else str(doc)
    line = text.count("\n", 0, pos) + 1
    column = pos - text.rfind("\n", 0, pos)
    found = text[pos:pos + 20]
    where = f", at {found!r}" if found else ", at the end of the body"
    return f"invalid JSON at line {line}, column {column} (character {pos}): {reason}{where}"


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = []
    for e in exc.errors():
        item = {k: v for k, v in e.items() if k in ("type", "loc", "msg")}
        if e.get("type") == "json_invalid" and isinstance(exc.body, str | bytes):
            pos = e["loc"][-1] if isinstance(e["loc"][-1], int) else 0
            reason = e.get("ctx", {}).get("error", "not JSON")
            item["msg"] = json_error_message(exc.body, pos, reason)
        detail.append(item)
    return JSONResponse({"detail": detail}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PolyseekError, _polyseek_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
