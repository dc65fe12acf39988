"""jina-vlm: vision tower + connector + decoder, with the published checkpoint's module names.

`JinaVLMForConditionalGeneration` mirrors the released state dict: `model.vision_model.*`
(ViT, `vl_connector`), `model.language_model.*` (decoder) and `lm_head`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from polyseek.models.jina_vlm.config import JinaVLMConfig
from polyseek.models.jina_vlm.decoder import KVCache, LanguageModel
from polyseek.models.jina_vlm.vision import VisionModel
from polyseek.models.sampling import SamplingParams, next_tokens


@dataclass
class MultimodalInputs:
    """Processor output: ids padded with -1 (left), crops, per-patch masks, pooled-slot map."""

    input_ids: Tensor  # [B, L] int64
    images: Tensor | None = None  # [B, N, 729, 588] float32
    image_masks: Tensor | None = None  # [B, N, 729]
    image_input_idx: Tensor | None = None  # [B, N, 196], negative = skip

    @property
    def attention_mask(self) -> Tensor:
        return self.input_ids != -1


@dataclass
class GenerationOutput:
    token_ids: Tensor  # [B, n]
    step_logits: Tensor  # [B, n, V]


class JinaVLMModel(nn.Module):
    def __init__(self, config: JinaVLMConfig):
        super().__init__()
        self.vision_model = VisionModel(config.vision)
        self.language_model = LanguageModel(config.text)


class JinaVLMForConditionalGeneration(nn.Module):
    def __init__(self, config: JinaVLMConfig):
        super().__init__()
        self.config = config
        self.model = JinaVLMModel(config)
        text = config.text
        self.lm_head = nn.Linear(text.hidden_size, text.embedding_size, bias=False)
        if text.tie_word_embeddings:
            self.lm_head.weight = self.model.language_model.embedding.embedding

    def embed_inputs(self, inputs: MultimodalInputs) -> Tensor:
        """Token embeddings, image features added at their `<im_patch>` positions: [B, L, D]."""
        embeds = self.model.language_model.embedding(inputs.input_ids.clamp(min=0))
        if inputs.images is None:
            return embeds
        features = self.model.vision_model(inputs.images, inputs.image_masks)  # [B, N, 196, D]
        b, d = features.shape[0], features.shape[-1]
        features, slots = features.reshape(b, -1, d), inputs.image_input_idx.reshape(b, -1)
        for row in range(b):
            valid = slots[row] >= 0
            embeds[row].index_add_(0, slots[row][valid], features[row][valid].to(embeds.dtype))
        return embeds

    def hidden_states(self, embeds: Tensor, key_mask: Tensor,
                      cache: KVCache | None = None) -> Tensor:
        """Decoder output after ln_f for new embeddings [B, T, D] given the key mask so far."""
        seen = key_mask.long().cumsum(-1) - 1  # positions count only real tokens
        positions = seen[:, -embeds.shape[1]:].clamp(min=0)
        return self.model.language_model(embeds, key_mask, positions, cache)

    def forward(self, inputs: MultimodalInputs) -> Tensor:
        """Logits over the base vocabulary: [B, L, V]."""
        hidden = self.hidden_states(self.embed_inputs(inputs), inputs.attention_mask)
        return self.lm_head(hidden)

    @torch.inference_mode()
    def stream(self, inputs: MultimodalInputs, params: SamplingParams,
               use_cache: bool = True) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield (next token ids [B], their logits [B, V]) per step until every row stops.

        With the cache, the prompt (and its images) is encoded once and each step feeds one
        token; without it, each step re-runs the decoder over the whole sequence.
        """
        generator = params.generator()
        embeds = self.embed_inputs(inputs)
        key_mask = inputs.attention_mask
        cache = KVCache() if use_cache else None
        new = embeds
        done = torch.zeros(embeds.shape[0], dtype=torch.bool)
        for _ in range(params.max_tokens):
            hidden = self.hidden_states(new if use_cache else embeds, key_mask, cache)
            logits = self.lm_head(hidden[:, -1]).float()
            tokens = next_tokens(logits, params, generator)
            yield tokens, logits
            done |= torch.isin(tokens, torch.tensor(params.stop_token_ids, dtype=tokens.dtype))
            if done.all():
                return
            new = self.model.language_model.embedding(tokens[:, None])
            embeds = torch.cat([embeds, new], dim=1)
            key_mask = torch.cat([key_mask, torch.ones_like(key_mask[:, :1])], dim=1)

    def generate(self, inputs: MultimodalInputs, params: SamplingParams,
                 use_cache: bool = True) -> GenerationOutput:
        steps = list(self.stream(inputs, params, use_cache))
        return GenerationOutput(torch.stack([t for t, _ in steps], dim=1),
                                torch.stack([lg for _, lg in steps], dim=1))


def build_jina_vlm(config: dict) -> JinaVLMForConditionalGeneration:
    """The module tree for a released config.json; works on the meta device."""
    return JinaVLMForConditionalGeneration(JinaVLMConfig.from_dict(config))
