"""GET /: the single-page web UI (search and chat), a static file shipped in the package."""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from polyseek.retrieval.search import DEFAULT_FUSION, DEFAULT_MODE

router = APIRouter()


@cache
def index_html() -> str:
    """The page's HTML, read once from the package data, with the search defaults (mode,
    fusion) preselected and marked."""
    html = files("polyseek.api").joinpath("static/index.html").read_text(encoding="utf-8")
    for value in (DEFAULT_MODE, DEFAULT_FUSION):
        html = re.sub(f'<option value="{value}">([^<]*)</option>',
                      rf'<option value="{value}" selected>\1 (default)</option>', html)
    return html


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse(index_html())
