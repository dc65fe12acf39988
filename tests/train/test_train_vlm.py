"""`polyseek train vlm` on the tiny random jina-vlm: solid-colour images named by colour."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from polyseek import load_model
from polyseek.models.base import ChatMessage, Generator
from polyseek.models.sampling import SamplingParams
from polyseek.train.vlm import VLMTrainConfig, text_only_schedule, train
from polyseek.train.vlm_data import IGNORE, ChatEncoder, DataError, collate, load_chats

from support import FIXTURES, cli, data_uri, serve_checkpoint, write_tiny_jina_vlm

pytestmark = pytest.mark.skipif(not (FIXTURES / "jina-vlm").is_dir(),
                                reason="jina-vlm fixtures missing")
COLOURS = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 230),
           "yellow": (240, 220, 20)}
CONNECTOR = "model.vision_model.vl_connector."
VISION = "model.vision_model."
STAGE1_STEPS = 8


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def part(state: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    """The connector's, the rest of the vision tower's, or the language model's tensors."""
    def kind_of(name: str) -> str:
        if name.startswith(CONNECTOR):
            return "connector"
        return "vision" if name.startswith(VISION) else "language"
    return {k: v for k, v in state.items() if kind_of(k) == kind}


def identical(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    """The tiny model, colour PNGs (in a subfolder, named relatively), captions, chats and
    text-only chats."""
    root = tmp_path_factory.mktemp("vlm-task")
    (root / "base").mkdir()
    write_tiny_jina_vlm(root / "base")
    (root / "images").mkdir()
    captions, chats = [], []
    for name, rgb in COLOURS.items():
        Image.new("RGB", (32, 32), rgb).save(root / "images" / f"{name}.png")
        captions.append({"image": f"images/{name}.png", "caption": f"A {name} square."})
        chats.append({"image": f"images/{name}.png", "prompt": "What colour is it?",
                      "response": f"{name.capitalize()}."})
    chats.append({"image": str(root / "images" / "red.png"), "messages": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Colour?"}, {"role": "assistant", "content": "Red."},
        {"role": "user", "content": "Sure?"}, {"role": "assistant", "content": "Yes, red."}]})
    write_jsonl(root / "captions.jsonl", captions)
    write_jsonl(root / "chats.jsonl", chats)
    write_jsonl(root / "text.jsonl", [
        {"prompt": "Say hello.", "response": "Hello!"},
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
    ])
    return root


def stage1_config(task: Path, output: Path, steps: int = STAGE1_STEPS) -> VLMTrainConfig:
    return VLMTrainConfig(model=str(task / "base"), data=task / "captions.jsonl", output=output,
                          stage=1, steps=steps, lr=3e-3, batch_size=2, seed=7, save_every=4)


@pytest.fixture(scope="module")
def stage1(task):
    return train(stage1_config(task, task / "stage1"), log=lambda _: None)


@pytest.fixture(scope="module")
def stage2(task, stage1):
    config = VLMTrainConfig(model=str(task / "stage1"), data=task / "chats.jsonl",
                            output=task / "stage2", stage=2, steps=10, lr=3e-3, batch_size=2,
                            seed=7, text_data=task / "text.jsonl", text_only_share=0.3)
    return train(config, log=lambda _: None)


def test_stage1_trains_only_the_connector_and_the_loss_falls(task, stage1):
    before, after = weights(task / "base"), weights(task / "stage1")
    assert identical(part(before, "vision"), part(after, "vision"))
    assert identical(part(before, "language"), part(after, "language"))
    connector = part(before, "connector")
    changed = [k for k, v in part(after, "connector").items() if not torch.equal(v, connector[k])]
    assert len(changed) == len(connector)  # every connector tensor learned
    assert stage1.step == STAGE1_STEPS and not any(stage1.text_only)
    losses = stage1.losses
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.3, losses


def test_stage2_trains_connector_and_language_model_with_text_only_share(task, stage1, stage2):
    before, after = weights(task / "stage1"), weights(task / "stage2")
    assert identical(part(before, "vision"), part(after, "vision"))
    for kind in ("connector", "language"):
        assert not identical(part(before, kind), part(after, kind)), kind
    assert stage2.text_only_batches == 3 == sum(text_only_schedule(10, 0.3))
    assert stage2.text_only == [False, False, False, True, False, False, True, False, False, True]
    image_losses = [loss for loss, text in zip(stage2.losses, stage2.text_only, strict=True)
                    if not text]
    assert image_losses[-1] < image_losses[0] / 2, image_losses
    state = json.loads((task / "stage2" / "trainer_state.json").read_text())
    assert state["step"] == 10 and state["config"]["text_only_share"] == 0.3


