"""jina-embeddings-v4 parity: module tree vs the released manifest, tiny model vs reference."""

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
from polyseek.inputs.images import ImageLimits, load_image
from polyseek.models.base import Embedder
from polyseek.models.checkpoint import qwen_vl_module_key
from polyseek.models.families import FAMILIES, family_named, family_of
from polyseek.models.jina_v4 import (
    JinaEmbeddingsV4,
    JinaEmbeddingsV4Model,
    MultiTaskLoRALinear,
    adapter_key_shapes,
    adapter_targets,
    build_jina_v4,
    image_processor_from,
)

from support import FIXTURES, assert_truncated, data_uri, maxdiff, serve_checkpoint

V4 = FIXTURES / "jina-embeddings-v4"
FIXTURE_DIR = V4  # read by the conftest fixtures
pytestmark = pytest.mark.skipif(not V4.is_dir(), reason=f"jina-embeddings-v4 fixtures missing "
                                                        f"at {V4}")
TASKS = ("retrieval", "text-matching", "code")
ATOL = 1e-5  # README: float32 vs float64 of the reference differ by < 1e-6 on vectors
ATOL_HIDDEN = 5e-5


def tiny_config() -> dict:
    return json.loads((V4 / "tiny_config.json").read_text())


def split_weights() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Tiny weights as (base checkpoint in legacy names, PEFT adapter file)."""
    weights = load_file(V4 / "tiny_weights.safetensors")
    adapters = {k: v for k, v in weights.items() if k.startswith("base_model.")}
    base = {k: v for k, v in weights.items() if k not in adapters}
    return base, adapters






@pytest.fixture(scope="module")
def tiny() -> JinaEmbeddingsV4Model:
    base, adapters = split_weights()
    model = build_jina_v4(tiny_config())
    family_named("jina-embeddings-v4").load_state(model, base)
    model.load_adapters(adapters, json.loads((V4 / "tiny_adapter_config.json").read_text()))
    return model.eval()


@pytest.fixture(scope="module")
def outputs(tiny, golden) -> dict[str, dict]:
    """Forward of the golden text and image batches under every task and no adapter."""
    result = {}
    with torch.inference_mode():
        for task in (*TASKS, None):
            text = tiny(golden["text.input_ids"], golden["text.attention_mask"], task=task)
            image = tiny(golden["image.input_ids"], golden["image.attention_mask"],
                         golden["image.pixel_values"], golden["image.image_grid_thw"], task=task)
            result[task or "no_adapter"] = {"text": text, "image": image}
    return result


# --- module tree vs the released checkpoint ---------------------------------------------------


def test_family_is_recognised_from_config_fields(manifest):
    assert manifest["config"].get("model_type") is None  # the released config names no family
    assert family_of(manifest["config"]).name == family_of(tiny_config()).name == (
        "jina-embeddings-v4")
    stock = {"model_type": "qwen2_5_vl", "architectures": None}
    assert not any(family.recognizes(stock) for family in FAMILIES)


def test_meta_build_matches_in_memory_and_checkpoint_layouts(manifest):
    with torch.device("meta"):
        module = build_jina_v4(manifest["config"])
    state = module.state_dict()
    in_memory = {p["key"]: p["shape"] for p in manifest["keys_in_memory"]}
    assert {k: list(v.shape) for k, v in state.items()} == in_memory
    checkpoint = {qwen_vl_module_key(p["key"]): p["shape"] for p in manifest["keys"]}
    assert len(checkpoint) == manifest["counts"]["checkpoint_tensors"] == 826
    assert checkpoint == {k: v for k, v in in_memory.items() if k != "lm_head.weight"}
    n_params = sum(p.numel() for p in module.parameters())  # tied lm_head counted once
    assert n_params == manifest["counts"]["checkpoint_params"] == 3_754_885_248
    assert module.lm_head.weight is module.model.language_model.embed_tokens.weight
    assert all(p.device.type == "meta" for p in module.parameters())


def test_adapter_targets_match_the_released_adapter_file(manifest):
    with torch.device("meta"):
        module = build_jina_v4(manifest["config"])
    config = manifest["adapter_config_real"]
    shapes = adapter_key_shapes(adapter_targets(module, config), TASKS, config["r"])
    assert shapes == {k: tuple(v["shape"]) for k, v in manifest["adapter_keys"].items()}
    assert len(shapes) == manifest["counts"]["adapter_tensors"]
    params = sum(int(np.prod(s)) for s in shapes.values())
    assert params == manifest["counts"]["adapter_params"]


# --- loading ----------------------------------------------------------------------------------


def test_tiny_weights_load_strictly_and_adapters_keep_the_state_dict(tiny):
    base, _ = split_weights()
    names = {qwen_vl_module_key(k) for k in base} | {"lm_head.weight"}
    assert set(tiny.state_dict()) == names  # adapters add no state_dict entries
    wrapped = [m for m in tiny.modules() if isinstance(m, MultiTaskLoRALinear)]
    assert len(wrapped) == 2 * 7 + 1  # 2 layers x 7 projections + the projector
    assert all(m.scaling == 2.0 and m.lora_A.shape[:2] == (3, 8) for m in wrapped)
    assert not any("visual" in n for n, m in tiny.named_modules()
                   if isinstance(m, MultiTaskLoRALinear))


def test_missing_or_misshapen_tensors_are_refused():
    base, adapters = split_weights()
    state = {qwen_vl_module_key(k): v for k, v in base.items()}
    config = json.loads((V4 / "tiny_adapter_config.json").read_text())
    with pytest.raises(ValueError, match="missing"):
        family_named("jina-embeddings-v4").load_state(
            build_jina_v4(tiny_config()), {k: v for k, v in state.items() if "norm" not in k})
    model = build_jina_v4(tiny_config())
    family_named("jina-embeddings-v4").load_state(model, state)
    dropped = dict(adapters)
    dropped.pop(next(k for k in adapters if "code" in k))
    with pytest.raises(ValueError, match="missing"):
        model.load_adapters(dropped, config)
    with pytest.raises(ValueError, match="shapes"):
        model.load_adapters(adapters, {**config, "r": 4})


# --- reference outputs ------------------------------------------------------------------------


def test_position_ids_and_vision_tower(tiny, golden):
    g = golden
    assert torch.equal(tiny.position_ids(g["text.input_ids"], g["text.attention_mask"], None),
                       g["text.position_ids"])
    assert torch.equal(tiny.position_ids(g["image.input_ids"], g["image.attention_mask"],
                                         g["image.image_grid_thw"]), g["image.position_ids"])
    with torch.inference_mode():
        vision = tiny.model.visual(g["image.pixel_values"], grid_thw=g["image.image_grid_thw"])
    assert maxdiff(vision.pooler_output, g["image.vision_embeds"]) < ATOL_HIDDEN


def test_image_processor_reproduces_the_pixel_values(golden, golden_json):
    image = Image.open(V4 / "image.png")
    out = image_processor_from(None)(images=[image], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [golden_json["image"]["grid_thw"]]
    assert maxdiff(out["pixel_values"], golden["image.pixel_values"]) < 1e-6


@pytest.mark.parametrize("task", [*TASKS, "no_adapter"])
@pytest.mark.parametrize("modality", ["text", "image"])
def test_every_golden_tensor(outputs, golden, task, modality):
    out = outputs[task][modality]
    produced = {
        "last_hidden": (out.last_hidden_state, ATOL_HIDDEN),
        "single": (out.single_vec_emb, ATOL),
        "single_trunc32": (F.normalize(out.single_vec_emb[:, :32], dim=-1), ATOL),
        "multi": (out.multi_vec_emb, ATOL),
    }
    checked = 0
    for name, (tensor, atol) in produced.items():
        key = f"{task}.{modality}.{name}"
        if key in golden:
            assert tensor.shape == golden[key].shape, key
            assert maxdiff(tensor, golden[key]) < atol, key
            checked += 1
    assert checked == (4 if task != "no_adapter" else 2 if modality == "text" else 1)


def test_multi_vectors_zero_padding_rows(outputs, golden):
    multi = outputs["retrieval"]["text"].multi_vec_emb
    mask = golden["text.attention_mask"].bool()
    assert torch.all(multi[~mask] == 0)
    assert torch.allclose(multi[mask].norm(dim=-1), torch.ones(int(mask.sum())), atol=1e-6)


def test_tasks_change_outputs_as_the_reference(outputs, golden_json):
    checks = golden_json["checks"]
    single = {t: o["text"].single_vec_emb for t, o in outputs.items()}
    for task in TASKS:
        expected = checks["max_abs_diff_single_vs_no_adapter_per_task"][task]
        assert abs(maxdiff(single[task], single["no_adapter"]) - expected) < ATOL
    assert abs(maxdiff(single["retrieval"], single["text-matching"])
               - checks["max_abs_diff_single_retrieval_vs_text_matching"]) < ATOL
    assert abs(maxdiff(single["retrieval"], single["code"])
               - checks["max_abs_diff_single_retrieval_vs_code"]) < ATOL
    for task in TASKS:
        text, image = outputs[task]["text"], outputs[task]["image"]
        scalars = golden_json["tasks"][task]
        a, b, img = text.single_vec_emb[0], text.single_vec_emb[1], image.single_vec_emb[0]
        assert abs(float(a @ b) - scalars["cos_textA_textB"]) < ATOL
        assert abs(float(a @ img) - scalars["cos_textA_image"]) < ATOL
        query = text.multi_vec_emb[0, :8]  # text A's valid tokens
        maxsim_b = (query @ text.multi_vec_emb[1].T).max(-1).values.sum()
        maxsim_img = (query @ image.multi_vec_emb[0].T).max(-1).values.sum()
        assert abs(float(maxsim_b) - scalars["maxsim_textA_vs_textB"]) < 1e-4
        assert abs(float(maxsim_img) - scalars["maxsim_textA_vs_image"]) < 1e-4


def test_task_selection_is_per_call(tiny, golden, outputs):
    ids, mask = golden["text.input_ids"], golden["text.attention_mask"]
    with torch.inference_mode():
        for task in ("code", None, "retrieval", "code"):
            again = tiny(ids, mask, task=task).single_vec_emb
            assert torch.equal(again, outputs[task or "no_adapter"]["text"].single_vec_emb)
    with pytest.raises(ValueError, match="unknown task adapter"):
        tiny(ids, mask, task="retrieval.query")


# --- the Embedder, end to end from a checkpoint directory --------------------------------------

PLACEHOLDER_TEXT_A = "w111 w222 w333 w444 w555 w66"
PLACEHOLDER_TEXT_B = "w17 w71 w117 w171 w217 w271 w317 w371 w417 w471 w517"


def write_placeholder_tokenizer(directory: Path, golden_json: dict) -> None:
    """A word-level tokenizer giving the fixtures' placeholder ids ("Query" -> 301, ...)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    specials = golden_json["tiny_special_token_ids"]
    vocab = {"[UNK]": 999, **specials}
    vocab.update({k.replace("\\n", "\n"): v
                  for k, v in golden_json["placeholder_token_ids"].items()})
    for word in (PLACEHOLDER_TEXT_A + " " + PLACEHOLDER_TEXT_B).split():
        vocab[" " + word] = int(word[1:])
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r" ?\w+|[^\w\s]|\n"), "isolated")
    tokenizer.add_special_tokens(list(specials))
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<|endoftext|>",
        "model_max_length": 32768,
    }))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, golden_json) -> Path:
    """The tiny model laid out as a released checkpoint directory."""
    directory = tmp_path_factory.mktemp("jina-v4")
    base, adapters = split_weights()
    (directory / "config.json").write_text((V4 / "tiny_config.json").read_text())
    save_file(base, directory / "model.safetensors")
    (directory / "adapters").mkdir()
    save_file(adapters, directory / "adapters" / "adapter_model.safetensors")
    (directory / "adapters" / "adapter_config.json").write_text(
        (V4 / "tiny_adapter_config.json").read_text())
    (directory / "preprocessor_config.json").write_text(json.dumps(
        {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "merge_size": 2}))
    write_placeholder_tokenizer(directory, golden_json)
    return directory


