"""The live server against its own /openapi.json: `schemathesis run` sends generated valid and
invalid requests to every operation (its coverage phase: the boundaries of each constraint;
its fuzzing phase: a bounded number of random cases) and checks every response.

Checks (schemathesis' defaults): no 5xx; only documented status codes, content types and
headers; every body, and every event of a streamed chat, conforms to its schema; requests that
violate the schema are refused (ST201) and valid ones accepted (ST202), except for the
content-dependent refusals listed in schemathesis_hooks.py, which also keeps chat replies at
two tokens and sends requests to the served models. Deterministic: the same cases every run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image

from polyseek.api.app import ServerSettings, create_app
from polyseek.retrieval.store import save_thumbnail

from support import CHAT_MODEL, DEFAULT_MODEL, serve_in_thread

pytest.importorskip("schemathesis")

HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
COLLECTION = "notes"
MAX_EXAMPLES = 10  # per operation and mode in the fuzzing phase


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> tuple[str, str, str]:
    """A server on the default models with one collection, one thumbnail and one classifier;
    (url, thumbnail, classifier id)."""
    data = tmp_path_factory.mktemp("store")
    with serve_in_thread(create_app(ServerSettings(data_dir=str(data)))) as url:
        indexed = httpx.post(f"{url}/v1/index", timeout=120, json={
            "collection": COLLECTION, "model": DEFAULT_MODEL, "documents": [
                {"id": "tides", "text": "Tides follow the Moon.", "metadata": {"year": 2020}},
                {"id": "bread", "text": "Sourdough needs a starter."}]})
        assert indexed.status_code == 200, indexed.text
        thumbnail = save_thumbnail(Image.new("RGB", (16, 12), "teal"), data / "thumbnails")
        trained = httpx.post(f"{url}/v1/train", timeout=120, json={
            "model": DEFAULT_MODEL, "input": [{"text": "Tides follow the Moon.", "label": "sea"},
                                              {"text": "Sourdough needs a starter.",
                                               "label": "bread"}]})
        assert trained.status_code == 200, trained.text
        yield url, thumbnail, trained.json()["classifier_id"]


def test_the_server_keeps_its_schema(served, tmp_path):
    url, thumbnail, classifier = served
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
        "--phases", "examples,coverage,fuzzing", "--max-examples", str(MAX_EXAMPLES),
        "--checks", "all",
        "--workers", "1", "--generation-deterministic",  # no example database either
        "--request-timeout", "60", "--no-color", "--output-truncate", "false",
        "--output-sanitize", "false",
    ]
    env = {
        **os.environ, "SCHEMATHESIS_HOOKS": HOOKS.stem,
        "PYTHONPATH": os.pathsep.join([str(HOOKS.parent), os.environ.get("PYTHONPATH", "")]),
        "POLYSEEK_TEST_EMBEDDING_MODEL": DEFAULT_MODEL, "POLYSEEK_TEST_CHAT_MODEL": CHAT_MODEL,
        "POLYSEEK_TEST_COLLECTION": COLLECTION, "POLYSEEK_TEST_THUMBNAIL": thumbnail,
        "POLYSEEK_TEST_CLASSIFIER": classifier,
    }
    run = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-30000:]
    assert "16 selected / 16 total" in report  # every operation was tested
    # and the cases reached each route's work, not only its validation
    metrics = httpx.get(f"{url}/metrics", timeout=30).text
    for route, code in [("/v1/embeddings", 200), ("/v1/rerank", 200),
                        ("/v1/chat/completions", 200), ("/v1/index", 200), ("/v1/search", 200),
                        ("/v1/segment", 200),
                        ("/v1/models/{name}", 200), ("/v1/classify", 200),
                        ("/v1/train", 200), ("/v1/classifiers", 200),
                        ("/v1/thumbnails/{name}", 200), ("/v1/collections/{name}", 404)]:
        assert f'polyseek_requests_total{{route="{route}",status="{code}"}}' in metrics, \
            (route, code)
