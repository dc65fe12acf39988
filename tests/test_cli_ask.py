"""`polyseek ask`: a grounded answer from an indexed folder, in this process or through the
server that serves the data directory, as a user runs it (child processes)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import httpx
import pytest

from polyseek.cli import _ask_server
from polyseek.retrieval.citations import citation_numbers

from support import REPO, cli, serve_subprocess

sys.path.insert(0, str(REPO / "tests" / "api"))
from test_grounded import write_folder  # noqa: E402

QUESTION = "What causes the tides?"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> tuple[Path, Path]:
    """(folder, data directory): the folder indexed by `polyseek index` (the default model)."""
    root = tmp_path_factory.mktemp("ask")
    docs, data = write_folder(root / "docs").resolve(), root / "data"
    run = cli("index", str(docs), "--collection", "folder", "--data", str(data))
    assert run.returncode == 0, run.stderr
    return docs, data


def check_answer(body: dict, docs: Path) -> None:
    sources = body["sources"]
    assert [s["number"] for s in sources] == [1, 2, 3]
    assert (sources[0]["path"], sources[0]["page"]) == (str(docs / "tides.txt"), None)
    assert "Moon" in sources[0]["text"]
    cited = set(citation_numbers(body["answer"]))
    assert cited <= {1, 2, 3} and {s["number"] for s in sources if s["cited"]} == cited
    assert body["answer"].strip()


def chat_requests(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    found = re.search(r'^polyseek_requests_total\{route="/v1/chat/completions",status="200"\} '
                      r"(\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_ask_in_process_then_through_the_server(indexed):
    docs, data = indexed
    args = ["ask", QUESTION, "--collection", "folder", "--data", str(data), "--top-k", "3",
            "--max-tokens", "16"]
    here = cli(*args, "--json")
    assert here.returncode == 0, here.stderr
    local = json.loads(here.stdout)
    check_answer(local, docs)

    text = cli(*args)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    at = lines.index("Sources:")
    assert "\n".join(lines[:at]).strip() == local["answer"].strip()
    assert re.fullmatch(rf"[ *]\[1\] \d\.\d{{4}}  {re.escape(str(docs / 'tides.txt'))}",
                        lines[at + 1]), lines

    with serve_subprocess("--data", str(data)) as url:
        before = chat_requests(url)
        served = cli(*args, "--json")
        assert served.returncode == 0, served.stderr
        assert chat_requests(url) == before + 1  # answered by the server
        remote = json.loads(served.stdout)
        check_answer(remote, docs)
        assert [(s["path"], s["chunk"]) for s in remote["sources"]] == [
            (s["path"], s["chunk"]) for s in local["sources"]]
        missing = cli("ask", QUESTION, "--collection", "nope", "--data", str(data))
        assert missing.returncode == 2 and "no collection 'nope'" in missing.stderr

        # the answer is printed as the server streams it
        pieces: list[str] = []
        streamed = _ask_server(url, None, QUESTION, "folder", None, 3, None, [],
                               {"max_tokens": 16, "temperature": 0.0}, pieces.append)
        assert len(pieces) > 1 and "".join(pieces) == streamed["answer"] == remote["answer"]
        assert streamed["sources"] == remote["sources"]
        printed = cli(*args)
        assert printed.returncode == 0, printed.stderr
        assert printed.stdout.split("\nSources:")[0].strip() == remote["answer"].strip()


def test_ask_errors_are_clear(indexed, tmp_path):
    _, data = indexed
    missing = cli("ask", QUESTION, "--collection", "nope", "--data", str(data))
    assert missing.returncode == 2 and "no collection 'nope'" in missing.stderr
    empty = cli("ask", "  ", "--collection", "folder", "--data", str(data))
    assert empty.returncode == 2 and "question is empty" in empty.stderr
    many = cli("ask", QUESTION, "--collection", "folder", "--data", str(data), "--top-k", "50")
    assert many.returncode == 2 and "--top-k" in many.stderr
