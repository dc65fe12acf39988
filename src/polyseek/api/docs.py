"""/docs (Swagger UI), /redoc and /openapi.json, with the UI's assets served by the app itself
(from the fastapi-offline package), so the docs work without reaching a CDN."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.params import Depends
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

ASSETS_URL = "/docs/assets"
ASSETS = {  # file -> media type
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
# Swagger UI options: no calls to the online validator, the key kept across reloads
SWAGGER_PARAMETERS = {"validatorUrl": None, "persistAuthorization": True}


def _asset_dir():
    return files("fastapi_offline").joinpath("static")


def docs_router(guard: list[Depends]) -> APIRouter:
    router = APIRouter(dependencies=guard, include_in_schema=False)

    @router.get("/openapi.json")
    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(request.app.openapi())

    @router.get("/docs")
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json", title=f"{request.app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=None, swagger_ui_parameters=SWAGGER_PARAMETERS)

    @router.get("/redoc")
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}/openapi.json", title=f"{request.app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png", with_google_fonts=False)

    @router.get(ASSETS_URL + "/{name}")
    async def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404, f"no docs asset {name!r}")
        path = _asset_dir().joinpath(name)
        return FileResponse(str(path), media_type=ASSETS[name],
                            headers={"Cache-Control": "public, max-age=86400"})

    return router