@pytest.fixture(scope="module")
def embedder(checkpoint) -> JinaEmbeddingsV4:
    return JinaEmbeddingsV4.from_pretrained(checkpoint, name="v4-tiny")


def image() -> Image.Image:
    return Image.open(V4 / "image.png")


def test_capabilities(embedder):
    caps = embedder.capabilities
    assert isinstance(embedder, Embedder)
    assert (caps.kind, caps.family, caps.modalities) == (
        "embedding", "jina-embeddings-v4", ("text", "image"))
    assert caps.tasks == ("retrieval.query", "retrieval.passage", "code.query", "code.passage",
                          "text-matching")
    assert (caps.dim, caps.min_dim, caps.matryoshka_dims) == (128, 8, (8, 16, 32, 64, 128))
    assert (caps.multivector, caps.multivector_dim, caps.max_tokens) == (True, 32, 4096)


@pytest.mark.parametrize(("api_task", "adapter", "row", "text"), [
    ("retrieval.query", "retrieval", 0, PLACEHOLDER_TEXT_A),
    ("retrieval.passage", "retrieval", 1, PLACEHOLDER_TEXT_B),
    ("code.query", "code", 0, PLACEHOLDER_TEXT_A),
    ("code.passage", "code", 1, PLACEHOLDER_TEXT_B),
    ("text-matching", "text-matching", 0, PLACEHOLDER_TEXT_A),  # always "Query: "
])
def test_encode_matches_golden(embedder, golden, api_task, adapter, row, text):
    # one mixed text + image batch per call
    single = embedder.encode([text, image()], task=api_task)
    assert single.shape == (2, 128)
    assert maxdiff(single[0], golden[f"{adapter}.text.single"][row]) < ATOL
    assert maxdiff(single[1], golden[f"{adapter}.image.single"][0]) < ATOL
    trunc = embedder.encode([text, image()], task=api_task,
                            truncate_dim=32)
    assert maxdiff(trunc[0], golden[f"{adapter}.text.single_trunc32"][row]) < ATOL
    assert maxdiff(trunc[1], golden[f"{adapter}.image.single_trunc32"][0]) < ATOL
    multi = embedder.encode([text, image()], task=api_task, multivector=True)
    n_text = int(golden["text.attention_mask"][row].sum())
    assert [m.shape for m in multi] == [(n_text, 32), (35, 32)]
    assert maxdiff(multi[0], golden[f"{adapter}.text.multi"][row, :n_text]) < ATOL
    assert maxdiff(multi[1], golden[f"{adapter}.image.multi"][0]) < ATOL


