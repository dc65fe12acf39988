"""Errors raised below the API layer; the API maps each class to one HTTP status."""

from __future__ import annotations

Loc = tuple[str | int, ...]


def loc_label(loc: Loc) -> str:
    """How a message names a field: ("documents", 3) -> "documents[3]",
    ("messages", 1, "content", 0) -> "messages[1].content[0]"."""
    head, *rest = loc
    return str(head) + "".join(f"[{part}]" if isinstance(part, int) else f".{part}"
                               for part in rest)


class PolyseekError(Exception):
    """Base class: a request that cannot be served as asked."""


class InvalidInput(PolyseekError, ValueError):
    """A field's value is not acceptable for this model (HTTP 422).

    `loc` names the offending field, e.g. ("task",) or ("input", 3).
    """

    def __init__(self, message: str, loc: Loc = ()):
        super().__init__(message)
        self.loc = loc


class InputTooLarge(PolyseekError):
    """Too many inputs, or an input longer than the model's context (HTTP 413)."""


class UnknownModel(PolyseekError, KeyError):
    """No model of that name is served (HTTP 400)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class WrongModelKind(PolyseekError):
    """The model exists but does not serve this route (HTTP 400)."""


class ModelLoading(PolyseekError):
    """The model is still loading (HTTP 503)."""


class Overloaded(PolyseekError):
    """The work queue is full (HTTP 429)."""
