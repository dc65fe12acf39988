"""jina-clip-v2 as a `Trainee`: full fine-tuning of both towers in one space.

Queries and documents may each be texts or images. Texts go through the text tower as served
(the role's instruction: `retrieval.query`'s for queries, the document side's task if the
model declares one, else none; its single LoRA adapter always on; mean pooling), images
through the vision tower (resize + center crop + CLIP normalisation, CLS token). Every weight
trains except the token embedding matrix (unless `--train-embeddings`) and `logit_scale`
(the loss has its own temperature).

clip has no task-adapter layout to add a task to, so `--lora --task` is refused. The saved
directory is the base checkpoint's with the trained weights (each tensor in the base's dtype)
and config.json's `matryoshka_dimensions` keeping the base dims (plus any trained ones).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file

from polyseek.models.base import pad_batch
from polyseek.models.jina_clip import JinaClipV2, preprocess_image
from polyseek.models.text_encoder import tokenize
from polyseek.train import export
from polyseek.train.data import ImageItem, Item, TrainDataError
from polyseek.train.trainee import Encoded, Role, Trainee


class JinaClipTrainee(Trainee):
    """jina-clip-v2 fine-tuned in full (text and vision towers)."""

    def __init__(self, embedder: JinaClipV2, lora: bool, task: str | None,
                 prompt: str | None = None, max_length: int = 128,
                 train_embeddings: bool = False):
        if lora or task:
            raise TrainDataError("jina-clip-v2 has no task adapters to add one beside: it "
                                 "trains in full (omit --lora and --task)")
        if prompt is not None:
            raise TrainDataError("jina-clip-v2 keeps its own instructions; omit --prompt")
        self.embedder, self.max_length = embedder, max_length
        caps, config = embedder.capabilities, embedder.model.config
        self.instructions = {role: config.instructions.get(caps.role_task(role) or "", "")
                             for role in ("query", "document")}
        self.module = embedder.model
        self.module.logit_scale.requires_grad_(False)
        for name, param in self.module.named_parameters():
            if "word_embeddings" in name:
                param.requires_grad_(train_embeddings)
        self.params = {n: p for n, p in self.module.named_parameters() if p.requires_grad}

    def encode(self, texts: Sequence[Item], role: Role) -> Encoded:
        """Texts through the text tower, images through the vision tower, in input order."""
        text_rows = [i for i, item in enumerate(texts) if not isinstance(item, ImageItem)]
        image_rows = [i for i, item in enumerate(texts) if isinstance(item, ImageItem)]
        parts = []
        if text_rows:
            parts.append(self.text_features([texts[i] for i in text_rows], role))
        if image_rows:
            parts.append(self.image_features([texts[i] for i in image_rows]))
        features = torch.cat(parts)  # [N, D], text rows first
        order = torch.tensor(text_rows + image_rows).argsort()
        return Encoded(features[order])

    def text_features(self, texts: list[str], role: Role) -> torch.Tensor:
        ids = tokenize(self.embedder.tokenizer, texts, self.instructions[role],
                       self.max_length, True, self.embedder.name)
        input_ids, _ = pad_batch(ids, self.embedder.pad_id)  # [T, L]
        return self.module.get_text_features(input_ids)  # [T, D]

    def image_features(self, images: list[ImageItem]) -> torch.Tensor:
        size = self.module.config.vision.image_size
        pixels = torch.stack([preprocess_image(image.load(), size) for image in images])
        return self.module.get_image_features(pixels.to(self.module.logit_scale.dtype))

    def save(self, base: Path, output: Path, dims: tuple[int, ...]) -> None:
        """config.json (Matryoshka dims kept), model.safetensors, tokenizer and processor
        files: the layout the family loads."""
        export.copy_base_files(base, output)
        (output / "model.safetensors.index.json").unlink(missing_ok=True)
        dtypes = export.stored_dtypes(base)
        state = {k: v.detach().to(dtypes.get(k, v.dtype)).contiguous()
                 for k, v in self.module.state_dict().items()}
        tmp = output / "model.safetensors.tmp"
        save_file(state, tmp, metadata={"format": "pt"})
        os.replace(tmp, output / "model.safetensors")
        config = json.loads((base / "config.json").read_text())
        kept = set(self.module.config.matryoshka_dims) | set(dims)
        config["matryoshka_dimensions"] = sorted(kept)
        (output / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False)
                                            + "\n")

    def served_tasks(self) -> tuple[str | None, str | None]:
        caps = self.embedder.capabilities
        return caps.role_task("query"), caps.role_task("document")
