"""jina-vlm image-token budget and KV-cache speed-up.

1. For images of growing size (small photo -> 4K scan): crops (thumbnail included), ViT patch
   tokens, image tokens the decoder sees after 2x2 attention pooling (`<im_patch>` slots), the
   whole image block with its layout tokens, and the reduction ViT tokens / decoder tokens.
2. The tiny random jina-vlm of the parity fixtures: prefill time, and decode time per token
   with and without the KV cache (ratio), for a text prompt and for an image prompt.

    .venv/bin/python benchmarks/vlm_tokens.py [--new-tokens 32]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file

from polyseek.models.jina_vlm import JinaVLMConfig, JinaVLMForConditionalGeneration
from polyseek.models.jina_vlm.model import MultimodalInputs
from polyseek.models.jina_vlm.processor import (
    JinaVLMProcessor,
    JinaVLMProcessorConfig,
    image_token_count,
)
from polyseek.models.sampling import SamplingParams

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "jina-vlm"
SIZES = {  # name: (width, height)
    "thumbnail 300x300": (300, 300),
    "photo 640x480": (640, 480),
    "panorama 1600x400": (1600, 400),
    "slide 1920x1080": (1920, 1080),
    "A4 scan 2480x3508": (2480, 3508),
    "4K 3840x2160": (3840, 2160),
}


def token_table() -> None:
    config = JinaVLMProcessorConfig()
    patches = config.patches_per_crop[0] * config.patches_per_crop[1]
    pooled = config.pooled_per_crop[0] * config.pooled_per_crop[1]
    print(f"per crop: {patches} ViT tokens -> {pooled} pooled image tokens "
          f"({patches / pooled:.2f}x); tiles also drop their overlapping slots\n")
    print(f"{'image':<22}{'crops':>6}{'ViT tokens':>12}{'LLM image tokens':>18}"
          f"{'block tokens':>14}{'reduction':>11}")
    for name, (w, h) in SIZES.items():
        c = image_token_count(h, w, config)
        print(f"{name:<22}{c['crops']:>6}{c['vit_tokens']:>12}{c['image_tokens']:>18}"
              f"{c['block_tokens']:>14}{c['vit_tokens'] / c['image_tokens']:>10.2f}x")


def tiny_model() -> tuple[JinaVLMForConditionalGeneration, JinaVLMProcessor]:
    from tokenizers import Tokenizer

    config = JinaVLMConfig.from_dict(json.loads((FIXTURES / "tiny_config.json").read_text()))
    model = JinaVLMForConditionalGeneration(config).eval()
    model.load_state_dict(load_file(FIXTURES / "tiny_weights.safetensors"), strict=True)
    tokenizer = Tokenizer.from_file(str(FIXTURES / "tokenizer_tiny.json"))
    return model, JinaVLMProcessor(tokenizer, JinaVLMProcessorConfig(max_sequence_length=4096))


def time_generation(model, inputs: MultimodalInputs, new_tokens: int,
                    use_cache: bool) -> tuple[float, float]:
    """(prefill seconds, decode seconds per token after the first)."""
    params = SamplingParams(max_tokens=new_tokens)
    start = time.perf_counter()
    stamps = []
    for _ in model.stream(inputs, params, use_cache=use_cache):
        stamps.append(time.perf_counter())
    return stamps[0] - start, (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def speed_table(new_tokens: int) -> None:
    model, processor = tiny_model()
    prompt = "<|im_start|>user\n<|image|>Describe this image.<|im_end|>\n<|im_start|>assistant\n"
    cases = {
        "text prompt": processor(["<|im_start|>user\nHello jina!<|im_end|>\n"]),
        "image prompt (scene)": processor([prompt], [[Image.open(FIXTURES / "image_scene.png")]]),
    }
    print(f"\ntiny jina-vlm, {new_tokens} greedy tokens, torch threads {torch.get_num_threads()}")
    print(f"{'prompt':<22}{'tokens':>8}{'prefill ms':>12}{'decode ms/tok (cache)':>23}"
          f"{'(no cache)':>12}{'speed-up':>10}")
    for name, batch in cases.items():
        inputs = MultimodalInputs(batch["input_ids"], batch.get("images"),
                                  batch.get("image_masks"), batch.get("image_input_idx"))
        time_generation(model, inputs, 2, True)  # warm-up
        prefill, cached = time_generation(model, inputs, new_tokens, True)
        _, uncached = time_generation(model, inputs, new_tokens, False)
        print(f"{name:<22}{inputs.input_ids.shape[1]:>8}{prefill * 1e3:>12.1f}"
              f"{cached * 1e3:>23.2f}{uncached * 1e3:>12.2f}{uncached / cached:>9.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args()
    token_table()
    if FIXTURES.is_dir():
        speed_table(args.new_tokens)
    else:
        print(f"\n(speed table skipped: jina-vlm fixtures not found at {FIXTURES})")


if __name__ == "__main__":
    main()
