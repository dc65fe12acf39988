"""Server lifecycle and access: loading 503s, API keys, metrics, overload, failed loads."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from polyseek.api.app import ServerSettings, create_app
from polyseek.runtime.batcher import BatchLimits
from polyseek.runtime.registry import DEFAULT_SPEC, ModelRegistry, load_spec

from support import DEFAULT_MODEL, serve_in_thread, serve_subprocess

BODY = {"model": DEFAULT_MODEL, "input": "hello"}


def test_server_answers_503_while_loading_then_serves():
    release = threading.Event()

    def gated_loader(spec):
        assert release.wait(timeout=60)
        return load_spec(spec)

    registry = ModelRegistry([DEFAULT_SPEC], loader=gated_loader)
    with serve_in_thread(create_app(registry=registry), wait_healthy=False) as url:
        health = httpx.get(f"{url}/health")
        assert health.status_code == 503
        error = health.json()["error"]
        assert error["code"] == 503 and error["message"].startswith("Model is loading")
        embedded = httpx.post(f"{url}/v1/embeddings", json=BODY)
        assert embedded.status_code == 503
        assert embedded.json()["error"]["message"].startswith("Model is loading")
        assert embedded.headers["retry-after"]
        chat = httpx.post(f"{url}/v1/chat/completions",
                          json={"model": DEFAULT_MODEL, "messages": [{"role": "user",
                                                                       "content": "hi"}]})
        assert chat.status_code == 503
        listed = httpx.get(f"{url}/v1/models").json()["data"][0]
        assert listed["status"] == "loading" and listed["capabilities"] is None

        release.set()
        for _ in range(300):
            if httpx.get(f"{url}/health").status_code == 200:
                break
            threading.Event().wait(0.1)
        assert httpx.post(f"{url}/v1/embeddings", json=BODY).status_code == 200
        assert httpx.get(f"{url}/v1/models").json()["data"][0]["status"] == "ready"


def test_a_model_that_fails_to_load_is_reported_not_hidden():
    registry = ModelRegistry([DEFAULT_SPEC.__class__("broken", "/nonexistent/model")])
    registry.load_all()
    with serve_in_thread(create_app(registry=registry), wait_healthy=False) as url:
        health = httpx.get(f"{url}/health")
        assert health.status_code == 503 and "broken" in health.json()["error"]["message"]
        response = httpx.post(f"{url}/v1/embeddings", json={"model": "broken", "input": "x"})
        assert response.status_code == 503
        assert "failed to load" in response.json()["error"]["message"]


@pytest.fixture(scope="module")
def keyed_server():
    with serve_subprocess("--api-key", "key-one", env={"POLYSEEK_API_KEYS": "key-two"}) as url:
        yield url


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "key-one"}])
def test_api_key_required_when_configured(keyed_server, headers):
    for method, path in [("post", "/v1/embeddings"), ("get", "/v1/models")]:
        response = httpx.request(method, f"{keyed_server}{path}", json=BODY, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == 401
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("key", ["key-one", "key-two"])
def test_valid_keys_from_flag_and_environment(keyed_server, key):
    headers = {"Authorization": f"Bearer {key}"}
    response = httpx.post(f"{keyed_server}/v1/embeddings", json=BODY, headers=headers)
    assert response.status_code == 200
    assert httpx.get(f"{keyed_server}/health").status_code == 200  # stays open


def test_openai_sdk_with_api_key(keyed_server):
    import openai

    good = openai.OpenAI(base_url=f"{keyed_server}/v1", api_key="key-two", max_retries=0)
    assert len(good.embeddings.create(model=DEFAULT_MODEL, input="x").data) == 1
    bad = openai.OpenAI(base_url=f"{keyed_server}/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model=DEFAULT_MODEL, input="x")


def test_metrics_count_requests_batches_and_tokens(client):
    client.post("/v1/embeddings", json={"model": DEFAULT_MODEL, "input": ["one", "two"]})
    client.post("/v1/embeddings", json={"model": "nope", "input": "x"})
    text = client.get("/metrics").text
    assert 'polyseek_requests_total{route="/v1/embeddings",status="200"}' in text
    assert 'polyseek_requests_total{route="/v1/embeddings",status="400"}' in text
    assert 'polyseek_request_duration_seconds_bucket{le="0.1",route="/v1/embeddings"}' in text
    assert f'polyseek_batch_size_count{{model="{DEFAULT_MODEL}"}}' in text
    assert f'polyseek_queue_depth{{model="{DEFAULT_MODEL}"}}' in text
    assert f'polyseek_tokens_total{{model="{DEFAULT_MODEL}"}}' in text
    assert f'polyseek_model_ready{{model="{DEFAULT_MODEL}"}} 1.0' in text


def test_overload_is_429_and_the_server_recovers():
    settings = ServerSettings(batch=BatchLimits(max_queue=8, max_batch_size=4))
    with serve_in_thread(create_app(settings)) as url:
        texts = [f"text {i} " * 50 for i in range(8)]

        async def flood() -> list[int]:
            async with httpx.AsyncClient(base_url=url, timeout=120) as client:
                responses = await asyncio.gather(*(
                    client.post("/v1/embeddings", json={"model": DEFAULT_MODEL, "input": texts})
                    for _ in range(12)
                ))
            return [r.status_code for r in responses]

        statuses = asyncio.run(flood())
        assert set(statuses) == {200, 429}
        assert httpx.post(f"{url}/v1/embeddings", json=BODY).status_code == 200
