"""jina-vlm loaded from a checkpoint directory and used as a chat Generator (tiny weights)."""

from __future__ import annotations

import json
import lzma

import pytest
import torch
from PIL import Image
from safetensors.torch import load, load_file, save_file

from polyseek import load_model
from polyseek.errors import InvalidInput
from polyseek.models.base import ChatMessage, Generator
from polyseek.models.sampling import SamplingParams

from support import FIXTURES, write_tiny_jina_vlm

VLM = FIXTURES / "jina-vlm"
pytestmark = pytest.mark.skipif(not VLM.is_dir(), reason=f"jina-vlm fixtures missing at {VLM}")
PROMPT = "Describe this image."


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    directory = write_tiny_jina_vlm(tmp_path_factory.mktemp("jina-vlm"))
    return load_model(str(directory), name="tiny-vlm")


def fixture(name: str) -> dict[str, torch.Tensor]:
    return load(lzma.open(VLM / f"forward_{name}.safetensors.xz").read())


def test_loads_as_a_generator_with_declared_capabilities(vlm):
    assert isinstance(vlm, Generator)
    caps = vlm.capabilities
    assert (caps.kind, caps.family, caps.modalities) == ("chat", "jina-vlm", ("text", "image"))


def test_chat_messages_become_the_reference_model_inputs(vlm):
    image = Image.open(VLM / "image_small.png")
    inputs = vlm.prepare([ChatMessage("user", [image, PROMPT])])
    reference = fixture("small")
    for key in ("input_ids", "image_input_idx", "image_masks"):
        assert torch.equal(getattr(inputs, key), reference[key]), key
    torch.testing.assert_close(inputs.images, reference["images"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name,content", [
    ("small", [Image.open(VLM / "image_small.png"), PROMPT]),
    ("textonly", ["Hello jina!"]),
])
def test_generation_streams_the_reference_text(vlm, name, content):
    deltas = list(vlm.generate([ChatMessage("user", content)], SamplingParams(max_tokens=5)))
    want = vlm.tokenizer.decode(fixture(name)["generated_ids"].tolist(), skip_special_tokens=True)
    assert "".join(d.text for d in deltas) == want
    last = deltas[-1]
    assert last.finish_reason == "length" and last.completion_tokens == 5
    assert last.prompt_tokens == fixture(name)["input_ids"].shape[1]


def test_stop_strings_and_stop_tokens(vlm):
    messages = [ChatMessage("user", ["Hello jina!"])]
    first, second = fixture("textonly")["generated_ids"][:2].tolist()
    stopped = list(vlm.generate(messages, SamplingParams(max_tokens=5, stop_token_ids=(second,))))
    assert stopped[-1].finish_reason == "stop" and stopped[-1].completion_tokens == 1
    full = "".join(d.text for d in vlm.generate(messages, SamplingParams(max_tokens=5)))
    cut = list(vlm.generate(messages, SamplingParams(max_tokens=5, stop=(full[1:],))))
    assert "".join(d.text for d in cut) == full[:1] and cut[-1].finish_reason == "stop"


def test_bad_images_are_clear_errors(vlm):
    with pytest.raises(InvalidInput, match="at least 14 pixels"):
        list(vlm.generate([ChatMessage("user", [Image.new("RGB", (1, 1)), "x"])],
                          SamplingParams(max_tokens=1)))
    image = Image.open(VLM / "image_small.png")
    with pytest.raises(InvalidInput, match="at most 8 images"):
        list(vlm.generate([ChatMessage("user", [image] * 9 + ["x"])],
                          SamplingParams(max_tokens=1)))


def test_strict_loading_names_what_does_not_match(tmp_path):
    directory = write_tiny_jina_vlm(tmp_path)
    state = load_file(directory / "model.safetensors")
    state["model.vision_model.extra"] = torch.zeros(1)
    del state["lm_head.weight"]
    save_file(state, directory / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing \['lm_head.weight'\].*unexpected"):
        load_model(str(directory))


def test_sharded_checkpoint_loads(tmp_path):
    directory = write_tiny_jina_vlm(tmp_path)
    state = load_file(directory / "model.safetensors")
    names = sorted(state)
    halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, keys in halves.items():
        save_file({k: state[k] for k in keys}, directory / shard)
    (directory / "model.safetensors").unlink()
    weight_map = {k: shard for shard, keys in halves.items() for k in keys}
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    model = load_model(str(directory)).model
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[name]), name
