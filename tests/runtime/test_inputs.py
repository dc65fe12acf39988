"""Request items -> model inputs: texts pass, images decoded within the limits given, errors
naming the item's place in the request."""

from __future__ import annotations

import asyncio
import base64
import io

import pytest
from PIL import Image

from polyseek.errors import InputTooLarge, InvalidInput, loc_label
from polyseek.inputs.images import ImageLimits
from polyseek.inputs.items import ImageItem, TextItem
from polyseek.runtime.inputs import decode_items, model_inputs


def png_uri(width: int, height: int, mode: str = "RGB") -> str:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), "red").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_labels_read_like_the_request():
    assert loc_label(("input", 2)) == "input[2]"
    assert loc_label(("query",)) == "query"
    assert loc_label(("messages", 1, "content", 0)) == "messages[1].content[0]"


def test_texts_pass_and_images_are_decoded_to_rgb():
    text, image = decode_items([TextItem("hello"), ImageItem(png_uri(4, 3, "RGBA"))],
                               ImageLimits())
    assert text == "hello"
    assert isinstance(image, Image.Image) and (image.mode, image.size) == ("RGB", (4, 3))


def test_the_limits_given_apply_and_errors_name_the_item():
    items = [TextItem("a"), ImageItem(png_uri(10, 10))]
    with pytest.raises(InputTooLarge, match=r"^input\[1\]: image is 10x10 = 100 pixels, "
                       r"over the 99-pixel limit$"):
        decode_items(items, ImageLimits(max_pixels=99))
    assert len(decode_items(items, ImageLimits(max_pixels=100))) == 2
    with pytest.raises(InvalidInput, match=r"^documents\[0\]: ") as error:
        decode_items([ImageItem("data:image/png;base64,bm90IGFuIGltYWdl")], ImageLimits(),
                     [("documents", 0)])
    assert error.value.loc == ("documents", 0)


def test_a_text_only_model_refuses_images_before_fetching_them():
    items = [TextItem("a"), ImageItem("http://127.0.0.1:9/never-fetched.png")]
    with pytest.raises(InvalidInput, match="'minilm' is text-only .* input\\[1\\]") as error:
        asyncio.run(model_inputs(items, ImageLimits(), "minilm", ("text",)))
    assert error.value.loc == ("input", 1)
    texts = asyncio.run(model_inputs([TextItem("a"), TextItem("b")], ImageLimits(), "minilm",
                                     ("text",)))
    assert texts == ["a", "b"]


def test_an_image_model_gets_decoded_images_off_the_event_loop():
    items = [ImageItem(png_uri(8, 8)), TextItem("caption")]
    image, text = asyncio.run(model_inputs(items, ImageLimits(), "clip", ("text", "image")))
    assert isinstance(image, Image.Image) and image.size == (8, 8) and text == "caption"
