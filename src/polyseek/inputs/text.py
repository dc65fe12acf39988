"""Token-level text helpers shared by encoder families."""

from __future__ import annotations

from polyseek.errors import InputTooLarge, InvalidInput

Window = tuple[list[int], list[tuple[int, int]]]  # (token ids, one (start, end) span per input)


def late_chunking_windows(
    pieces: list[list[int]],
    prefix: list[int],
    suffix: list[int],
    max_tokens: int,
    truncate: bool,
) -> list[Window]:
    """Join tokenised inputs into context windows, remembering each input's token span.

    pieces: token ids per input, without special tokens. Every window is
    prefix + pieces... + suffix within `max_tokens`. Without `truncate` all inputs must fit
    one window (else InputTooLarge); with it, inputs fill as many windows as they need and an
    input longer than a window is cut to fit.
    """
    room = max_tokens - len(prefix) - len(suffix)
    for i, piece in enumerate(pieces):
        if not piece:
            raise InvalidInput(f"input[{i}] has no tokens to pool", ("input", i))
    total = sum(map(len, pieces))
    if not truncate and total > room:
        raise InputTooLarge(
            f"late chunking joins all inputs into one sequence: {total} tokens, over the "
            f"{room} that fit the context; send fewer inputs or set truncate=true to split "
            "them over several windows"
        )
    groups: list[list[list[int]]] = [[]]
    for piece in pieces:
        piece = piece[:room]
        if sum(map(len, groups[-1])) + len(piece) > room:
            groups.append([])
        groups[-1].append(piece)
    windows = []
    for group in groups:
        ids, spans = list(prefix), []
        for piece in group:
            spans.append((len(ids), len(ids) + len(piece)))
            ids.extend(piece)
        windows.append((ids + suffix, spans))
    return windows
