"""The `polyseek` command line, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from support import CHAT_MODEL, DEFAULT_MODEL, FIXTURES, write_tiny_jina_vlm


def polyseek(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "polyseek", *args], input=stdin,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def e5_default():
    """The bundled default as `polyseek embed` loads it: on its default backend (int8)."""
    from polyseek import load_model

    return load_model(name=DEFAULT_MODEL)


def test_embed_arguments_json(e5_default):
    result = polyseek("embed", "first text", "", "second text", "--json", "--dimensions", "64")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no library warnings or progress bars
    body = json.loads(result.stdout)
    assert body["model"] == DEFAULT_MODEL
    rows = body["data"]
    assert [(r["index"], r["text"]) for r in rows] == [(0, "first text"), (1, ""),
                                                        (2, "second text")]
    assert rows[1]["embedding"] is None  # a blank text has no vector, and keeps its place
    got = np.array([rows[0]["embedding"], rows[2]["embedding"]], dtype=np.float32)
    np.testing.assert_allclose(got, e5_default.encode(["first text", "second text"],
                                                      truncate_dim=64), atol=1e-6)


def test_embed_keeps_one_line_per_stdin_line(e5_default):
    lines = ["from stdin", "", "   ", "another\tline"]
    result = polyseek("embed", "--with-text", stdin="\n".join(lines) + "\r\n")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout.split("\n")
    assert out[-1] == "" and len(out[:-1]) == len(lines)  # blank lines stay blank lines
    assert out[1] == out[2] == ""
    texts, vectors = zip(*(line.split("\t") for line in (out[0], out[3])), strict=True)
    assert texts == ("from stdin", "another line")  # the text beside its vector, on one line
    got = np.array([v.split() for v in vectors], dtype=np.float32)
    np.testing.assert_allclose(got, e5_default.encode(["from stdin", "another\tline"]),
                               atol=1e-5)


def test_encode_takes_one_string_or_an_empty_list(e5):
    one = e5.encode("one string")
    assert one.shape == (384,)  # the string's vector, not one per character
    np.testing.assert_allclose(one, e5.encode(["one string"])[0], atol=1e-6)
    assert e5.encode([]).shape == (0, 384)
    assert e5.encode([], truncate_dim=64).shape == (0, 64)


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
    assert result.stderr == ""  # no transformers warnings or weight-loading bars


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


def test_index_with_an_unknown_model_is_a_clear_error(tmp_path):
    (tmp_path / "note.txt").write_text("a note")
    result = polyseek("index", str(tmp_path / "note.txt"), "--collection", "notes",
                      "--model", "no-such-model", "--data", str(tmp_path / "data"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: model source 'no-such-model'"), result.stderr
    assert "Traceback" not in result.stderr
