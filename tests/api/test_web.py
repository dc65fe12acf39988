"""GET /v1/collections, and the web page at / driven by a real headless Chromium."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from PIL import Image

from polyseek.api.app import ServerSettings, create_app
from polyseek.retrieval.search import DEFAULT_MODE

from support import CHAT_MODEL, DEFAULT_MODEL, serve_in_thread

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
DOCUMENTS = [
    {"id": "bread", "text": "Sourdough bread needs an active starter and a hot oven."},
    {"id": "chess", "text": "Castling moves the king two squares towards a rook."},
    {"id": "tides", "text": "Tides are caused by the gravitational pull of the Moon."},
]


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    """A server on the default models (MiniLM + the SmolLM2 chat model), one indexed collection."""
    settings = ServerSettings(data_dir=str(tmp_path_factory.mktemp("store")))
    with serve_in_thread(create_app(settings)) as base:
        indexed = httpx.post(f"{base}/v1/index", timeout=120, json={
            "collection": "web-notes", "model": DEFAULT_MODEL, "documents": DOCUMENTS})
        assert indexed.status_code == 200, indexed.text
        yield base


def test_collections_lists_model_and_points(url: str) -> None:
    body = httpx.get(f"{url}/v1/collections", timeout=30).json()
    assert body["object"] == "list"
    notes = next(c for c in body["data"] if c["name"] == "web-notes")
    assert notes == {"name": "web-notes", "model": DEFAULT_MODEL, "family": notes["family"],
                     "dim": 384, "language": "english", "points": 3}
    assert notes["family"]


def test_collections_of_an_empty_store(tmp_path: Path) -> None:
    with serve_in_thread(create_app(ServerSettings(models=[], data_dir=str(tmp_path)))) as base:
        assert httpx.get(f"{base}/v1/collections", timeout=30).json()["data"] == []


def test_page_is_served_without_auth(tmp_path: Path) -> None:
    settings = ServerSettings(models=[], data_dir=str(tmp_path), api_keys=frozenset({"k"}))
    with serve_in_thread(create_app(settings)) as base:
        page = httpx.get(f"{base}/", timeout=30)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'id="search-form"' in page.text and "https://" not in page.text  # no CDNs
        assert httpx.get(f"{base}/v1/collections").status_code == 401
        authed = httpx.get(f"{base}/v1/collections", headers={"Authorization": "Bearer k"})
        assert authed.status_code == 200


@pytest.fixture()
def browser_page():
    """A page in headless Chromium (the system package; Playwright downloads nothing)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed: web page test skipped")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium not installed at {CHROMIUM}: web page test skipped")
    sync_api.expect.set_options(timeout=60_000)  # a search on a busy 2-core machine
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def test_page_searches_and_chats(url: str, browser_page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = browser_page
    page.goto(url)

    # search: pick the collection, query, see the right document with its score
    page.wait_for_selector('#collection option[value="web-notes"]', state="attached")
    page.select_option("#collection", "web-notes")
    page.fill("#query", "why does the sea rise and fall")
    page.click("#search-btn")
    first = page.locator("#results .hit").first
    expect(first.locator(".path")).to_have_text("tides")
    expect(first.locator(".snippet")).to_contain_text("Moon")
    assert 0 < float(first.locator(".score").inner_text()) <= 1
    expect(page.locator("#search-status")).to_contain_text("3 results")

    # chat: an image to the text-only model is refused with a clear message
    page.wait_for_selector(f'#chat-model option[value="{CHAT_MODEL}"]', state="attached")
    image = tmp_path / "red.png"
    Image.new("RGB", (8, 8), "red").save(image)
    page.set_input_files("#chat-image", str(image))
    expect(page.locator("#chat-preview")).to_be_visible()
    page.fill("#chat-input", "What colour is this?")
    page.click("#chat-send")
    expect(page.locator("#chat-error")).to_contain_text("text-only")
    expect(page.locator("#chat-log .msg")).to_have_count(0)

    # then text alone: the answer streams into the log
    page.set_input_files("#chat-image", [])
    page.fill("#chat-max-tokens", "12")
    page.fill("#chat-input", "Say hello.")
    page.click("#chat-send")
    expect(page.locator("#chat-log .msg.user")).to_have_text("Say hello.")
    expect(page.locator("#chat-log .msg.assistant")).not_to_have_text("", timeout=120_000)
    expect(page.locator("#chat-send")).to_be_enabled(timeout=120_000)
    expect(page.locator("#chat-error")).to_be_empty()


def submit_search(page, query: str) -> tuple[dict, dict]:
    """Search from the page; the JSON body it sent to /v1/search and the one it got back."""
    page.fill("#query", query)
    with page.expect_response("**/v1/search") as answer:
        page.click("#search-btn")
    assert answer.value.ok, answer.value.text()
    return answer.value.request.post_data_json, answer.value.json()


def ranks_text(ranks: dict) -> str:
    return " · ".join(f"{k} #{ranks[k]}" if k in ranks else f"{k} –" for k in ("dense", "sparse"))


def test_page_search_modes_explain_and_filters(url: str, browser_page) -> None:
    from playwright.sync_api import expect

    page = browser_page
    page.goto(url)
    page.wait_for_selector('#collection option[value="web-notes"]', state="attached")
    page.select_option("#collection", "web-notes")
    hits, status = page.locator("#results .hit"), page.locator("#search-status")
    expect(page.locator("#mode")).to_have_value(DEFAULT_MODE)  # the server's default

    # sparse: BM25 finds only the passage with the term; no fusion is sent
    page.select_option("#mode", "sparse")
    expect(page.locator("#fusion")).to_be_hidden()
    sent, got = submit_search(page, "gravitational")
    assert (sent["mode"], sent["explain"], "fusion" in sent) == ("sparse", False, False)
    assert got["mode"] == "sparse" and [h["path"] for h in got["hits"]] == ["tides"]
    expect(status).to_contain_text("1 result from web-notes")
    expect(status).to_contain_text("sparse")
    expect(hits).to_have_count(1)
    expect(hits.first.locator(".path")).to_have_text("tides")

    # dense: the same words rank every passage
    page.select_option("#mode", "dense")
    sent, got = submit_search(page, "gravitational")
    assert sent["mode"] == got["mode"] == "dense" and len(got["hits"]) == 3
    expect(hits).to_have_count(3)
    expect(hits.first.locator(".path")).to_have_text("tides")

    # hybrid with explain: each list's candidates, and every hit's rank in both lists
    page.select_option("#mode", "hybrid")
    page.select_option("#fusion", "dbsf")
    page.check("#explain")
    sent, got = submit_search(page, "gravitational oven")
    assert (sent["mode"], sent["fusion"], sent["explain"]) == ("hybrid", "dbsf", True)
    assert [s["name"] for s in got["stages"]] == ["rescore", "sparse", "fusion"]
    stages = page.locator("#stages .stage")
    expect(stages).to_have_count(3)
    sparse = page.locator('#stages .stage[data-stage="sparse"] li .path')
    expect(sparse).to_have_text(["tides", "bread"])  # only the passages with a query term
    expect(page.locator('#stages .stage[data-stage="rescore"] li')).to_have_count(3)
    expect(hits).to_have_count(3)
    for i, hit in enumerate(got["hits"]):
        expect(hits.nth(i).locator(".path")).to_have_text(hit["path"])
        expect(hits.nth(i).locator(".ranks")).to_have_text(ranks_text(hit["ranks"]))
    chess = next(h for h in got["hits"] if h["path"] == "chess")
    assert "sparse" not in chess["ranks"]  # in the dense list only: shown as "sparse –"

    # filters: a path (document id) prefix, then an extension no document has
    page.uncheck("#explain")
    page.fill("#filter-path", "ch")
    sent, got = submit_search(page, "gravitational oven")
    assert sent["filters"] == [{"key": "path", "prefix": "ch"}]
    assert [h["path"] for h in got["hits"]] == ["chess"]
    expect(hits).to_have_count(1)
    expect(page.locator("#stages .stage")).to_have_count(0)
    expect(hits.first.locator(".ranks")).to_have_count(0)  # ranks only with explain
    page.fill("#filter-path", "")
    page.fill("#filter-extension", "md")
    sent, got = submit_search(page, "gravitational oven")
    assert sent["filters"] == [{"key": "extension", "match": ".md"}] and got["hits"] == []
    expect(status).to_contain_text("0 results")
