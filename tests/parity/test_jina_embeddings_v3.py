"""jina-embeddings-v3 parity: module tree vs the released manifest, tiny model vs reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

from polyseek.errors import InvalidInput
from polyseek.models.base import Embedder
from polyseek.models.checkpoint import load_strict
from polyseek.models.families import family_of
from polyseek.models.jina_v3 import (
    JinaEmbeddingsV3,
    XLMRobertaLoRA,
    build_jina_v3,
    mean_pool,
)

from support import FIXTURES, maxdiff, serve_in_thread

V3 = FIXTURES / "jina-embeddings-v3"
FIXTURE_DIR = V3  # read by the conftest fixtures
pytestmark = pytest.mark.skipif(not V3.is_dir(), reason=f"jina-embeddings-v3 fixtures missing "
                                                        f"at {V3}")
TASKS = ("retrieval.query", "retrieval.passage", "separation", "classification", "text-matching")
CASES = ("none", *TASKS)
ATOL_HIDDEN = 1e-4
ATOL = 1e-5


def tiny_config() -> dict:
    return json.loads((V3 / "tiny_config.json").read_text())





@pytest.fixture(scope="module")
def tiny() -> XLMRobertaLoRA:
    model = build_jina_v3(tiny_config())
    load_strict(model, load_file(V3 / "tiny_weights.safetensors"))
    return model.eval()


@pytest.fixture(scope="module")
def outputs(tiny, golden) -> dict:
    with torch.inference_mode():
        return {case: tiny(golden[f"{case}.input_ids"], golden[f"{case}.attention_mask"],
                           None if case == "none" else case) for case in CASES}


# --- module tree vs the released checkpoint ---------------------------------------------------


def test_family_is_recognised_from_config_fields():
    manifest = json.loads((V3 / "manifest_real.json").read_text())
    assert family_of(manifest["config"]).name == family_of(tiny_config()).name == (
        "jina-embeddings-v3")
    plain = {"model_type": "xlm-roberta", "position_embedding_type": "absolute"}
    assert family_of(plain).name == "hf-encoder"


def test_meta_build_matches_the_manifest():
    manifest = json.loads((V3 / "manifest_real.json").read_text())
    with torch.device("meta"):
        module = build_jina_v3(manifest["config"])
    state = module.state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == {
        p["key"]: p["shape"] for p in manifest["keys"]}
    assert len(state) == manifest["num_keys"] == 492
    assert sum(p.numel() for p in module.parameters()) == manifest["total_numel"]
    assert all(p.device.type == "meta" for p in module.parameters())


def test_strict_load_refuses_missing_or_misshapen_tensors():
    state = load_file(V3 / "tiny_weights.safetensors")
    with pytest.raises(ValueError, match="missing"):
        load_strict(build_jina_v3(tiny_config()), {k: v for k, v in state.items()
                                                   if "pooler" not in k})
    bad = {**state, "roberta.emb_ln.weight": torch.zeros(3)}
    with pytest.raises(ValueError, match="shapes"):
        load_strict(build_jina_v3(tiny_config()), bad)


# --- reference outputs ------------------------------------------------------------------------


def test_rotary_frequencies(tiny, golden):
    assert maxdiff(tiny.roberta.rotary.inv_freq(), golden["debug.rotary_inv_freq"]) == 0


@pytest.mark.parametrize("case", CASES)
def test_every_golden_tensor(outputs, golden, case):
    out, mask = outputs[case], golden[f"{case}.attention_mask"]
    real = mask.bool()
    stages = torch.stack(out.hidden_states)  # [stage, B, L, H]
    assert maxdiff(stages[:, real], golden[f"{case}.hidden_states"][:, real]) < ATOL_HIDDEN
    assert maxdiff(out.last_hidden_state[real],
                   golden[f"{case}.last_hidden_state"][real]) < ATOL_HIDDEN
    assert maxdiff(out.pooler_output, golden[f"{case}.pooler_output"]) < ATOL_HIDDEN
    pooled = mean_pool(out.last_hidden_state, mask)
    assert maxdiff(pooled, golden[f"{case}.mean_pooled"]) < ATOL_HIDDEN
    assert maxdiff(F.normalize(pooled, dim=-1), golden[f"{case}.embedding"]) < ATOL
    for dim in (8, 16, 32, 64):
        truncated = F.normalize(pooled[:, :dim], dim=-1)
        assert maxdiff(truncated, golden[f"{case}.embedding_dim{dim}"]) < ATOL


def test_mixed_tasks_in_one_batch(tiny, golden, golden_json):
    with torch.inference_mode():
        out = tiny(golden["mixed.input_ids"], golden["mixed.attention_mask"],
                   golden_json["mixed_tasks"])
    real = golden["mixed.attention_mask"].bool()
    assert maxdiff(out.last_hidden_state[real], golden["mixed.last_hidden_state"][real]) < 1e-4
    embedding = F.normalize(mean_pool(out.last_hidden_state, golden["mixed.attention_mask"]),
                            dim=-1)
    assert maxdiff(embedding, golden["mixed.embedding"]) < ATOL


def test_tasks_change_outputs_as_the_reference(outputs, golden, golden_json):
    def embedding(case):
        return F.normalize(mean_pool(outputs[case].last_hidden_state,
                                     golden[f"{case}.attention_mask"]), dim=-1)

    for task, expected in golden_json["task_effect_maxabs_vs_none"].items():
        assert abs(maxdiff(embedding(task), embedding("none")) - expected) < ATOL
    cos = float(embedding("retrieval.query")[0] @ embedding("retrieval.passage")[0])
    assert abs(cos - golden_json["cos_sim_query_vs_passage_row0"]) < ATOL


# --- the Embedder, end to end from a checkpoint directory --------------------------------------


def write_toy_tokenizer(directory: Path) -> None:
    """The fixtures' byte-level toy tokenizer: <s>=0, <pad>=1, </s>=2, byte b -> 5 + b."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from tokenizers.pre_tokenizers import ByteLevel

    specials = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 261}
    alphabet = sorted(ByteLevel.alphabet(), key=lambda c: bytes_to_unicode_inverse()[c])
    vocab = {**specials, **{char: 5 + i for i, char in enumerate(alphabet)}}
    tokenizer = Tokenizer(models.BPE(vocab, merges=[], unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer.add_special_tokens(list(specials))
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
        "pad_token": "<pad>", "unk_token": "<unk>", "model_max_length": 8192,
    }))


