"""Filters on point payloads, applied inside the engine by both store adapters.

A filter is a list of conditions that must all hold. Each condition names a payload field and
one test, as Qdrant's field conditions do: `match` (equality), `any` (one of), `range`
(bounds) or `prefix` (keyword fields). Filterable fields: the file fields every chunk of a file
carries, and `metadata.NAME` for the metadata given to /v1/index. Values are strings,
numbers and booleans.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from polyseek.errors import InvalidInput

Scalar = str | int | float | bool
IndexKind = Literal["keyword", "integer", "float", "bool"]

# what indexing records for a file, with the payload index each field gets
FILE_FIELDS: dict[str, IndexKind] = {"extension": "keyword", "mime": "keyword",
                                     "size": "integer", "modified": "float"}
FIELDS: dict[str, IndexKind] = {"path": "keyword", **FILE_FIELDS, "page": "integer"}
METADATA_KEY = re.compile(r"metadata\.[\w-]{1,64}")


@dataclass(frozen=True)
class Range:
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class Condition:
    """`key` passes exactly one test: equals `match`, is one of `any`, lies in `range`,
    or starts with `prefix`."""

    key: str
    match: Scalar | None = None
    any: tuple[str, ...] | tuple[int, ...] | None = None
    range: Range | None = None
    prefix: str | None = None

    def __post_init__(self) -> None:
        loc = ("filters", self.key)
        if self.key not in FIELDS and not METADATA_KEY.fullmatch(self.key):
            raise InvalidInput(f"cannot filter on {self.key!r}: use one of "
                               f"{', '.join(FIELDS)} or metadata.NAME", loc)
        tests = [t for t in (self.match, self.any, self.range, self.prefix) if t is not None]
        if len(tests) != 1:
            raise InvalidInput(f"filter on {self.key!r} needs exactly one of match, any, "
                               "range, prefix", loc)
        if self.any is not None:
            kinds = {type(v) for v in self.any}
            if not self.any or len(kinds) > 1 or not kinds <= {str, int}:
                raise InvalidInput(f"filter on {self.key!r}: `any` takes a non-empty list of "
                                   "strings or of integers", loc)
        if self.range is not None and all(v is None for v in vars(self.range).values()):
            raise InvalidInput(f"filter on {self.key!r}: `range` needs a bound", loc)
        if self.prefix is not None and FIELDS.get(self.key, "keyword") != "keyword":
            raise InvalidInput(f"filter on {self.key!r}: `prefix` applies to text fields", loc)


Filter = list[Condition]


def metadata_indexes(metadata: dict) -> dict[str, IndexKind]:
    """The payload index each metadata field (a scalar, or a list of them) gets."""
    kinds: dict[str, IndexKind] = {}
    for name, value in metadata.items():
        sample = value[0] if isinstance(value, list) and value else value
        if isinstance(sample, str | int | float):  # bool is an int: test it first
            kinds[f"metadata.{name}"] = (
                "bool" if isinstance(sample, bool) else "keyword" if isinstance(sample, str)
                else "integer" if isinstance(sample, int) else "float")
    return kinds


_COMPARISON = re.compile(r"(?P<key>[\w.-]+?)\s*(?P<op>>=|<=|>|<|=)\s*(?P<value>.*)", re.S)


def parse_value(text: str) -> Scalar:
    """A command-line value: an integer, a number, true/false, else the text itself."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text, text)


def parse_condition(text: str) -> Condition:
    """`KEY=VALUE`, `KEY=A,B` (one of), `KEY>=N`, `KEY<=N`, `KEY>N`, `KEY<N`."""
    found = _COMPARISON.fullmatch(text.strip())
    if not found:
        raise InvalidInput(f"expected KEY=VALUE, KEY=A,B or KEY>=N, got {text!r}", ("where",))
    key, op, value = found["key"], found["op"], found["value"].strip()
    if op != "=":
        number = parse_value(value)
        if isinstance(number, str | bool):
            raise InvalidInput(f"{text!r}: {op} needs a number", ("where",))
        bound = {">=": "gte", "<=": "lte", ">": "gt", "<": "lt"}[op]
        return Condition(key, range=Range(**{bound: number}))
    if "," in value:
        return Condition(key, any=tuple(parse_value(v.strip()) for v in value.split(",")))
    return Condition(key, match=parse_value(value))
