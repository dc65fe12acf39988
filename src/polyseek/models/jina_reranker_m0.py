"""jina-reranker-m0: a Qwen2-VL-2B backbone that scores (query, document) pairs.

The reference (`JinaVLForRanking`, remote code on top of transformers' Qwen2-VL) works like this:

* prompt `**Document**:\\n{doc}\\n**Query**:\\n{query}`; an image stands in the prompt as
  `<|vision_start|><|image_pad|><|vision_end|>`, the pad expanded to one token per merged 2x2
  patch block;
* rows are padded on the **left** and the score token (id 100) is appended to every row, so
  the last column is always that token;
* the backbone's `lm_head` is an identity; an MLP `Linear(H, H) -> ReLU -> Linear(H, 1)` on the
  final-norm hidden state of the last column gives one logit per row;
* `score = sigmoid(logit - 2.65)`: the pair jobs' outputs are `logit - 2.65`, so the declared
  score function is a plain sigmoid, as for every `PairScorer`.

Here the backbone is transformers' stock `Qwen2VLModel`; position ids are the reference's
M-RoPE ids (pads at 1), computed per call, so no `rope_deltas` state is carried between calls.

Checkpoint names: releases use the legacy Qwen2-VL layout (`model.*` for the text model,
`visual.*`, `score.*`); the module holds current transformers names (`model.language_model.*`,
`model.visual.*`, `score.*`, plus `lm_head.weight`, the tied alias of the embedding matrix).
`checkpoint.qwen_vl_module_key` / `to_checkpoint_key` map one to the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import AutoTokenizer, Qwen2VLConfig, Qwen2VLModel
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.modeling_qwen2_vl import (
    Qwen2VLRotaryEmbedding,
    Qwen2VLVisionRotaryEmbedding,
)

from polyseek.errors import InputTooLarge, InvalidInput, loc_label
from polyseek.models.base import EncodeJob, Input, pad_batch, score_pairs, sigmoid
from polyseek.models.families import family_named

FAMILY = family_named("jina-reranker-m0")
SCORE_TOKEN_ID = 100  # hard-coded in the reference, not in the config
LOGIT_BIAS = 2.65
MAX_LENGTH = 10240  # the reference's `compute_score(max_length=...)`, score token included
QUERY_RESERVE = 512  # documents are capped at max(max_length - 512, 512) tokens
MIN_PIXELS, MAX_PIXELS = 3136, 602112  # the processor values `compute_score` uses
PROMPT = "**Document**:\n{doc}\n**Query**:\n{query}"
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"


# --- module tree ----------------------------------------------------------------------------


class JinaRerankerM0Model(nn.Module):
    """Qwen2-VL backbone (no LM head) + MLP score head on the last position."""

    def __init__(self, config: Qwen2VLConfig):
        super().__init__()
        self.config = config
        self.model = Qwen2VLModel(config)
        # The reference replaces lm_head by an identity; tying attaches the embedding to it.
        self.lm_head = nn.Identity()
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.language_model.embed_tokens.weight
        hidden = config.text_config.hidden_size
        self.score = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def init_rotary_buffers(self) -> None:
        """Recompute the RoPE tables (non-persistent buffers) on the CPU after a meta build."""
        self.model.language_model.rotary_emb = Qwen2VLRotaryEmbedding(self.config.text_config)
        self.model.visual.rotary_pos_emb = Qwen2VLVisionRotaryEmbedding(self.config.vision_config)

    def position_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     image_grid_thw: torch.Tensor | None = None) -> torch.Tensor:
        """The reference's M-RoPE ids: [B, T] -> [3, B, T]; pad positions hold 1."""
        image_tokens = (input_ids == self.config.image_token_id).int()  # [B, T]
        positions, _ = self.model.get_rope_index(input_ids, image_tokens, image_grid_thw,
                                                 attention_mask=attention_mask)
        return positions.masked_fill(attention_mask[None] == 0, 1)

    def image_features(self, pixel_values: torch.Tensor,
                       image_grid_thw: torch.Tensor) -> torch.Tensor:
        """Merged vision-tower outputs: [patches, C*T*P*P] -> [image tokens, H]."""
        out = self.model.get_image_features(pixel_values, image_grid_thw, return_dict=True)
        return torch.cat(out.pooler_output)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      pixel_values: torch.Tensor | None = None,
                      image_grid_thw: torch.Tensor | None = None) -> torch.Tensor:
        """Final-norm hidden states [B, T, H]."""
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=self.position_ids(input_ids, attention_mask, image_grid_thw),
            pixel_values=pixel_values,
            image_grid_thw=image_grid_thw,
            use_cache=False,
        )
        return out.last_hidden_state

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                pixel_values: torch.Tensor | None = None,
                image_grid_thw: torch.Tensor | None = None) -> torch.Tensor:
        """Raw logits [B] from the last column (the score token) of left-padded rows [B, T]."""
        hidden = self.hidden_states(input_ids, attention_mask, pixel_values, image_grid_thw)
        return self.score(hidden[:, -1]).squeeze(-1)  # [B, H] -> [B]


