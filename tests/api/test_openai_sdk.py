"""The official `openai` SDK, pointed at the server, works unchanged."""

from __future__ import annotations

import asyncio

import numpy as np
import openai
import pytest

from support import CHAT_MODEL, DEFAULT_MODEL


def sdk(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="not-needed", max_retries=0)


def test_sdk_default_base64_decodes_to_the_float_embedding(server, e5):
    texts = ["How do I bake bread?", "Bread baking instructions"]
    result = sdk(server).embeddings.create(model=DEFAULT_MODEL, input=texts)  # base64 on wire
    got = np.array([d.embedding for d in result.data], dtype=np.float32)
    np.testing.assert_allclose(got, e5.encode(texts), atol=1e-6)
    assert result.model == DEFAULT_MODEL
    assert result.usage.prompt_tokens == result.usage.total_tokens > 0


def test_sdk_float_format_and_dimensions(server):
    result = sdk(server).embeddings.create(
        model=DEFAULT_MODEL, input="short vectors", dimensions=128, encoding_format="float"
    )
    vector = np.array(result.data[0].embedding)
    assert vector.shape == (128,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_sdk_lists_models_with_capabilities(server):
    models = {m.id: m for m in sdk(server).models.list().data}
    assert set(models) == {DEFAULT_MODEL, CHAT_MODEL}
    assert models[CHAT_MODEL].model_extra["capabilities"]["kind"] == "chat"
    caps = models[DEFAULT_MODEL].model_extra["capabilities"]
    assert caps["dim"] == 384 and caps["modalities"] == ["text"] and caps["max_tokens"] == 512


def test_sdk_surfaces_errors_as_typed_exceptions(server):
    client = sdk(server)
    with pytest.raises(openai.BadRequestError, match="available models"):
        client.embeddings.create(model="missing-model", input="x")
    with pytest.raises(openai.UnprocessableEntityError):
        client.embeddings.create(model=DEFAULT_MODEL, input="x", dimensions=4096)


def test_async_sdk_concurrent_requests(server, e5):
    texts = [f"sentence number {i} about topic {i % 7}" for i in range(24)]

    async def run() -> list[list[float]]:
        client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="x", max_retries=0)
        async with client:
            results = await asyncio.gather(
                *(client.embeddings.create(model=DEFAULT_MODEL, input=t) for t in texts)
            )
        return [r.data[0].embedding for r in results]

    got = np.array(asyncio.run(run()), dtype=np.float32)
    np.testing.assert_allclose(got, e5.encode(texts), atol=1e-5)
