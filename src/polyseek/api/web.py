"""GET /: the single-page web UI (search and chat), a static file shipped in the package."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()


@cache
def index_html() -> str:
    """The page's HTML, read once from the package data."""
    return files("polyseek.api").joinpath("static/index.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse(index_html())
