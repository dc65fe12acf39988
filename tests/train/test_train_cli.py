"""`polyseek train` on the command line: a run, and bad input as a clear error."""

import json

import pytest

from polyseek.train.data import TrainDataError
from polyseek.train.embedder import EmbedderSettings, check_settings

from support import cli


def test_train_embedder_prints_a_report_and_shows_progress_on_stderr(
        tmp_path, pairs_file, tiny_encoder):
    out = tmp_path / "out"
    done = cli("train", "embedder", str(pairs_file), "--output", str(out), "--model",
               str(tiny_encoder), "--lora", "--task", "facts", "--max-steps", "3",
               "--batch-size", "8", "--max-length", "32", "--matryoshka-dims", "8,16",
               "--matryoshka-weights", "3,1", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["steps"] == 3 and report["mode"] == "lora" and report["task"] == "facts"
    assert set(report["ndcg@10"]["after"]) == {"8", "16", "full"}
    assert report["matryoshka_weights"] == {"8": 3.0, "16": 1.0}
    assert "training embedder" in done.stderr and "3/3" in done.stderr
    assert (out / "adapters" / "facts" / "adapter_config.json").exists()


@pytest.mark.parametrize(("command", "content", "message"), [
    ("embedder", None, "not found"),
    ("reranker", '{"query": "a", "positive": "b"}\n{"query": oops}\n',
     "bad.jsonl line 2: not valid JSON"),
    ("embedder", '{"query": "a", "positive": "b"}\n{"query": "c", "positive": ""}\n',
     "bad.jsonl line 2: 'positive' must be a non-empty string"),
    ("reranker", "", "bad.jsonl holds no training rows"),
])
def test_bad_data_is_a_clear_error(tmp_path, command, content, message):
    path = tmp_path / "bad.jsonl"
    if content is not None:
        path.write_text(content)
    done = cli("train", command, str(path), "--output", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "error: " in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr


def test_lora_without_a_task_is_refused(tmp_path, pairs_file):
    done = cli("train", "embedder", str(pairs_file), "--output", str(tmp_path / "o"), "--lora")
    assert done.returncode == 2 and "--lora needs --task" in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(TrainDataError, match="LoRA adapter's rank; add --lora"):
        check_settings(EmbedderSettings(str(pairs_file), tmp_path / "r", lora_rank=4))


@pytest.mark.parametrize(("weights", "message"), [
    ("4,1", "gives 2 weights for 3 Matryoshka dims [8, 16, 24]"),
    ("4,0,1", "--matryoshka-weights must be positive"),
    ("4,x,1", "expected numbers, e.g. 4,1,1"),
])
def test_bad_matryoshka_weights_are_refused_before_training(tmp_path, pairs_file,
                                                            tiny_encoder, weights, message):
    out = tmp_path / "out"
    done = cli("train", "embedder", str(pairs_file), "--output", str(out), "--model",
               str(tiny_encoder), "--matryoshka-dims", "8,16,24",
               "--matryoshka-weights", weights)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "training embedder" not in done.stderr


def test_train_reranker_prints_its_scores(tmp_path, pairs_file, tiny_encoder):
    from support import write_tiny_cross_encoder

    start = write_tiny_cross_encoder(tmp_path / "start")
    done = cli("train", "reranker", str(pairs_file), "--output", str(tmp_path / "out"),
               "--model", str(start), "--retriever", str(tiny_encoder), "--max-steps", "2",
               "--batch-size", "4", "--max-length", "32", "--depth", "5")
    assert done.returncode == 0, done.stderr
    assert "nDCG@10: retrieval" in done.stdout and "reranked before" in done.stdout
    assert "training reranker" in done.stderr
