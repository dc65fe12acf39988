"""Request items -> model inputs, in one place before any model sees them.

Texts pass through; images are fetched (behind the address guard) and decoded within the
server's `ImageLimits`. Errors name the item by its place in the request (`loc`), e.g.
"input[2]: ...", "documents[0]: ...".
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from polyseek.errors import InputTooLarge, InvalidInput, Loc, loc_label
from polyseek.inputs.images import ImageLimits, load_image
from polyseek.inputs.items import ImageItem, Item, TextItem
from polyseek.models.base import Input


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
    """The text of a text item; an image item fetched and decoded to upright RGB."""
    if isinstance(item, TextItem):
        return item.text
    try:
        return load_image(item.source, limits)
    except InvalidInput as error:
        raise InvalidInput(f"{loc_label(loc)}: {error}", loc) from error
    except InputTooLarge as error:
        raise InputTooLarge(f"{loc_label(loc)}: {error}") from error


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
    if not any(isinstance(item, ImageItem) for item in items):
        return [item.text for item in items]
    return await asyncio.to_thread(decode_items, items, limits, locs)
