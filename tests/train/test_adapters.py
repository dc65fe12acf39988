"""Serving peft LoRA adapters as tasks: the same vectors as peft, per thread, no leaks."""

import shutil
import sys
import threading

import numpy as np
import pytest
import torch

from polyseek import load_model


@pytest.fixture(scope="module")
def adapted(tmp_path_factory, tiny_encoder):
    """The tiny encoder with two random peft LoRA adapters, `a` and `b`."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    directory = tmp_path_factory.mktemp("adapted")
    shutil.copytree(tiny_encoder, directory, dirs_exist_ok=True)
    references = {}
    for seed, task in enumerate(("a", "b")):
        torch.manual_seed(seed)
        model = get_peft_model(AutoModel.from_pretrained(tiny_encoder), LoraConfig(
            r=4, lora_alpha=8, target_modules=["query", "value", "dense"]))
        for name, param in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.5)
        model.save_pretrained(directory / "adapters" / task)
        references[task] = model.eval()
    return directory, references


def test_an_adapter_task_gives_peft_s_vectors(adapted):
    directory, references = adapted
    model = load_model(str(directory))
    assert model.capabilities.tasks == ("a", "b")
    text = "a compass points north"
    ids = model.tokenizer([text], return_tensors="pt")
    for task, reference in references.items():
        with torch.no_grad():
            expected = reference(**ids).last_hidden_state[0].mean(0).numpy()
        got = model.encode([text], task=task, normalize=False)[0]
        np.testing.assert_allclose(got, expected, atol=1e-4)
    plain = model.encode([text], normalize=False)[0]
    assert not np.allclose(plain, references["a"](**ids).last_hidden_state[0].mean(0)
                           .detach().numpy(), atol=1e-3)


def test_concurrent_passes_of_different_tasks_do_not_mix(adapted):
    directory, _ = adapted
    model = load_model(str(directory))
    texts = [f"sentence number {i} about ships" for i in range(8)]
    expected = {t: model.encode(texts, task=t) for t in ("a", "b", None)}
    results, errors = {}, []
    sys.setswitchinterval(1e-6)

    def work(task):
        try:
            for _ in range(10):
                np.testing.assert_allclose(model.encode(texts, task=task), expected[task],
                                           atol=1e-5)
            results[task] = True
        except AssertionError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in ("a", "b", None)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sys.setswitchinterval(0.005)
    assert not errors and len(results) == 3
