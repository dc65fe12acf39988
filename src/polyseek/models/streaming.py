"""Turning generated token ids into text deltas: incremental decoding and stop strings."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from polyseek.models.base import TextDelta


def stream_text(
    tokens: Iterable[int],
    decode: Callable[[list[int]], str],
    max_tokens: int,
    stop_token_ids: Sequence[int],
    stop: Sequence[str],
    prompt_tokens: int,
) -> Iterator[TextDelta]:
    """Yield text as it becomes final; the last delta carries the finish reason.

    Text is held back while it could still grow into a stop string, and while it ends in an
    incomplete UTF-8 sequence (decoded as U+FFFD). A stop token or stop string ends with
    "stop" (neither is part of the text); running out of `max_tokens` ends with "length".
    """
    ids: list[int] = []
    sent = 0
    hold = max((len(s) for s in stop if s), default=1) - 1
    finish = "length"
    for token in tokens:
        if token in stop_token_ids:
            finish = "stop"
            break
        ids.append(token)
        text = decode(ids)
        cut = first_stop(text, stop)
        if cut is not None:
            yield TextDelta(text[sent:cut], "stop", prompt_tokens, len(ids))
            return
        ready = len(text) - hold - (1 if text.endswith("\ufffd") else 0)
        if ready > sent:
            yield TextDelta(text[sent:ready], None, prompt_tokens, len(ids))
            sent = ready
        if len(ids) >= max_tokens:
            break
    text = decode(ids)
    yield TextDelta(text[sent:], finish, prompt_tokens, len(ids))


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index of the earliest stop string in `text`, if any."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None