def test_prepare_builds_the_reference_token_ids(embedder, golden, golden_json):
    ids = golden_json["token_ids"]
    jobs = embedder.prepare([PLACEHOLDER_TEXT_A, image()], task="retrieval.query")
    assert jobs[0].ids == ids["textA_query"]
    assert jobs[1].ids == ids["image_prompt"] and jobs[1].n_tokens == 35
    assert maxdiff(jobs[1].pixel_values, golden["image.pixel_values"]) < 1e-6
    passage = embedder.prepare([PLACEHOLDER_TEXT_B], task="retrieval.passage")
    assert passage[0].ids == ids["textB_passage"]
    vectors = embedder.embed_jobs(jobs)
    assert maxdiff(vectors[0], golden["retrieval.text.single"][0]) < ATOL


def test_invalid_requests(embedder):
    with pytest.raises(InvalidInput, match="unknown task"):
        embedder.encode(["x"], task="retrieval")
    with pytest.raises(InvalidInput, match="dimensions must be between 8 and 128"):
        embedder.encode(["x"], task="retrieval.query", truncate_dim=4)
    with pytest.raises(InvalidInput, match="late chunking"):
        embedder.prepare(["x"], late_chunking=True)
    assert embedder.encode(["w111"]).shape == (1, 128)  # no task: the default (text-matching)


