"""Training data for the jina-vlm recipe: JSONL records -> chat examples -> model inputs.

Stage 1 records are `{"image": path, "caption": text}` (optionally `"prompt"`); stage 2
records are `{"image"?: path, "messages": [{"role", "content"}...]}` or
`{"image"?: path, "prompt": text, "response": text}` (optionally `"system"`). Relative image
paths resolve against the JSONL file's directory. An example is rendered with the model's own
chat template and processor, so training sees exactly the prompt that generation sees; only
assistant tokens (up to and including the turn's stop token) carry a loss.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from polyseek.errors import PolyseekError
from polyseek.models.jina_vlm.generator import CHATML, IMAGE_PLACEHOLDER, STOP_TOKENS
from polyseek.models.jina_vlm.model import MultimodalInputs

CAPTION_PROMPT = "Describe this image."
ROLES = ("system", "user", "assistant")
IGNORE = -100  # label of positions without a loss


class DataError(ValueError):
    """A training file or record that cannot be used; the message names file and line."""


@dataclass(frozen=True)
class Example:
    """One chat: turns as {"role", "content"} dicts; the image joins the first user turn."""

    messages: tuple[dict[str, str], ...]
    image: Path | None
    where: str  # "file:line", for error messages

    @property
    def text_only(self) -> bool:
        return self.image is None


@dataclass
class Encoded:
    """Token ids of one example (before the processor adds BOS and image blocks)."""

    ids: list[int]
    trained: list[bool]  # a loss on predicting this token
    image: Path | None
    where: str


def read_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    """("file:line", record) for every non-blank line; DataError for a line that is not a
    JSON object."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected a JSON object")
            yield where, record


def _text(record: dict, key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: {key!r} must be a non-empty string")
    if IMAGE_PLACEHOLDER in value:
        raise DataError(f"{where}: {key!r} contains {IMAGE_PLACEHOLDER}; give the image as "
                        "\"image\"")
    return value


def _image(record: dict, base: Path, where: str) -> Path | None:
    if "image" not in record or record["image"] is None:
        return None
    value = record["image"]
    if not isinstance(value, str) or not value:
        raise DataError(f"{where}: 'image' must be a file path")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise DataError(f"{where}: image file not found: {path}")
    try:
        Image.open(path).close()  # reads the header only
    except (OSError, ValueError) as exc:
        raise DataError(f"{where}: not a readable image: {path} ({exc})") from None
    return path


def _messages(record: dict, where: str) -> tuple[dict[str, str], ...]:
    if "messages" in record:
        turns = record["messages"]
        if not isinstance(turns, list) or not turns:
            raise DataError(f"{where}: 'messages' must be a non-empty list")
        out = []
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict) or turn.get("role") not in ROLES:
                raise DataError(f"{where}: messages[{i}] needs a role in {', '.join(ROLES)}")
            out.append({"role": turn["role"], "content": _text(turn, "content", where)})
    elif "prompt" in record or "response" in record:
        out = [{"role": "user", "content": _text(record, "prompt", where)},
               {"role": "assistant", "content": _text(record, "response", where)}]
        if "system" in record:
            out.insert(0, {"role": "system", "content": _text(record, "system", where)})
    else:
        raise DataError(f"{where}: expected 'messages' or 'prompt' and 'response'")
    roles = [turn["role"] for turn in out]
    if "assistant" not in roles:
        raise DataError(f"{where}: no assistant turn to learn from")
    return tuple(out)


def load_captions(path: Path) -> list[Example]:
    """Stage 1: image-caption pairs; every record needs an image."""
    examples = []
    for where, record in read_jsonl(path):
        image = _image(record, path.parent, where)
        if image is None:
            raise DataError(f"{where}: stage 1 needs an 'image'")
        prompt = _text(record, "prompt", where) if "prompt" in record else CAPTION_PROMPT
        messages = ({"role": "user", "content": prompt},
                    {"role": "assistant", "content": _text(record, "caption", where)})
        examples.append(Example(messages, image, where))
    if not examples:
        raise DataError(f"{path}: no records")
    return examples


def load_chats(path: Path) -> list[Example]:
    """Stage 2: instruction chats, with or without an image."""
    examples = []
    for where, record in read_jsonl(path):
        image = _image(record, path.parent, where)
        messages = _messages(record, where)
        if image is not None and "user" not in [m["role"] for m in messages]:
            raise DataError(f"{where}: an image needs a user turn to go with")
        examples.append(Example(messages, image, where))
    if not examples:
        raise DataError(f"{path}: no records")
    return examples


