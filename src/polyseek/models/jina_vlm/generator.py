"""jina-vlm as a chat `Generator`: chat template, processor, generation, streamed text.

Loads a local directory holding the released files: `config.json`, safetensors weights
(single file or shards), tokenizer files with the chat template, and optionally
`preprocessor_config.json`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoTokenizer

from polyseek.errors import InvalidInput
from polyseek.models.base import ChatMessage, TextDelta
from polyseek.models.families import family_named
from polyseek.models.jina_vlm.model import JinaVLMForConditionalGeneration, MultimodalInputs
from polyseek.models.jina_vlm.processor import JinaVLMProcessor, JinaVLMProcessorConfig
from polyseek.models.sampling import SamplingParams
from polyseek.models.streaming import stream_text

FAMILY = family_named("jina-vlm")
IMAGE_PLACEHOLDER = "<|image|>"
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
# ChatML, used when the tokenizer files carry no chat template.
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class JinaVLMGenerator:
    def __init__(self, model: JinaVLMForConditionalGeneration, tokenizer,
                 processor: JinaVLMProcessor, name: str = "jina-vlm"):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.processor = processor
        self.name = name
        vocab = tokenizer.get_vocab()
        self.stop_token_ids = tuple(vocab[t] for t in STOP_TOKENS if t in vocab)
        self.capabilities = FAMILY.capabilities(
            max_tokens=model.config.text.max_sequence_length,
            extras={"max_images": str(processor.config.max_images_per_prompt)},
        )

    @classmethod
    def from_pretrained(cls, directory: str | Path, name: str = "",
                        dtype: torch.dtype = torch.float32) -> JinaVLMGenerator:
        directory = Path(directory)
        model = FAMILY.load_module(directory, dtype)
        tokenizer = AutoTokenizer.from_pretrained(directory)
        processor_file = directory / "preprocessor_config.json"
        processor_config = (JinaVLMProcessorConfig.from_dict(json.loads(processor_file.read_text()))
                            if processor_file.exists() else JinaVLMProcessorConfig())
        return cls(model, tokenizer, JinaVLMProcessor(tokenizer, processor_config),
                   name or directory.name)

    def render(self, messages: Sequence[ChatMessage]) -> tuple[str, list[Image.Image]]:
        """The prompt text (images as `<|image|>` placeholders) and the images in order."""
        turns, images = [], []
        for message in messages:
            text = ""
            for part in message.content:
                if isinstance(part, str):
                    text += part
                else:
                    text += IMAGE_PLACEHOLDER
                    images.append(part)
            turns.append({"role": message.role, "content": text})
        template = self.tokenizer.chat_template or CHATML
        prompt = self.tokenizer.apply_chat_template(
            turns, chat_template=template, tokenize=False, add_generation_prompt=True
        )
        return prompt, images

    def prepare(self, messages: Sequence[ChatMessage]) -> MultimodalInputs:
        prompt, images = self.render(messages)
        batch = self.processor([prompt], [images])
        inputs = MultimodalInputs(batch["input_ids"], batch.get("images"),
                                  batch.get("image_masks"), batch.get("image_input_idx"))
        if inputs.input_ids.shape[1] >= self.capabilities.max_tokens:
            raise InvalidInput(f"the prompt has {inputs.input_ids.shape[1]} tokens, over the "
                               f"{self.capabilities.max_tokens}-token context", ("messages",))
        return inputs

    def generate(self, messages: Sequence[ChatMessage],
                 sampling: SamplingParams) -> Iterator[TextDelta]:
        """Stream text deltas; stops at a stop token, a stop string or `max_tokens`."""
        inputs = self.prepare(messages)
        n_prompt = int(inputs.attention_mask.sum())
        params = replace(
            sampling,
            max_tokens=min(sampling.max_tokens, self.capabilities.max_tokens - n_prompt),
            stop_token_ids=tuple(sampling.stop_token_ids) + self.stop_token_ids,
        )
        tokens = (int(t[0]) for t, _ in self.model.stream(inputs, params))
        decode = partial(self.tokenizer.decode, skip_special_tokens=True)
        yield from stream_text(tokens, decode, params.max_tokens, params.stop_token_ids,
                               sampling.stop, n_prompt)
