"""Request items -> model inputs, in one place before any model sees them.

Texts pass through; images are fetched (behind the address guard) and decoded within the
server's `ImageLimits`; a PDF becomes one input per page (`expand_items`). Errors name the
item by its place in the request (`loc`), e.g. "input[2]: ...", "documents[0]: ...".
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

from polyseek.errors import InputTooLarge, InvalidInput, Loc, PolyseekError, loc_label
from polyseek.inputs.images import ImageLimits, load_image
from polyseek.inputs.items import ImageItem, Item, PdfItem, TextItem
from polyseek.inputs.pdf import pdf_pages, read_pdf
from polyseek.models.base import Input

_INPUT_REF = re.compile(r"\binput\[(\d+)\]")


def input_locs(count: int) -> list[Loc]:
    """The locations of a request's `input` list."""
    return [("input", i) for i in range(count)]


def refuse_images(model: str, modalities: Sequence[str], items: Sequence[Item],
                  locs: Sequence[Loc]) -> None:
    """422 naming the first image, for a model that takes text only (nothing is fetched)."""
    if "image" in modalities:
        return
    for item, loc in zip(items, locs, strict=True):
        if isinstance(item, ImageItem):
            raise InvalidInput(f"model {model!r} is text-only and cannot take the image in "
                               f"{loc_label(loc)}", loc)


def decode_item(item: Item, limits: ImageLimits, loc: Loc) -> Input:
    """The text of a text item; an image item fetched and decoded to upright RGB. (A PDF
    gives one input per page: see `expand_items`.)"""
    if isinstance(item, TextItem):
        return item.text
    if isinstance(item, PdfItem):
        raise InvalidInput(f"{loc_label(loc)}: a PDF is not accepted here", loc)
    try:
        return load_image(item.source, limits)
    except InvalidInput as error:
        raise InvalidInput(f"{loc_label(loc)}: {error}", loc) from error
    except InputTooLarge as error:
        raise InputTooLarge(f"{loc_label(loc)}: {error}") from error


def pdf_inputs(item: PdfItem, limits: ImageLimits, reads_images: bool, loc: Loc
               ) -> list[tuple[int, Input]]:
    """(page number, input) for each page of a PDF item: the page rendered, for a model that
    reads images, else its text layer (pages without text are left out; a PDF without any
    is refused). The PDF is read within `limits`, `max_pdf_pages` included."""
    try:
        data = read_pdf(item.source, limits)
        pages = [(page.number, page.image if reads_images else page.text.strip())
                 for page in pdf_pages(data, text=not reads_images, image=reads_images,
                                       max_pixels=limits.max_pixels,
                                       max_pages=limits.max_pdf_pages)]
    except InvalidInput as error:
        raise InvalidInput(f"{loc_label(loc)}: {error}", loc) from error
    except InputTooLarge as error:
        raise InputTooLarge(f"{loc_label(loc)}: {error}") from error
    pages = [(number, value) for number, value in pages if reads_images or value]
    if not pages:
        raise InvalidInput(f"{loc_label(loc)}: the PDF has no text layer (scanned pages?); a "
                           "model that reads images embeds its pages as images", loc)
    return pages


@dataclass(frozen=True)
class Origin:
    """Where a model input came from: a request item, and the page of a PDF item."""

    index: int
    page: int | None = None

    @property
    def label(self) -> str:
        return f"input[{self.index}]" + (f" (page {self.page})" if self.page else "")


@dataclass
class ExpandedInputs:
    """A request's items as model inputs, PDFs split into pages, and where each came from."""

    inputs: list[Input]
    origins: list[Origin]

    @property
    def has_pages(self) -> bool:
        return any(origin.page is not None for origin in self.origins)

    def relabel(self, error: PolyseekError) -> PolyseekError:
        """`error` naming model inputs ("input[k]") by the request item and page instead."""
        def name(match: re.Match) -> str:
            k = int(match.group(1))
            return self.origins[k].label if k < len(self.origins) else match.group(0)

        message = _INPUT_REF.sub(name, str(error))
        if isinstance(error, InvalidInput):
            loc = error.loc
            if len(loc) == 2 and loc[0] == "input" and isinstance(loc[1], int) \
                    and loc[1] < len(self.origins):
                loc = ("input", self.origins[loc[1]].index)
            return InvalidInput(message, loc)
        return type(error)(message)


def expand_items(items: Sequence[Item], limits: ImageLimits, reads_images: bool,
                 max_inputs: int) -> ExpandedInputs:
    """Every item decoded, in order, a PDF item as one input per page; more than
    `max_inputs` inputs in all (pages counted) raises `InputTooLarge`."""
    out = ExpandedInputs([], [])
    for index, item in enumerate(items):
        loc: Loc = ("input", index)
        if isinstance(item, PdfItem):
            for number, value in pdf_inputs(item, limits, reads_images, loc):
                out.inputs.append(value)
                out.origins.append(Origin(index, number))
            if len(out.inputs) + len(items) - index - 1 > max_inputs:  # the rest: 1+ each
                raise InputTooLarge(f"the request's PDF pages and other inputs make more "
                                    f"than {max_inputs} inputs; at most {max_inputs} per "
                                    "request")
        else:
            out.inputs.append(decode_item(item, limits, loc))
            out.origins.append(Origin(index))
    return out


def decode_items(items: Sequence[Item], limits: ImageLimits,
                 locs: Sequence[Loc] | None = None) -> list[Input]:
    """Every item decoded, in order; `locs` default to the request's `input[i]`."""
    locs = input_locs(len(items)) if locs is None else locs
    return [decode_item(item, limits, loc) for item, loc in zip(items, locs, strict=True)]


async def model_inputs(items: Sequence[Item], limits: ImageLimits, model: str,
                       modalities: Sequence[str], locs: Sequence[Loc] | None = None
                       ) -> list[Input]:
    """What a served model gets for a request's items: images refused for a text-only model,
    else fetched and decoded off the event loop."""
    locs = input_locs(len(items)) if locs is None else locs
    refuse_images(model, modalities, items, locs)
    if all(isinstance(item, TextItem) for item in items):
        return [item.text for item in items]
    return await asyncio.to_thread(decode_items, items, limits, locs)


async def expanded_inputs(items: Sequence[Item], limits: ImageLimits, model: str,
                          modalities: Sequence[str], max_inputs: int) -> ExpandedInputs:
    """What a served model gets for a request's `input` items, PDFs as pages (rendered for a
    model that reads images, their text layer otherwise), decoded off the event loop."""
    refuse_images(model, modalities, items, input_locs(len(items)))
    if all(isinstance(item, TextItem) for item in items):
        return ExpandedInputs([item.text for item in items],
                              [Origin(i) for i in range(len(items))])
    return await asyncio.to_thread(expand_items, items, limits, "image" in modalities,
                                   max_inputs)