class ChatEncoder:
    """Example -> token ids and loss mask, through the tokenizer's chat template.

    Each assistant turn's prompt is rendered exactly as generation renders it (the chat so
    far plus the generation prompt); the turn's tokens follow. The template must render a
    chat as the concatenation of its prefixes (ChatML and its relatives do).
    """

    def __init__(self, tokenizer, vocab_limit: int):
        self.tokenizer = tokenizer
        self.template = tokenizer.chat_template or CHATML
        vocab = tokenizer.get_vocab()
        self.stop_ids = {vocab[t] for t in STOP_TOKENS if t in vocab}
        self.placeholder = vocab.get(IMAGE_PLACEHOLDER)
        self.vocab_limit = vocab_limit  # lm_head predicts ids below this

    def render(self, turns: Sequence[dict[str, str]], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            list(turns), chat_template=self.template, tokenize=False,
            add_generation_prompt=generation_prompt)

    def encode_text(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def __call__(self, example: Example) -> Encoded:
        turns = [dict(t) for t in example.messages]
        if example.image is not None:
            first_user = next(i for i, t in enumerate(turns) if t["role"] == "user")
            turns[first_user]["content"] = IMAGE_PLACEHOLDER + turns[first_user]["content"]
        ids: list[int] = []
        trained: list[bool] = []
        done = ""  # text rendered so far
        for i, turn in enumerate(turns):
            if turn["role"] != "assistant":
                continue
            prompt = self.render(turns[:i], generation_prompt=True)
            upto = self.render(turns[: i + 1], generation_prompt=False)
            if not (prompt.startswith(done) and upto.startswith(prompt)):
                raise DataError(f"{example.where}: the chat template does not render the chat "
                                "as a sequence of its prefixes")
            prompt_ids = self.encode_text(prompt[len(done):])
            answer_ids = self.encode_text(upto[len(prompt):])
            ids += prompt_ids + answer_ids
            trained += [False] * len(prompt_ids) + self._answer_mask(answer_ids)
            done = upto
        self._check(example, ids, trained)
        return Encoded(ids, trained, example.image, example.where)

    def _answer_mask(self, answer_ids: list[int]) -> list[bool]:
        """Train the answer up to and including its first stop token (what follows it, such
        as the template's newline, is never generated)."""
        stop = next((k for k, t in enumerate(answer_ids) if t in self.stop_ids), None)
        if stop is None:
            return [True] * len(answer_ids)
        return [k <= stop for k in range(len(answer_ids))]

    def _check(self, example: Example, ids: list[int], trained: list[bool]) -> None:
        targets = [t for t, on in zip(ids, trained, strict=True) if on]
        if not targets:
            raise DataError(f"{example.where}: the assistant turns render to no tokens")
        if any(t >= self.vocab_limit for t in targets):
            raise DataError(f"{example.where}: an assistant turn holds a token the model "
                            "cannot predict (an image token?)")
        if self.placeholder is not None and self.placeholder in ids:
            last = len(ids) - 1 - ids[::-1].index(self.placeholder)
            if any(trained[: last + 1]):
                raise DataError(f"{example.where}: the image's user turn must come before "
                                "the first assistant turn")


def open_image(path: Path, where: str) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise DataError(f"{where}: cannot read image {path}: {exc}") from None


def collate(processor, batch: Sequence[Encoded],
            max_length: int | None = None) -> tuple[MultimodalInputs, torch.Tensor]:
    """Model inputs (built by the model's processor) and labels [B, L]: the token to predict
    at each position, IGNORE where there is no loss.

    The processor adds BOS and image blocks before the trained tokens and pads on the left, so
    each row's loss mask aligns with the row's right end.
    """
    images = [[open_image(e.image, e.where)] if e.image else [] for e in batch]
    try:
        out = processor.from_token_ids([e.ids for e in batch], images)
    except PolyseekError as exc:
        raise DataError(f"{', '.join(e.where for e in batch)}: {exc}") from None
    input_ids = out["input_ids"]
    if max_length is not None and input_ids.shape[1] > max_length:
        longest = max(range(len(batch)), key=lambda b: int((input_ids[b] != -1).sum()))
        raise DataError(f"{batch[longest].where}: {input_ids.shape[1]} tokens with the image "
                        f"block, over the model's {max_length}-token context")
    labels = torch.full_like(input_ids, IGNORE)
    length = input_ids.shape[1]
    for row, example in enumerate(batch):
        mask = torch.tensor(example.trained, dtype=torch.bool)
        span = labels[row, length - len(mask):]
        span[mask] = input_ids[row, length - len(mask):][mask]
    # position t predicts token t + 1
    labels = torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], IGNORE)], dim=1)
    inputs = MultimodalInputs(input_ids, out.get("images"), out.get("image_masks"),
                              out.get("image_input_idx"))
    return inputs, labels
