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
    """The page's HTML, read once from the package data, with the default fusion preselected
    and marked, and the mode of a collection that names none."""
    html = files("polyseek.api").joinpath("static/index.html").read_text(encoding="utf-8")
    html = re.sub(f'<option value="{DEFAULT_FUSION}">([^<]*)</option>',
                  rf'<option value="{DEFAULT_FUSION}" selected>\1 (default)</option>', html)
    return html.replace('<select id="mode"', f'<select id="mode" data-server-default='
                        f'"{DEFAULT_MODE}"')


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse(index_html())
