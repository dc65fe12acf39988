"""Image loading: every source kind, the URL guard, limits, bombs and colour modes.

Real behaviour only: images are encoded with PIL, served by a local `http.server`, and decoded
through the public functions.
"""

from __future__ import annotations

import base64
import io
import resource
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from polyseek.errors import InputTooLarge, InvalidInput
from polyseek.inputs.images import (
    ImageLimits,
    check_url_allowed,
    decode_image_bytes,
    fetch_url,
    load_image,
)

from support import free_port

PRIVATE = ImageLimits(allow_private_urls=True)

# --- helpers ---------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width: int, height: int, idat: bytes, bit_depth: int = 1) -> bytes:
    """A greyscale PNG assembled by hand, so its header can claim any size."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def black_png(width: int, height: int) -> bytes:
    """A complete, valid 1-bit all-black PNG, compressed in chunks (tiny even when huge)."""
    row = b"\x00" + bytes((width + 7) // 8)
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row * min(1000, height - y)) for y in range(0, height, 1000)]
    return raw_png(width, height, b"".join(parts) + compressor.flush())


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def sample_png(sample: np.ndarray) -> bytes:
    return encode(Image.fromarray(sample))


# --- local HTTP server -------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    server: ImageServer

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.seen.append((self.path, self.headers.get("Host")))
        port = self.server.server_address[1]
        redirects = {
            "/redirect": "/cat.png",
            "/loop": "/loop",
            "/to-unspecified": f"http://0.0.0.0:{port}/cat.png",
            "/to-file": "file:///etc/passwd",
        }
        try:
            if self.path in redirects:
                self.send_response(302)
                self.send_header("Location", redirects[self.path])
                self.end_headers()
            elif self.path == "/cat.png":
                self.reply(self.server.png)
            elif self.path == "/big":
                self.reply(b"\x00" * 5000)
            elif self.path == "/big-unannounced":  # no Content-Length: body ends at close
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"\x00" * 5000)
            elif self.path == "/slow":
                time.sleep(2)
                self.reply(self.server.png)
            elif self.path == "/drip":  # each byte arrives in time, the whole never does
                self.send_response(200)
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                for _ in range(100):
                    self.wfile.write(b"x")
                    time.sleep(0.05)
            else:
                self.send_error(404)
        except OSError:  # the client gave up first, as the timeout tests intend
            pass

    def reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class ImageServer(ThreadingHTTPServer):
    daemon_threads = True
    png: bytes
    seen: list[tuple[str, str | None]]


@pytest.fixture(scope="module")
def server(sample_png: bytes) -> Iterator[ImageServer]:
    httpd = ImageServer(("127.0.0.1", 0), Handler)
    httpd.png, httpd.seen = sample_png, []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def url(server: ImageServer, path: str, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{server.server_address[1]}{path}"


# --- sources -----------------------------------------------------------------------------------


def test_every_source_kind_round_trips(sample: np.ndarray, sample_png: bytes, tmp_path: Path):
    b64 = base64.b64encode(sample_png).decode()
    path = tmp_path / "sample.png"
    path.write_bytes(sample_png)
    sources = [
        f"data:image/png;base64,{b64}",
        b64,
        base64.encodebytes(sample_png).decode(),  # MIME line breaks
        base64.urlsafe_b64encode(sample_png).decode().rstrip("="),  # URL-safe, unpadded
        sample_png,
        Image.fromarray(sample),
        Image.open(io.BytesIO(sample_png)),  # lazy, not yet loaded
    ]
    for source in sources:
        assert np.array_equal(pixels(load_image(source)), sample)
    allowed = ImageLimits(allow_local_paths=True)
    assert np.array_equal(pixels(load_image(str(path), allowed)), sample)


def test_local_paths_are_refused_by_default(sample_png: bytes, tmp_path: Path):
    path = tmp_path / "sample.png"
    path.write_bytes(sample_png)
    with pytest.raises(InvalidInput, match="local file paths are disabled"):
        load_image(str(path))
    with pytest.raises(InvalidInput, match="not an http"):
        load_image(str(tmp_path / "missing.png"), ImageLimits(allow_local_paths=True))
    with pytest.raises(InvalidInput, match="scheme 'file'"):
        load_image(path.as_uri(), ImageLimits(allow_local_paths=True))


def test_pil_input_is_not_modified():
    rgba = Image.new("RGBA", (2, 2), (10, 20, 30, 0))
    assert pixels(load_image(rgba))[0, 0].tolist() == [255, 255, 255]
    assert rgba.mode == "RGBA"


def test_pil_images_are_checked_against_the_limits_too():
    with pytest.raises(InputTooLarge, match="over the 100-pixel limit"):
        load_image(Image.new("1", (20, 20)), ImageLimits(max_pixels=100))


# --- URLs --------------------------------------------------------------------------------------


def test_url_fetch(server: ImageServer, sample: np.ndarray):
    assert np.array_equal(pixels(load_image(url(server, "/cat.png"), PRIVATE)), sample)
    assert np.array_equal(pixels(load_image(url(server, "/redirect"), PRIVATE)), sample)


def test_url_by_name_connects_to_the_checked_address_with_the_original_host(
    server: ImageServer, sample_png: bytes
):
    assert fetch_url(url(server, "/cat.png", host="localhost"), PRIVATE) == sample_png
    assert server.seen[-1] == ("/cat.png", f"localhost:{server.server_address[1]}")


def test_private_url_refused_before_any_request(server: ImageServer):
    before = len(server.seen)
    with pytest.raises(InvalidInput, match="loopback address 127.0.0.1: private URLs"):
        load_image(url(server, "/cat.png"))
    assert len(server.seen) == before


def test_redirect_hops_are_rechecked(server: ImageServer):
    # 0.0.0.0 would reach this very server on Linux; the guard must stop the hop.
    with pytest.raises(InvalidInput, match="unspecified address.*redirected from"):
        load_image(url(server, "/to-unspecified"), PRIVATE)
    assert server.seen[-1][0] == "/to-unspecified"
    with pytest.raises(InvalidInput, match="scheme"):
        load_image(url(server, "/to-file"), PRIVATE)
    with pytest.raises(InvalidInput, match="more than 3 redirects"):
        load_image(url(server, "/loop"), PRIVATE)


@pytest.mark.parametrize("path", ["/big", "/big-unannounced"])
def test_download_stops_at_max_bytes(server: ImageServer, path: str):
    with pytest.raises(InputTooLarge):
        fetch_url(url(server, path), ImageLimits(max_bytes=1000, allow_private_urls=True))


def test_http_errors_name_the_url(server: ImageServer):
    missing = url(server, "/missing.png")
    with pytest.raises(InvalidInput, match="HTTP 404") as caught:
        load_image(missing, PRIVATE)
    assert missing in str(caught.value)
    closed = f"http://127.0.0.1:{free_port()}/x.png"
    with pytest.raises(InvalidInput, match="cannot fetch image"):
        load_image(closed, PRIVATE)


@pytest.mark.parametrize("path", ["/slow", "/drip"])
def test_fetch_timeout_bounds_the_whole_fetch(server: ImageServer, path: str):
    limits = ImageLimits(fetch_timeout=0.3, allow_private_urls=True)
    start = time.monotonic()
    with pytest.raises(InvalidInput, match="timed out") as caught:
        load_image(url(server, path), limits)
    assert time.monotonic() - start < 1.5
    assert url(server, path) in str(caught.value)


PRIVATE_URLS = [
    "http://127.0.0.1/",
    "http://localhost:8080/x.png",
    "http://2130706433/",  # 127.0.0.1 as one number
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
]
NEVER_URLS = [
    "http://0.0.0.0/",
    "http://[::]/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://240.0.0.1/",
]


@pytest.mark.parametrize("address", PRIVATE_URLS)
def test_guard_refuses_private_addresses_unless_allowed(address: str):
    with pytest.raises(InvalidInput, match="private URLs are disabled"):
        check_url_allowed(address)
    assert check_url_allowed(address, allow_private=True)


@pytest.mark.parametrize("address", NEVER_URLS)
def test_guard_always_refuses_addresses_no_server_lives_at(address: str):
    with pytest.raises(InvalidInput, match="never fetched"):
        check_url_allowed(address, allow_private=True)


@pytest.mark.parametrize(
    "address", ["ftp://example.com/a.png", "file:///etc/passwd", "gopher://x/", "http://"]
)
def test_guard_refuses_other_schemes_and_bad_urls(address: str):
    with pytest.raises(InvalidInput):
        check_url_allowed(address, allow_private=True)


def test_guard_allows_public_addresses():
    assert [str(a) for a in check_url_allowed("http://93.184.215.14/a.png")] == ["93.184.215.14"]
    assert check_url_allowed("https://[2606:4700::1111]/")


# --- decoding failures -------------------------------------------------------------------------


def noisy_png() -> bytes:
    noise = np.random.default_rng(1).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    return encode(Image.fromarray(noise))


def corrupted(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 64]) + data[middle + 64 :]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, this is text and not an image",
        bytes(range(256)) * 4,
        noisy_png()[:1500],  # truncated inside the pixel data
        noisy_png()[:30],  # truncated inside the header
        corrupted(noisy_png()),
        encode(Image.new("RGB", (4, 4)), "JPEG")[:200],
        encode(Image.new("RGB", (4, 4)), "PPM"),  # a real image, but not an accepted format
    ],
    ids=["empty", "text", "garbage", "truncated", "header", "corrupt", "jpeg-cut", "ppm"],
)
def test_bad_bytes_are_invalid_input(data: bytes):
    with pytest.raises(InvalidInput):
        decode_image_bytes(data)


@pytest.mark.parametrize(
    "source",
    [
        "",
        "   ",
        "not an image!",
        "abcde",  # base64 alphabet, impossible length
        "aGVsbG8gd29ybGQ=",  # valid base64 of text
        "/etc/passwd",
        "data:image/png;base64,@@@@",
        "data:image/png;base64",
        "data:image/png;base64,",
        "javascript://alert(1)",
    ],
)
def test_bad_references_are_invalid_input(source: str):
    with pytest.raises(InvalidInput):
        load_image(source)


def test_oversize_inline_data_is_too_large(sample_png: bytes):
    limits = ImageLimits(max_bytes=len(sample_png) - 1)
    for source in (sample_png, base64.b64encode(sample_png).decode()):
        with pytest.raises(InputTooLarge):
            load_image(source, limits)


# --- size limits and decompression bombs -------------------------------------------------------


def test_bomb_is_refused_from_its_header():
    bomb = black_png(20_000, 20_000)  # 400 megapixels in about 50 KB
    assert len(bomb) < 100_000
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    for source in (bomb, "data:image/png;base64," + base64.b64encode(bomb).decode()):
        with pytest.raises(InputTooLarge):
            load_image(source)
    assert time.monotonic() - start < 0.25
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 50_000  # decoding would have taken 400 MB


def test_black_png_helper_builds_valid_images():
    assert pixels(load_image(black_png(30, 20))).max() == 0
    assert load_image(black_png(30, 20)).size == (30, 20)


def test_pixel_limit_is_checked_before_decoding():
    # Header says 8000x8000 (64 MP: under PIL's own bomb limit, over ours); no pixel data.
    header_only = raw_png(8000, 8000, zlib.compress(b"\x00" * 16))
    start = time.monotonic()
    with pytest.raises(InputTooLarge, match="8000x8000"):
        decode_image_bytes(header_only)
    assert time.monotonic() - start < 0.1
    # With a higher cap the same file gets as far as decoding, and fails there.
    with pytest.raises(InvalidInput, match="truncated|corrupt"):
        decode_image_bytes(header_only, ImageLimits(max_pixels=100_000_000))


def test_tiny_images_are_valid_and_empty_ones_are_not():
    assert pixels(load_image(encode(Image.new("RGB", (1, 1), (1, 2, 3))))).tolist() == [[[1, 2, 3]]]
    with pytest.raises(InvalidInput, match="0x5"):
        load_image(Image.new("RGB", (0, 5)))


def test_limits_validate_themselves():
    with pytest.raises(ValueError):
        ImageLimits(max_bytes=0)
    with pytest.raises(ValueError):
        ImageLimits(fetch_timeout=0)


# --- colour modes, orientation, animation ------------------------------------------------------


def decoded(image: Image.Image, fmt: str = "PNG") -> list:
    return pixels(load_image(encode(image, fmt))).reshape(-1, 3).tolist()


def test_alpha_is_composited_on_white():
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(255, 0, 0, 255), (0, 0, 255, 0), (0, 255, 0, 128)])
    opaque, clear, half = decoded(rgba)
    assert opaque == [255, 0, 0] and clear == [255, 255, 255]
    assert abs(half[0] - 127) <= 1 and half[1] == 255 and abs(half[2] - 127) <= 1
    grey_alpha = Image.new("LA", (2, 1))
    grey_alpha.putdata([(100, 255), (0, 0)])
    assert decoded(grey_alpha) == [[100, 100, 100], [255, 255, 255]]


def test_palette_with_transparency():
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255])
    palette.putdata([0, 1])
    palette.info["transparency"] = 1
    for fmt in ("PNG", "GIF"):
        assert decoded(palette, fmt) == [[255, 0, 0], [255, 255, 255]]


def test_grey_bilevel_and_16_bit():
    grey = Image.new("L", (2, 1))
    grey.putdata([7, 200])
    assert decoded(grey) == [[7, 7, 7], [200, 200, 200]]
    assert decoded(Image.new("1", (1, 1), 1)) == [[255, 255, 255]]
    deep = Image.fromarray(np.array([[0, 257 * 100, 65535]], dtype=np.uint16))
    assert decoded(deep) == [[0, 0, 0], [100, 100, 100], [255, 255, 255]]


def test_cmyk():
    cmyk = Image.new("CMYK", (3, 1))
    cmyk.putdata([(0, 0, 0, 0), (0, 0, 0, 255), (255, 0, 0, 0)])
    assert decoded(cmyk, "TIFF") == [[255, 255, 255], [0, 0, 0], [0, 255, 255]]


@pytest.mark.parametrize(("orientation", "turns"), [(1, 0), (3, 2), (6, -1), (8, 1)])
def test_exif_orientation_is_applied(sample: np.ndarray, orientation: int, turns: int):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(sample), exif=exif.tobytes())
    assert np.array_equal(pixels(load_image(data)), np.rot90(sample, turns))


def test_animated_images_give_their_first_frame():
    red, blue = Image.new("RGB", (4, 4), (255, 0, 0)), Image.new("RGB", (4, 4), (0, 0, 255))
    for fmt in ("GIF", "PNG", "WEBP"):
        data = encode(red, fmt, save_all=True, append_images=[blue], lossless=True)
        assert decoded_frames(data) > 1, fmt
        assert set(map(tuple, pixels(load_image(data)).reshape(-1, 3))) == {(255, 0, 0)}, fmt


def decoded_frames(data: bytes) -> int:
    return getattr(Image.open(io.BytesIO(data)), "n_frames", 1)