def qwen2_vl_config(config: dict) -> Qwen2VLConfig:
    """The stock config from a released config.json (nested or flat Qwen2-VL fields)."""
    fields = {k: v for k, v in config.items() if k not in ("model_type", "auto_map")}
    return Qwen2VLConfig(**fields)


def build_reranker_m0(config: dict) -> JinaRerankerM0Model:
    """The uninitialised module tree for a released config.json (works on the meta device)."""
    return JinaRerankerM0Model(qwen2_vl_config(config))


def to_checkpoint_key(key: str) -> str:
    """Module name -> legacy checkpoint name."""
    if key.startswith("model.visual."):
        return key.removeprefix("model.")
    if key.startswith("model.language_model."):
        return "model." + key.removeprefix("model.language_model.")
    return key


def scores_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Raw logits [B] -> relevance scores [B]."""
    return torch.from_numpy(sigmoid((logits - LOGIT_BIAS).numpy()))


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextImage:
    """A document (or query) holding an image and a text; the image comes first in the prompt."""

    text: str
    image: Image.Image


@dataclass
class Side:
    """One side of a pair, normalised: an optional processed image, then an optional text."""

    text: str | None = None
    pixel_values: torch.Tensor | None = None  # [patches, C*T*P*P]
    image_grid_thw: torch.Tensor | None = None  # [1, 3]


@dataclass
class PairJob(EncodeJob):
    """One prompt ready for the model: ids end with the score token."""

    pixel_values: torch.Tensor | None = None  # [patches, C*T*P*P], document's image first
    image_grid_thw: torch.Tensor | None = None  # [images, 3]


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T], left-padded
    attention_mask: torch.Tensor  # [B, T]
    pixel_values: torch.Tensor | None = None  # [patches, C*T*P*P]
    image_grid_thw: torch.Tensor | None = None  # [images, 3]


Document = Input | TextImage | tuple[str, Image.Image] | tuple[Image.Image, str]


def split_item(item: Document, loc: tuple[str | int, ...]) -> tuple[str | None, Image.Image | None]:
    """(text, image) of an item: str -> text; PIL image -> image; TextImage or a (text, image)
    tuple in either order -> both."""
    if isinstance(item, str):
        return item, None
    if isinstance(item, Image.Image):
        return None, item
    if isinstance(item, TextImage):
        return item.text, item.image
    if isinstance(item, tuple) and len(item) == 2:
        text = next((x for x in item if isinstance(x, str)), None)
        image = next((x for x in item if isinstance(x, Image.Image)), None)
        if text is not None and image is not None:
            return text, image
    raise InvalidInput(f"{loc_label(loc)}: expected text, an image or a (text, image) pair, "
                       f"not {type(item).__name__}", loc)


def collate(pairs: Sequence[PairJob], pad_id: int) -> Batch:
    """Left-pad the prompts so the score token sits in the last column of every row."""
    input_ids, attention_mask = pad_batch([p.ids for p in pairs], pad_id, left=True)
    images = [p for p in pairs if p.pixel_values is not None]
    if not images:
        return Batch(input_ids, attention_mask)
    return Batch(input_ids, attention_mask,
                 torch.cat([p.pixel_values for p in images]),
                 torch.cat([p.image_grid_thw for p in images]))


# --- the reranker ---------------------------------------------------------------------------


class JinaRerankerM0:
    """`PairScorer` over jina-reranker-m0: text or image queries; text, image or text+image
    documents (`TextImage`, or a (text, image) tuple). Documents are cut to fit `max_length`;
    the template and the query never are."""

    def __init__(self, model: JinaRerankerM0Model, tokenizer,
                 image_processor: Qwen2VLImageProcessorPil, name: str = "jina-reranker-m0",
                 max_length: int = MAX_LENGTH, batch_size: int = 8,
                 max_batch_tokens: int = 16384):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.name = name
        self.max_length = max_length
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        config = model.config
        self.image_token_id = config.image_token_id
        self.merge = config.vision_config.spatial_merge_size
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (config.bos_token_id or 0)
        self.capabilities = FAMILY.capabilities(
            max_tokens=max_length,
            reranker="cross-encoder",
            score="sigmoid",
        )

    @classmethod
    def from_pretrained(cls, directory: str | Path, name: str = "",
                        dtype: torch.dtype = torch.float32, **options) -> JinaRerankerM0:
        """Load config.json, safetensors (strict), tokenizer and image-processor files."""
        directory = Path(directory)
        model = FAMILY.load_module(directory, dtype)
        model.init_rotary_buffers()
        tokenizer = AutoTokenizer.from_pretrained(directory)
        pixels = {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS}
        processor = (Qwen2VLImageProcessorPil.from_pretrained(directory, **pixels)
                     if (directory / "preprocessor_config.json").exists()
                     else Qwen2VLImageProcessorPil(**pixels))
        return cls(model, tokenizer, processor, name or directory.name, **options)

    # -- lower level: token ids and pixel values --

    @torch.inference_mode()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               pixel_values: torch.Tensor | None = None,
               image_grid_thw: torch.Tensor | None = None) -> torch.Tensor:
        """Raw logits [B] for left-padded rows [B, T] that end with the score token."""
        dtype = next(self.model.parameters()).dtype
        if pixel_values is not None:
            pixel_values = pixel_values.to(dtype)
        return self.model(input_ids, attention_mask, pixel_values, image_grid_thw).float()

    def side(self, item: Document, loc: tuple[str | int, ...]) -> Side:
        """Normalise a query or document; its image goes through the Qwen2-VL processor."""
        text, image = split_item(item, loc)
        if image is None:
            return Side(text)
        out = self.image_processor(images=[image], return_tensors="pt")
        return Side(text, out["pixel_values"], out["image_grid_thw"])

    # -- prompts --

    def prompt_text(self, query: Side, document: Side) -> str:
        """The string the reference passes to its processor (image pads not yet expanded)."""
        def part(side: Side) -> str:
            image = IMAGE_PLACEHOLDER if side.pixel_values is not None else ""
            return image + (side.text or "")

        return PROMPT.format(doc=part(document), query=part(query))

    def prompt_ids(self, query: Side, document: Side) -> list[int]:
        """Tokenised prompt, each image pad expanded to its merged patch count, + score token."""
        ids = self.tokenizer(self.prompt_text(query, document))["input_ids"]
        grids = [s.image_grid_thw for s in (document, query) if s.image_grid_thw is not None]
        counts = iter([int(g.prod()) // self.merge**2 for g in grids])  # prompt order
        expanded: list[int] = []
        for token in ids:
            expanded.extend([token] * next(counts) if token == self.image_token_id else [token])
        return [*expanded, SCORE_TOKEN_ID]

    def fitted_prompt_ids(self, query: Side, document: Side) -> list[int]:
        """Prompt ids within `max_length`: the document text is cut by tokens and decoded back
        to text (as the reference does); the template and the query are never cut."""
        fixed = len(self.prompt_ids(query, replace(document, text="")))
        if fixed >= self.max_length:
            raise InputTooLarge(f"the prompt without document text (template, query, images) "
                                f"takes {fixed} of the {self.max_length} tokens {self.name!r} "
                                f"accepts")
        if not document.text:
            return self.prompt_ids(query, document)
        limit = min(self.max_length - fixed, max(self.max_length - QUERY_RESERVE, QUERY_RESERVE))
        doc_ids = self.tokenizer(document.text)["input_ids"]
        text = document.text
        while True:
            if len(doc_ids) > limit:
                doc_ids = doc_ids[:limit]
                text = self.tokenizer.decode(doc_ids)
            ids = self.prompt_ids(query, replace(document, text=text))
            over = len(ids) - self.max_length
            if over <= 0:
                return ids
            limit = max(len(doc_ids) - over, 0)  # the cut re-tokenised longer: cut further

    # -- the PairScorer protocol --

    def prepare_pairs(self, query: Document, documents: Sequence[Document]) -> list[PairJob]:
        """One job per (query, document) pair: its prompt ids (text and image tokens, which
        `n_tokens` counts) and pixels, ready for `collate`."""
        q = self.side(query, ("query",))
        pairs = []
        for i, item in enumerate(documents):
            d = self.side(item, ("documents", i))
            images = [s for s in (d, q) if s.pixel_values is not None]  # prompt order
            ids = self.fitted_prompt_ids(q, d)
            if not images:
                pairs.append(PairJob(ids))
                continue
            pairs.append(PairJob(ids, pixel_values=torch.cat([s.pixel_values for s in images]),
                                 image_grid_thw=torch.cat([s.image_grid_thw for s in images])))
        return pairs

    def embed_jobs(self, jobs: Sequence[PairJob]) -> list[np.ndarray]:
        """Per pair job its [1] relevance logit, `logit - 2.65` (the score is its sigmoid)."""
        b = collate(jobs, self.pad_id)
        logits = self.logits(b.input_ids, b.attention_mask, b.pixel_values, b.image_grid_thw)
        return [row.numpy() for row in (logits - LOGIT_BIAS)[:, None]]

    def score(self, query: Document, documents: Sequence[Document]) -> list[float]:
        """Relevance in (0, 1) per document, in order: sigmoid(logit - 2.65)."""
        return score_pairs(self, query, documents, self.batch_size, self.max_batch_tokens)