def test_served_over_v1_embeddings(checkpoint, embedder):
    """Tasks, images, Matryoshka dimensions and multi-vectors through the HTTP route."""
    import httpx

    image = data_uri(V4 / "image.png")
    with serve_checkpoint("v4-tiny", checkpoint) as url:
        def embed(**body):
            return httpx.post(f"{url}/v1/embeddings", json={"model": "v4-tiny", **body},
                              timeout=120)

        for task in embedder.capabilities.tasks:
            response = embed(input=[PLACEHOLDER_TEXT_A, {"image": image}], task=task)
            assert response.status_code == 200, response.text
            got = np.array([d["embedding"] for d in response.json()["data"]])
            want = embedder.encode([PLACEHOLDER_TEXT_A, load_image(image)], task=task)
            np.testing.assert_allclose(got, want, atol=1e-5)
        short = embed(input=PLACEHOLDER_TEXT_B, task="retrieval.query", dimensions=16)
        assert len(short.json()["data"][0]["embedding"]) == 16
        multi = embed(input=[PLACEHOLDER_TEXT_B, image], task="retrieval.passage",
                      return_multivector=True)
        assert multi.status_code == 200, multi.text
        rows = [np.array(d["embeddings"]) for d in multi.json()["data"]]
        assert all(r.ndim == 2 and r.shape[1] == 32 for r in rows)
        np.testing.assert_allclose(np.linalg.norm(rows[0], axis=1), 1.0, atol=1e-5)
        assert embed(input="x", task="separation").status_code == 422
        assert embed(input="x", task="retrieval.query", dimensions=4).status_code == 422


