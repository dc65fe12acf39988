"""GET /v1/collections, and the web page at / driven by a real headless Chromium."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from PIL import Image

from polyseek.api.app import ServerSettings, create_app
from polyseek.retrieval.search import DEFAULT_MODE
from polyseek.runtime.registry import DEFAULT_CHAT_SPEC, DEFAULT_SPEC, ModelSpec

from support import (
    CHAT_MODEL,
    DEFAULT_MODEL,
    FIXTURES,
    MINILM,
    MINILM_SOURCE,
    serve_in_thread,
    write_tiny_jina_clip_v2,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
DOCUMENTS = [
    {"id": "bread", "text": "Sourdough bread needs an active starter and a hot oven."},
    {"id": "chess", "text": "Castling moves the king two squares towards a rook."},
    {"id": "tides", "text": "Tides are caused by the gravitational pull of the Moon."},
]


CLIP = "clip-tiny"  # the tiny random jina-clip-v2: reads text and images
IMAGE = FIXTURES / "jina-clip-v2" / "image0_landscape_160x120.png"


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    """A server on the default models (multilingual-e5-small, the SmolLM2 chat model), MiniLM
    (a text reranker for them) and a tiny jina-clip-v2; a text collection built by the
    default model ("web-notes") and one built by the image model ("web-images")."""
    clip = write_tiny_jina_clip_v2(tmp_path_factory.mktemp("clip"))
    specs = [DEFAULT_SPEC, ModelSpec(MINILM, MINILM_SOURCE), ModelSpec(CLIP, str(clip)),
             DEFAULT_CHAT_SPEC]
    settings = ServerSettings(models=specs, data_dir=str(tmp_path_factory.mktemp("store")))
    with serve_in_thread(create_app(settings)) as base:
        for collection, model in (("web-notes", DEFAULT_MODEL), ("web-images", CLIP)):
            indexed = httpx.post(f"{base}/v1/index", timeout=120, json={
                "collection": collection, "model": model, "documents": DOCUMENTS})
            assert indexed.status_code == 200, indexed.text
        yield base


def test_collections_lists_model_and_points(url: str) -> None:
    body = httpx.get(f"{url}/v1/collections", timeout=30).json()
    assert body["object"] == "list"
    notes = next(c for c in body["data"] if c["name"] == "web-notes")
    assert notes == {"name": "web-notes", "model": DEFAULT_MODEL, "family": notes["family"],
                     "dim": 384, "language": "english", "mode": DEFAULT_MODE, "points": 3}
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
    # no mode chosen: the search takes the collection's (shown), and sends none
    expect(page.locator("#mode")).to_have_value("")
    expect(page.locator("#collection-mode")).to_have_text(f"the collection's ({DEFAULT_MODE})")
    sent, got = submit_search(page, "gravitational")
    assert "mode" not in sent and got["mode"] == DEFAULT_MODE

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


# -- the page at a phone's and a laptop's width -------------------------------------------------

CONTROL_ROLES = {"button", "textbox", "searchbox", "combobox", "listbox", "checkbox",
                 "spinbutton", "radio", "slider", "switch"}

LAYOUT_JS = """() => {
  const visible = (el) => el.checkVisibility() && el.getBoundingClientRect().width > 0;
  const controls = [...document.querySelectorAll("input, select, textarea, button")]
    .filter(visible);
  const box = (el) => el.getBoundingClientRect();
  const overlaps = [];
  controls.forEach((a, i) => controls.slice(i + 1).forEach((b) => {
    const r = box(a), s = box(b);
    const x = Math.min(r.right, s.right) - Math.max(r.left, s.left);
    const y = Math.min(r.bottom, s.bottom) - Math.max(r.top, s.top);
    if (x > 0.5 && y > 0.5) overlaps.push(`${a.id} / ${b.id}`);
  }));
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    outside: controls.filter((el) => box(el).left < 0 || box(el).right > window.innerWidth)
      .map((el) => el.id),
    overlaps,
    controls: controls.map((el) => el.id),
    query: box(document.getElementById("query")).width,
  };
}"""


def accessible_names(page) -> dict[str, str]:
    """The accessible name the browser computes for each control in its accessibility tree,
    by element id ("" for none)."""
    cdp = page.context.new_cdp_session(page)
    try:
        names = {}
        for node in cdp.send("Accessibility.getFullAXTree")["nodes"]:
            if node.get("ignored") or node.get("role", {}).get("value") not in CONTROL_ROLES:
                continue
            element = cdp.send("DOM.describeNode", {"backendNodeId": node["backendDOMNodeId"]})
            attributes = element["node"].get("attributes", [])
            element_id = dict(zip(attributes[::2], attributes[1::2], strict=True)).get("id", "")
            names[element_id or element["node"]["nodeName"]] = node.get("name", {}).get("value")
        return names
    finally:
        cdp.detach()


def check_layout(page, width: int) -> None:
    """No horizontal scrolling, every control inside the window, none over another, a usable
    query box, and an accessible name (the browser's own computation) on every control."""
    layout = page.evaluate(LAYOUT_JS)
    assert layout["innerWidth"] == width
    assert layout["scrollWidth"] <= width, layout
    assert layout["outside"] == [] and layout["overlaps"] == [], layout
    assert layout["query"] >= 200, layout
    names = accessible_names(page)
    assert set(layout["controls"]) <= set(names), (layout["controls"], names)
    assert [control for control, name in names.items() if not name] == [], names


def option_values(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(f"{selector} option", "os => os.map(o => o.value)")


def disabled_values(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(f"{selector} option:disabled",
                                     "os => os.map(o => o.value)")


WATCH_TYPING_JS = """() => {
  window.chatStates = [];
  const state = () => [...document.querySelectorAll("#chat-log .msg.assistant")].map((d) =>
    d.classList.contains("typing") ? (d.offsetWidth > 0 ? "typing" : "hidden typing")
                                   : (d.textContent ? "text" : "empty"));
  new MutationObserver(() => window.chatStates.push(state().join(",")))
    .observe(document.getElementById("chat-log"),
             { childList: true, subtree: true, characterData: true, attributes: true });
}"""


@pytest.mark.parametrize("width", [420, 1280])
def test_page_at_width(url: str, browser_page, width: int) -> None:
    """Search with a reranker and explain, the image query only where the collection's model
    reads images, a typing indicator in chat; a clean console and network throughout."""
    from playwright.sync_api import expect

    page = browser_page
    page.set_viewport_size({"width": width, "height": 900})
    console, requests, failed, bad = [], [], [], []
    page.on("console", lambda m: m.type == "error" and console.append(m.text))
    page.on("pageerror", lambda e: console.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: failed.append(f"{r.url} {r.failure}"))
    page.on("response", lambda r: r.status >= 400 and bad.append(f"{r.status} {r.url}"))
    page.goto(url)
    page.wait_for_selector(f'#rerank option[value="{MINILM}"]', state="attached")
    page.wait_for_selector('#collection option[value="web-images"]', state="attached")

    # a text collection: no image query; rerankers are the other models that can rerank
    page.select_option("#collection", "web-notes")
    expect(page.locator("#image-row")).to_be_hidden()
    assert option_values(page, "#rerank") == ["", MINILM, CLIP]  # not its own model, not chat
    check_layout(page, width)

    # rerank and explain, end to end: the reranker's stage and the hits it ordered
    page.select_option("#rerank", MINILM)
    page.check("#explain")
    sent, got = submit_search(page, "why does the sea rise and fall")
    assert (sent["rerank"], sent["explain"]) == (MINILM, True)
    assert got["stages"][-1]["name"] == "rerank" and got["hits"][0]["path"] == "tides"
    hits = page.locator("#results .hit")
    expect(hits).to_have_count(3)
    expect(hits.first.locator(".path")).to_have_text("tides")
    expect(page.locator("#search-status")).to_contain_text(f"reranked by {MINILM}")
    expect(page.locator('#stages .stage[data-stage="rerank"] li')).to_have_count(3)
    check_layout(page, width)

    # an image model's collection: the image query; text-only rerankers greyed out for it
    page.select_option("#collection", "web-images")
    expect(page.locator("#image-row")).to_be_visible()
    assert option_values(page, "#rerank") == ["", DEFAULT_MODEL, MINILM]
    page.select_option("#rerank", MINILM)
    page.set_input_files("#query-image", str(IMAGE))
    expect(page.locator("#query-preview")).to_be_visible()
    expect(page.locator("#rerank")).to_have_value("")
    assert disabled_values(page, "#rerank") == [DEFAULT_MODEL, MINILM]
    check_layout(page, width)
    sent, got = submit_search(page, "")
    assert sent["query"]["image"].startswith("data:image/png;base64,") and "rerank" not in sent
    assert got["model"] == CLIP and len(got["hits"]) == 3
    expect(hits).to_have_count(3)
    page.click("#clear-image")
    assert disabled_values(page, "#rerank") == []
    page.select_option("#collection", "web-notes")
    expect(page.locator("#image-row")).to_be_hidden()

    # chat: three dots while the first token is awaited, then the streamed answer
    page.wait_for_selector(f'#chat-model option[value="{CHAT_MODEL}"]', state="attached")
    page.evaluate(WATCH_TYPING_JS)
    page.fill("#chat-max-tokens", "8")
    page.fill("#chat-input", "Say hello.")
    page.click("#chat-send")
    answer = page.locator("#chat-log .msg.assistant")
    expect(answer).not_to_have_text("", timeout=120_000)
    expect(page.locator("#chat-send")).to_be_enabled(timeout=120_000)
    expect(page.locator("#chat-log .typing")).to_have_count(0)
    states = page.evaluate("window.chatStates")
    assert states[0] == "typing" and "text" in states, states
    assert "empty" not in states[:states.index("text")], states  # dots until the first token
    check_layout(page, width)

    # nothing went wrong on the way, and the favicon is inline (no /favicon.ico request)
    assert console == [] and failed == [] and bad == []
    assert not [u for u in requests if "favicon" in u]


@pytest.mark.parametrize("width", [420, 1280])
def test_page_grounded_chat_at_width(url: str, browser_page, width: int) -> None:
    """"Search my documents": the chat answers from the collection picked under Search and
    lists its sources under the answer, numbered as cited; the layout holds at both widths."""
    from playwright.sync_api import expect

    page = browser_page
    page.set_viewport_size({"width": width, "height": 900})
    console = []
    page.on("console", lambda m: m.type == "error" and console.append(m.text))
    page.on("pageerror", lambda e: console.append(str(e)))
    page.goto(url)
    page.wait_for_selector('#collection option[value="web-notes"]', state="attached")
    page.wait_for_selector(f'#chat-model option[value="{CHAT_MODEL}"]', state="attached")
    page.select_option("#collection", "web-notes")
    switch = page.get_by_role("switch", name="Search my documents")
    expect(switch).not_to_be_checked()
    switch.check()
    check_layout(page, width)

    page.fill("#chat-max-tokens", "8")
    page.fill("#chat-input", "What causes the tides?")
    with page.expect_response("**/v1/chat/completions") as answer:
        page.click("#chat-send")
    sent = answer.value.request.post_data_json
    assert (sent["collection"], sent["stream"]) == ("web-notes", True)
    sources = page.locator("#chat-log .sources li")
    expect(sources).to_have_count(3, timeout=120_000)
    expect(sources.first.locator(".path")).to_have_text("tides")
    expect(page.locator("#chat-log .sources")).to_have_attribute(
        "aria-label", "Sources from web-notes")
    expect(page.locator("#chat-send")).to_be_enabled(timeout=120_000)
    expect(page.locator("#chat-error")).to_be_empty()
    check_layout(page, width)

    # switched off: a plain chat, no sources under the answer
    switch.uncheck()
    page.fill("#chat-input", "Say hello.")
    with page.expect_response("**/v1/chat/completions") as plain:
        page.click("#chat-send")
    assert "collection" not in plain.value.request.post_data_json
    expect(page.locator("#chat-log .msg.assistant")).to_have_count(2)
    expect(page.locator("#chat-send")).to_be_enabled(timeout=120_000)
    expect(page.locator("#chat-log .sources")).to_have_count(1)
    assert console == []