def test_the_trained_checkpoint_loads_generates_and_serves(task, stage2):
    output = task / "stage2"
    model = load_model(str(output), name="trained")
    assert isinstance(model, Generator) and model.capabilities.family == "jina-vlm"
    trained = weights(output)
    for name, tensor in model.model.state_dict().items():
        assert torch.equal(tensor, trained[name]), name
    image = Image.open(task / "images" / "red.png")
    deltas = list(model.generate([ChatMessage("user", [image, "What colour is it?"])],
                                 SamplingParams(max_tokens=6)))
    assert deltas[-1].completion_tokens >= 1
    with serve_checkpoint("trained-vlm", output) as url:
        content = [{"type": "image_url", "image_url": {"url": data_uri(task / "images/red.png")}},
                   {"type": "text", "text": "What colour is it?"}]
        reply = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
            "model": "trained-vlm", "max_tokens": 6, "temperature": 0,
            "messages": [{"role": "user", "content": content}]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == "".join(d.text for d in deltas)


def test_training_inputs_are_what_generation_sees(task):
    """The multi-turn chat: the loss covers both answers only, and the prompt of the last
    answer is token for token (image block included) what generation feeds the model."""
    vlm = load_model(str(task / "base"))
    example = load_chats(task / "chats.jsonl")[-1]
    inputs, labels = collate(vlm.processor, [ChatEncoder(vlm.tokenizer, 256)(example)])
    targets = labels[labels != IGNORE]
    assert vlm.tokenizer.decode(targets) == "Red.<|im_end|>Yes, red.<|im_end|>"
    image = Image.open(task / "images" / "red.png")
    turns = [(t["role"], [t["content"]]) for t in example.messages[:4]]
    turns[1] = ("user", [image, *turns[1][1]])
    prompt = vlm.prepare([ChatMessage(role, content) for role, content in turns])
    n = prompt.input_ids.shape[1]
    assert torch.equal(inputs.input_ids[:, :n], prompt.input_ids)
    for key in ("images", "image_masks", "image_input_idx"):
        assert torch.equal(getattr(inputs, key), getattr(prompt, key)), key
    assert labels[0, n - 1] == inputs.input_ids[0, n]  # the last prompt token predicts "Y"
    assert (labels[0, : n - 1] != IGNORE).sum() == 5  # "Red." and its <|im_end|>


def test_resume_continues_from_the_saved_step(task, stage1):
    output = task / "resumed"
    first = train(stage1_config(task, output, steps=4), log=lambda _: None)
    assert [p.name for p in output.glob("checkpoint-*")] == ["checkpoint-4"]
    (output / ".checkpoint-6.partial").mkdir()  # an interrupted save is never read
    lines: list[str] = []
    second = train(_resume(stage1_config(task, output)), log=lines.append)
    assert second.start_step == 4 and second.step == STAGE1_STEPS
    assert "resuming at step 4" in lines[0]
    assert first.losses + second.losses == pytest.approx(stage1.losses, abs=1e-6)
    assert identical(weights(output), weights(task / "stage1"))


def _resume(config: VLMTrainConfig) -> VLMTrainConfig:
    config.resume = True
    return config


def test_bad_settings_are_refused(task, tmp_path):
    with pytest.raises(ValueError, match="not empty; pass --resume"):
        train(stage1_config(task, task / "stage1"), log=lambda _: None)
    with pytest.raises(ValueError, match="nothing to resume"):
        train(_resume(stage1_config(task, tmp_path / "none")), log=lambda _: None)
    no_text = VLMTrainConfig(model=str(task / "stage1"), data=task / "chats.jsonl",
                             output=tmp_path / "x", stage=2)
    with pytest.raises(DataError, match="needs text-only chats"):
        train(no_text, log=lambda _: None)


def test_cli_trains_end_to_end(task, tmp_path):
    output = tmp_path / "cli-out"
    done = cli("train", "vlm", "--model", str(task / "base"), "--data",
               str(task / "captions.jsonl"), "--output", str(output), "--stage", "1",
               "--steps", "2", "--batch-size", "2", "--lr", "1e-3", "--seed", "3",
               "--log-every", "1")
    assert done.returncode == 0, done.stderr
    assert "step 1/2  loss" in done.stderr and "step 2/2  loss" in done.stderr
    assert f"{output}: step 2" in done.stdout
    assert (output / "config.json").is_file() and (output / "checkpoint-2").is_dir()


@pytest.mark.parametrize("problem", ["missing image", "malformed line", "unknown stage"])
def test_cli_bad_input_is_a_clear_error(task, tmp_path, problem):
    data, stage, message = tmp_path / "data.jsonl", "1", ""
    if problem == "missing image":
        write_jsonl(data, [{"image": "nowhere.png", "caption": "x"}])
        message = f"{data}:1: image file not found: {tmp_path / 'nowhere.png'}"
    elif problem == "malformed line":
        data.write_text(json.dumps({"image": str(task / "images/red.png"), "caption": "x"})
                        + "\n{not json\n")
        message = f"{data}:2: not valid JSON"
    else:
        write_jsonl(data, [{"image": str(task / "images/red.png"), "caption": "x"}])
        stage, message = "3", "3 is not a stage"
    done = cli("train", "vlm", "--model", str(task / "base"), "--data", str(data),
               "--output", str(tmp_path / "out"), "--stage", stage, "--steps", "1")
    assert done.returncode == 2
    assert message in " ".join(done.stderr.split()), done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