def test_truncate_dim_takes_what_http_dimensions_takes(checkpoint, embedder):
    """Any `dimensions` from min_dim to dim, Matryoshka point or not, in Python and HTTP."""
    import httpx

    inputs = [PLACEHOLDER_TEXT_A, image()]
    full = embedder.encode(inputs, task="retrieval.query")
    vectors = embedder.encode(inputs, task="retrieval.query", truncate_dim=100)
    assert_truncated(vectors, full, 100)
    with serve_checkpoint("v4-tiny", checkpoint) as url:
        response = httpx.post(f"{url}/v1/embeddings", timeout=120, json={
            "model": "v4-tiny", "task": "retrieval.query", "dimensions": 100,
            "input": [PLACEHOLDER_TEXT_A, {"image": data_uri(V4 / "image.png")}]})
    assert response.status_code == 200, response.text
    got = np.array([d["embedding"] for d in response.json()["data"]])
    np.testing.assert_allclose(got, vectors, atol=1e-5)


def test_server_image_limits_reach_the_model(checkpoint, embedder):
    """An image the default limits accept is refused (413, naming it) by a server whose
    `image_limits` cap the pixels below its size."""
    import httpx

    image = data_uri(V4 / "image.png")
    assert embedder.encode([load_image(image)]).shape == (1, 128)  # default limits: accepted
    width, height = Image.open(V4 / "image.png").size
    small = ImageLimits(max_pixels=width * height - 1)
    with serve_checkpoint("v4-tiny", checkpoint, image_limits=small) as url:
        response = httpx.post(f"{url}/v1/embeddings", timeout=120, json={
            "model": "v4-tiny", "input": ["w111", {"image": image}]})
    assert response.status_code == 413, response.text
    message = response.json()["error"]["message"]
    assert message.startswith("input[1]: ") and "pixel limit" in message


def test_multivector_collection_rescores_with_maxsim(embedder, tmp_path):
    """The retrieval layer with a multi-vector model: prefetch, full rescore, then MaxSim."""
    from polyseek.retrieval import index_paths, open_store
    from polyseek.retrieval.search import search

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text(PLACEHOLDER_TEXT_A)
    (corpus / "b.txt").write_text(PLACEHOLDER_TEXT_B)
    (corpus / "picture.png").write_bytes((V4 / "image.png").read_bytes())
    rows: list[int] = []  # sequences per forward pass
    hook = embedder.model.register_forward_hook(lambda _, args, out: rows.append(len(args[0])))
    try:
        with open_store(tmp_path / "store") as store:
            summary = index_paths([corpus], "mixed", embedder, store=store)
            assert (summary.indexed, summary.points, summary.errors) == (3, 3, [])
            assert sum(rows) == 3  # each file encoded once: pooled and token vectors together
            spec = store.spec("mixed")
            assert (spec.short_dim, spec.multivector_dim) == (64, 32)
            rows.clear()
            result = search(image(), "mixed", embedder, store=store, top_k=3, explain=True)
            assert rows == [1]  # the query too
    finally:
        hook.remove()
    assert [stage.vector for stage in result.stages] == ["short", "full", "multi"]
    assert result.hits[0].path.endswith("picture.png")


def test_index_and_search_over_http_encode_each_text_once(checkpoint, tmp_path):
    """/v1/index and /v1/search with a multi-vector model: one sequence per document and per
    query in the engine's forward passes (as /metrics counts them), MaxSim stage included."""
    import httpx

    from polyseek.api.app import ServerSettings, create_app
    from polyseek.runtime.registry import ModelSpec

    from support import metric, serve_in_thread

    settings = ServerSettings(models=[ModelSpec("v4-tiny", str(checkpoint))],
                              data_dir=str(tmp_path / "store"))
    with serve_in_thread(create_app(settings)) as url:
        def sequences() -> float:
            return metric(url, "polyseek_batch_size_sum", "v4-tiny")

        documents = [{"id": "a", "text": PLACEHOLDER_TEXT_A},
                     {"id": "b", "text": PLACEHOLDER_TEXT_B}]
        indexed = httpx.post(f"{url}/v1/index", json={"collection": "v4", "model": "v4-tiny",
                                                      "documents": documents}, timeout=120)
        assert indexed.status_code == 200, indexed.text
        assert (indexed.json()["points"], sequences()) == (2, 2)
        found = httpx.post(f"{url}/v1/search", json={"collection": "v4", "explain": True,
                                                     "mode": "hybrid",
                                                     "query": PLACEHOLDER_TEXT_B}, timeout=120)
        assert found.status_code == 200, found.text
        assert sequences() == 3
    body = found.json()
    assert [stage["vector"] for stage in body["stages"]] == ["short", "full", "multi", "bm25",
                                                             "rrf"]
    assert body["hits"][0]["path"] == "b"
