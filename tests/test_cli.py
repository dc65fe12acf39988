"""The `polyseek` command line, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from support import CHAT_MODEL, DEFAULT_MODEL, FIXTURES, write_tiny_jina_vlm


def polyseek(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "polyseek", *args], input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_embed_arguments_json(e5):
    result = polyseek("embed", "first text", "second text", "--json", "--dimensions", "64")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["model"] == DEFAULT_MODEL
    got = np.array([row["embedding"] for row in body["data"]], dtype=np.float32)
    np.testing.assert_allclose(got, e5.encode(["first text", "second text"],
                                              truncate_dim=64), atol=1e-6)


def test_embed_reads_stdin_one_text_per_line(e5):
    result = polyseek("embed", stdin="from stdin\n\nanother line\n")
    assert result.returncode == 0, result.stderr
    rows = [np.array(line.split(), dtype=np.float32) for line in result.stdout.splitlines()]
    assert len(rows) == 2 and rows[0].shape == (384,)
    np.testing.assert_allclose(np.stack(rows), e5.encode(["from stdin", "another line"]),
                               atol=1e-5)


def test_embed_bad_task_is_a_clear_error():
    result = polyseek("embed", "x", "--task", "separation")
    assert result.returncode == 2
    assert "unknown task 'separation'" in result.stderr


def test_models_json_declares_capabilities():
    result = polyseek("models", "--json")
    assert result.returncode == 0, result.stderr
    cards = {card["id"]: card["capabilities"] for card in json.loads(result.stdout)}
    assert set(cards) == {DEFAULT_MODEL, CHAT_MODEL}
    caps = cards[DEFAULT_MODEL]
    assert (caps["dim"], caps["max_tokens"], caps["multivector"]) == (384, 512, False)
    assert (cards[CHAT_MODEL]["kind"], cards[CHAT_MODEL]["modalities"]) == ("chat", ["text"])


def test_models_table():
    result = polyseek("models")
    assert result.returncode == 0, result.stderr
    assert DEFAULT_MODEL in result.stdout and "384" in result.stdout


def test_chat_prompt_streams_an_answer():
    result = polyseek("chat", "-p", "What is the capital of France?", "--stream")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout


def test_chat_with_an_image_on_a_text_only_model_is_a_clear_error(tmp_path):
    from PIL import Image

    image = tmp_path / "red.png"
    Image.new("RGB", (32, 32), "red").save(image)
    result = polyseek("chat", "-p", "What colour?", "-i", str(image))
    assert result.returncode == 2 and "text-only" in result.stderr


def test_chat_with_several_images_on_jina_vlm(tmp_path):
    directory = write_tiny_jina_vlm(tmp_path)
    images = FIXTURES / "jina-vlm"
    result = polyseek("chat", "-m", str(directory), "-p", "Describe this image.",
                      "-i", str(images / "image_small.png"), "-i", str(images / "image_scene.png"),
                      "--max-tokens", "3", "--stream")
    assert result.returncode == 0, result.stderr


def test_serve_refuses_a_malformed_model_option():
    result = polyseek("serve", "--model", "=nothing")
    assert result.returncode != 0
    assert "NAME=SOURCE" in result.stderr
