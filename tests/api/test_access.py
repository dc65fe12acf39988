"""Who may read what: with API keys set, only /health (without model names) and the web page
are open, unless the operator opts in with --public-docs or --public-metrics; without keys,
everything is open. And /docs works offline: its assets come from the server itself."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from polyseek.api.app import ServerSettings, create_app
from polyseek.runtime.registry import ModelRegistry, ModelSpec

from support import MINILM, MINILM_SOURCE, serve_in_thread, serve_subprocess

KEY = "a-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MODEL = ("--model", f"{MINILM}={MINILM_SOURCE}")  # small and quick to load
DOCS = ["/docs", "/redoc", "/openapi.json", "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css", "/docs/assets/redoc.standalone.js",
        "/docs/assets/favicon.png"]
API = ["/v1/models", "/v1/collections", f"/v1/models/{MINILM}"]
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def public_docs():
    """`polyseek serve --api-key KEY --public-docs`."""
    with serve_subprocess("--api-key", KEY, "--public-docs", *MODEL) as url:
        yield url


def status(url: str, path: str, headers: dict | None = None) -> int:
    return httpx.get(f"{url}{path}", headers=headers, timeout=30).status_code


def assert_closed(url: str, paths: list[str]) -> None:
    for path in paths:
        response = httpx.get(f"{url}{path}", timeout=30)
        assert response.status_code == 401, (path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert status(url, path, {"Authorization": "Bearer wrong"}) == 401, path
        assert status(url, path, AUTH) == 200, path


def assert_open(url: str, paths: list[str]) -> None:
    for path in paths:
        assert status(url, path) == 200, path


def test_with_keys_health_and_the_page_are_open_and_health_names_no_models(public_docs):
    assert_open(public_docs, ["/", "/health"])
    assert httpx.get(f"{public_docs}/health").json() == {"status": "ok"}
    assert httpx.get(f"{public_docs}/health", headers=AUTH).json() == {
        "status": "ok", "models": [MINILM]}


def test_public_docs_opens_the_docs_only(public_docs):
    assert_open(public_docs, DOCS)
    assert_closed(public_docs, ["/metrics", *API])


def test_public_metrics_opens_the_metrics_only(tmp_path):
    settings = ServerSettings(models=[], api_keys=frozenset({KEY}), public_metrics=True,
                              data_dir=str(tmp_path))
    with serve_in_thread(create_app(settings)) as url:
        assert_open(url, ["/", "/health", "/metrics"])
        assert_closed(url, [*DOCS, "/v1/models", "/v1/collections"])


@pytest.mark.parametrize("flags", [[], ["--public-docs"], ["--public-metrics"],
                                   ["--public-docs", "--public-metrics"]])
def test_serve_passes_the_access_flags(monkeypatch, flags):
    import uvicorn
    from typer.testing import CliRunner

    from polyseek.cli import app as cli

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: served.append(app.state.settings))
    result = CliRunner().invoke(cli, ["serve", "--api-key", KEY, *flags])
    assert result.exit_code == 0, result.output
    (settings,) = served
    assert settings.api_keys == frozenset({KEY})
    assert settings.public_docs == ("--public-docs" in flags)
    assert settings.public_metrics == ("--public-metrics" in flags)


def test_with_keys_the_schema_declares_the_bearer_scheme_and_401(public_docs):
    schema = httpx.get(f"{public_docs}/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            if path.startswith("/v1/"):
                assert operation["security"] == [{"HTTPBearer": []}], path
                assert "401" in operation["responses"], path
            else:
                assert "security" not in operation and "401" not in operation["responses"]


def test_a_failing_model_is_not_named_without_a_key():
    registry = ModelRegistry([ModelSpec("secret-model", "/nonexistent/secret-path")])
    registry.load_all()
    app = create_app(ServerSettings(api_keys=frozenset({KEY})), registry=registry)
    with serve_in_thread(app, wait_healthy=False) as url:
        anonymous = httpx.get(f"{url}/health")
        assert anonymous.status_code == 503
        assert "secret" not in anonymous.text and "failed to load" in anonymous.text
        keyed = httpx.get(f"{url}/health", headers=AUTH)
        assert keyed.status_code == 503 and "secret-model" in keyed.text


def test_without_keys_everything_is_open(server):
    assert_open(server, ["/", "/health", "/metrics", *DOCS, "/v1/models", "/v1/collections"])
    assert "models" in httpx.get(f"{server}/health").json()
    assert "securitySchemes" not in httpx.get(f"{server}/openapi.json").json()["components"]


def test_docs_pages_reference_only_the_server(public_docs):
    for path in ("/docs", "/redoc"):
        page = httpx.get(f"{public_docs}{path}").text
        assert not re.search(r"https?://", page), page  # no CDN, no web fonts
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page)
        assert assets and all(a.startswith("/docs/assets/") for a in assets), assets
    bundle = httpx.get(f"{public_docs}/docs/assets/swagger-ui-bundle.js")
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert len(bundle.content) > 100_000
    for name in ("index.html", "core.py", "%2E%2E%2Fcore.py"):  # the listed assets only
        assert status(public_docs, f"/docs/assets/{name}") == 404, name


def test_docs_render_in_a_browser_that_reaches_nothing_but_the_server(public_docs):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium not installed at {CHROMIUM}")
    server = urlparse(public_docs).netloc
    elsewhere: list[str] = []

    def only_the_server(route):
        if urlparse(route.request.url).netloc == server:
            return route.continue_()
        elsewhere.append(route.request.url)
        return route.abort()

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update"])
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.route("**/*", only_the_server)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{public_docs}/docs")
            page.locator(".opblock-summary-path", has_text="/v1/embeddings").wait_for()
            assert page.locator(".opblock").count() >= 11
            assert not elsewhere, elsewhere  # Swagger UI asks nothing of the internet
            page.goto(f"{public_docs}/redoc")
            page.get_by_text("/v1/chat/completions").first.wait_for(state="attached")
        finally:
            browser.close()
    # ReDoc's bundle links its attribution logo from its CDN; the <img> hides itself when
    # that fails, and the docs render without it
    assert set(elsewhere) <= {"https://cdn.redoc.ly/redoc/logo-mini.svg"}, elsewhere
    assert not errors, errors
