"""Segmenting text: its tokens under a served model's tokenizer, and its chunks by the
chunker ingestion uses (lengths in characters, as Jina's Segmenter counts them)."""

from __future__ import annotations

from dataclasses import dataclass

from polyseek.errors import InvalidInput
from polyseek.inputs.chunking import Span, chunk_spans
from polyseek.models.text_encoder import locked_call
from polyseek.runtime.registry import ModelRegistry

Token = tuple[str, list[int]]  # the text a token (or a run of tokens sharing it) covers, ids


@dataclass
class Segmentation:
    num_tokens: int
    tokens: list[Token] | list[list[Token]] | None = None  # per chunk when chunks are returned
    chunk_positions: list[Span] | None = None  # character offsets into the content
    chunks: list[str] | None = None


def _fast_tokenizer(registry: ModelRegistry, name: str):
    tokenizer = getattr(getattr(registry.engine(name), "model", None), "tokenizer", None)
    return tokenizer if getattr(tokenizer, "is_fast", False) else None


def tokenizer_for(registry: ModelRegistry, name: str | None) -> tuple[str, object]:
    """(name, tokenizer) of a served model (the first one when `name` is None); InvalidInput
    naming the tokenizers there are, ModelLoading while the model loads."""
    names = registry.names
    name = names[0] if name is None and names else name
    if name not in names:
        raise InvalidInput(f"unknown tokenizer {name!r}; available tokenizers (the served "
                           f"models'): {', '.join(names)}", ("tokenizer",))
    tokenizer = _fast_tokenizer(registry, name)
    if tokenizer is None:
        raise InvalidInput(f"model {name!r} has no tokenizer that maps tokens to text",
                           ("tokenizer",))
    return name, tokenizer


def _group(content: str, ids: list[int],
           offsets: list[tuple[int, int]]) -> list[tuple[int, Token]]:
    """Tokens as (start, (text, ids)), start the offset of the first non-space character:
    tokens that share characters (a word-start marker and its word, the bytes of one emoji)
    make one entry."""
    out: list[tuple[int, Token]] = []
    end = -1
    for token, (s, e) in zip(ids, offsets, strict=True):
        if out and (s < end or s == e):
            start, (text, group) = out[-1]
            if e > end:
                text, end = text + content[end:e], e
            out[-1] = (start, (text, [*group, token]))
        else:
            text = content[s:e]
            first = s + len(text) - len(text.lstrip())  # a word's token may hold its space
            out.append((first if first < e else s, (text, [token])))
            end = e
    return out


def _per_chunk(tokens: list[tuple[int, Token]],
               spans: list[tuple[int, int]]) -> list[list[Token]]:
    """The tokens of each chunk: those that start inside it (Jina's layout when chunks are
    returned too); tokens between chunks (the whitespace a chunk drops) belong to none."""
    grouped: list[list[Token]] = [[] for _ in spans]
    i = 0
    for start, token in tokens:
        while i < len(spans) and start >= spans[i][1]:
            i += 1
        if i == len(spans):
            break
        if start >= spans[i][0]:
            grouped[i].append(token)
    return grouped


def segment(tokenizer, content: str, *, return_tokens: bool = False,
            return_chunks: bool = False, max_chunk_length: int = 1000,
            head: int | None = None, tail: int | None = None) -> Segmentation:
    """Tokens (without special tokens) and chunks of `content`, or of its first `head` or
    last `tail` tokens."""
    encoded = locked_call(tokenizer, content, add_special_tokens=False, truncation=False,
                          return_offsets_mapping=True, verbose=False)
    ids, offsets = list(encoded["input_ids"]), [tuple(o) for o in encoded["offset_mapping"]]
    start, end = 0, len(content)
    if head is not None and head < len(ids):
        ids, offsets = ids[:head], offsets[:head]
        end = max((e for _, e in offsets), default=0)
    elif tail is not None and tail < len(ids):
        ids, offsets = ids[-tail:], offsets[-tail:]
        start = min((s for s, _ in offsets), default=end)
    out = Segmentation(num_tokens=len(ids))
    if return_chunks:
        part = content[start:end]
        out.chunk_positions = [(start + s, start + e)
                               for s, e in chunk_spans(part, max_chunk_length)]
        out.chunks = [content[s:e] for s, e in out.chunk_positions]
    if return_tokens:
        tokens = _group(content, ids, offsets)
        out.tokens = ([token for _, token in tokens] if out.chunk_positions is None
                      else _per_chunk(tokens, out.chunk_positions))
    return out