def bytes_to_unicode_inverse() -> dict[str, int]:
    """GPT-2's byte -> printable character table, inverted."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("jina-v3")
    (directory / "config.json").write_text((V3 / "tiny_config.json").read_text())
    save_file(load_file(V3 / "tiny_weights.safetensors"), directory / "model.safetensors")
    write_toy_tokenizer(directory)
    return directory


@pytest.fixture(scope="module")
def embedder(checkpoint) -> JinaEmbeddingsV3:
    return JinaEmbeddingsV3.from_pretrained(checkpoint, name="v3-tiny")


def test_capabilities(embedder):
    caps = embedder.capabilities
    assert isinstance(embedder, Embedder)
    assert (caps.kind, caps.family, caps.modalities, caps.tasks) == (
        "embedding", "jina-embeddings-v3", ("text",), TASKS)
    assert (caps.dim, caps.min_dim, caps.matryoshka_dims) == (64, 8, (8, 16, 32, 64))
    assert (caps.max_tokens, caps.reranker, caps.multivector) == (8192, "bi-encoder", False)


@pytest.mark.parametrize("case", CASES)
def test_prepare_builds_the_reference_token_ids(embedder, golden, golden_json, case):
    jobs = embedder.prepare(golden_json["texts"], None if case == "none" else case)
    ids, mask = golden[f"{case}.input_ids"], golden[f"{case}.attention_mask"]
    assert [job.ids for job in jobs] == [row[m.bool()].tolist() for row, m in zip(ids, mask,
                                                                                  strict=True)]


@pytest.mark.parametrize("case", CASES)
def test_encode_matches_golden(embedder, golden, golden_json, case):
    task = None if case == "none" else case
    texts = golden_json["texts"][:3]
    assert maxdiff(embedder.encode(texts, task=task), golden[f"{case}.embedding"]) < ATOL
    short = embedder.encode(texts, task=task, truncate_dim=16)
    assert maxdiff(short, golden[f"{case}.embedding_dim16"]) < ATOL


def test_mixed_task_jobs_share_one_batch(embedder, golden, golden_json):
    jobs = [embedder.prepare([text], task)[0]
            for text, task in zip(golden_json["texts"], golden_json["mixed_tasks"], strict=True)]
    vectors = np.stack(embedder.embed_jobs(jobs))
    vectors /= np.linalg.norm(vectors, axis=-1, keepdims=True)
    assert maxdiff(vectors, golden["mixed.embedding"]) < ATOL
    with_none = embedder.embed_jobs([jobs[0], embedder.prepare([golden_json["texts"][0]])[0]])
    plain = golden["none.embedding"][0]
    assert maxdiff(with_none[1] / np.linalg.norm(with_none[1]), plain) < ATOL


def test_late_chunking_pools_spans_of_one_window(embedder, tiny):
    texts = ["First chunk about cats.", "Second chunk, dogs.", "Third: birds!"]
    jobs = embedder.prepare(texts, "retrieval.passage", late_chunking=True)
    assert len(jobs) == 1 and len(jobs[0].spans) == 3
    head = [0, *(5 + b for b in b"Represent the document for retrieval: ")]
    assert jobs[0].ids[: len(head)] == head and jobs[0].ids[-1] == 2
    ids = torch.tensor([jobs[0].ids])
    with torch.inference_mode():
        hidden = tiny(ids, torch.ones_like(ids), "retrieval.passage").last_hidden_state[0]
    want = F.normalize(torch.stack([hidden[s:e].mean(0) for s, e in jobs[0].spans]), dim=-1)
    got = embedder.encode(texts, task="retrieval.passage", late_chunking=True)
    assert maxdiff(got, want) < ATOL
    independent = embedder.encode(texts, task="retrieval.passage")
    assert maxdiff(got, independent) > 1e-3  # context changes every chunk


def test_any_dimensions_http_accepts_work_in_python(embedder):
    """`truncate_dim=12` (not a Matryoshka dim) is the normalised 12-component prefix."""
    full = embedder.encode(["a short text"], normalize=False)
    want = F.normalize(torch.from_numpy(full[:, :12]), dim=-1).numpy()
    assert maxdiff(embedder.encode(["a short text"], truncate_dim=12), want) < ATOL


def test_invalid_requests(embedder):
    with pytest.raises(InvalidInput, match="unknown task"):
        embedder.encode(["x"], task="retrieval")
    with pytest.raises(InvalidInput, match="dimensions must be between 8 and 64"):
        embedder.encode(["x"], truncate_dim=4)
    with pytest.raises(InvalidInput, match="text-only"):
        embedder.prepare(["x", Image.new("RGB", (8, 8))])


def png_data_uri() -> str:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_served_over_v1_embeddings(checkpoint, embedder):
    """Tasks, Matryoshka dimensions and late chunking through the HTTP route."""
    import httpx

    from polyseek.api.app import ServerSettings, create_app
    from polyseek.runtime.registry import ModelSpec

    specs = [ModelSpec("v3-tiny", str(checkpoint))]
    texts = ["Hello world", "Grüße, Jina."]
    with serve_in_thread(create_app(ServerSettings(models=specs))) as url:
        def embed(**body):
            return httpx.post(f"{url}/v1/embeddings", json={"model": "v3-tiny", **body},
                              timeout=60)

        for task in (*TASKS, None):
            response = embed(input=texts, task=task)
            assert response.status_code == 200, response.text
            got = np.array([d["embedding"] for d in response.json()["data"]])
            np.testing.assert_allclose(got, embedder.encode(texts, task=task), atol=1e-5)
        short = embed(input=texts, task="text-matching", dimensions=32)
        got = np.array([d["embedding"] for d in short.json()["data"]])
        np.testing.assert_allclose(got, embedder.encode(texts, "text-matching", 32), atol=1e-5)
        late = embed(input=texts, task="retrieval.passage", late_chunking=True)
        assert late.status_code == 200, late.text
        got = np.array([d["embedding"] for d in late.json()["data"]])
        want = embedder.encode(texts, task="retrieval.passage", late_chunking=True)
        np.testing.assert_allclose(got, want, atol=1e-5)
        image = embed(input=["x", {"image": png_data_uri()}])
        assert image.status_code == 422, image.text
        assert "text-only" in image.text
        assert embed(input="x", task="retrieval.query", dimensions=4).status_code == 422
        assert embed(input="x", task="code.query").status_code == 422
