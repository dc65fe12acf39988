"""Image references → upright RGB PIL images, safely.

A reference is a `data:` URI, raw base64 image bytes, an http(s) URL, a local path (only when
the caller allows it), raw bytes, or an already-open `PIL.Image.Image`. Every path is bounded:

* encoded size is capped (`max_bytes`), for downloads while streaming;
* URL fetches have one overall deadline (DNS, redirects and body included), follow a few
  redirects, and pass an address guard on every hop; the connection goes to the very address
  the guard approved (no second DNS lookup for a rebinding attack to exploit), and proxy
  settings from the environment are ignored (the guard must see the real destination);
* the pixel count is read from the header and checked before any raster is decoded
  (decompression bombs); PIL's own process-wide `Image.MAX_IMAGE_PIXELS` check stays on as
  a backstop and its `DecompressionBombError` is reported like ours;
* only common web/camera formats are decoded;
* a data URI's declared image type must match the bytes (`data:image/png` holding a JPEG is
  refused: a client that mislabels its data may have sent the wrong data).

Bad input raises `InvalidInput` (HTTP 422); input over a limit raises `InputTooLarge` (413).
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import httpx
import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from polyseek.errors import InputTooLarge, InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ImageSource = str | bytes | Image.Image

MiB = 1024 * 1024


@dataclass(frozen=True)
class ImageLimits:
    """What loading one image may cost, and where images may come from.

    Defaults:
        max_bytes: 20 MiB of encoded image (download, decoded base64, or file).
        max_pixels: 50 megapixels (width * height), enough for a 50 MP phone photo; an RGB
            image at the cap takes 150 MB of memory.
        min_side: 1 pixel; whether an image is too small is the model processor's call.
        fetch_timeout: 10 s for a whole URL fetch: DNS, every redirect hop, and the body
            (checked between reads; each read also times out).
        max_redirects: 3 hops, each re-checked by the address guard.
        allow_private_urls: False. When True, loopback, private (RFC 1918, ULA, CGNAT) and
            link-local addresses may be fetched; unspecified, multicast and reserved addresses
            never are, since no image server lives there.
        allow_local_paths: False: a server must not read its own disk on request.
        formats: PIL formats that are decoded; anything else is refused unparsed.
        max_pdf_pages: 64 pages in one PDF input (`inputs.pdf`), which shares these limits:
            `max_bytes` for the file, `max_pixels` for each rendered page.
    """

    max_bytes: int = 20 * MiB
    max_pixels: int = 50_000_000
    min_side: int = 1
    fetch_timeout: float = 10.0
    max_redirects: int = 3
    allow_private_urls: bool = False
    allow_local_paths: bool = False
    formats: tuple[str, ...] = ("PNG", "JPEG", "MPO", "GIF", "WEBP", "BMP", "TIFF", "AVIF")
    max_pdf_pages: int = 64

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.max_pixels, self.min_side, self.max_pdf_pages) < 1:
            raise ValueError("max_bytes, max_pixels, min_side and max_pdf_pages must be positive")
        if self.fetch_timeout <= 0 or self.max_redirects < 0:
            raise ValueError("fetch_timeout must be positive and max_redirects >= 0")


DEFAULT_LIMITS = ImageLimits()

# a data URI's declared type -> the PIL formats its bytes may be; types that say nothing about
# the format (none, image/*, application/octet-stream) are not checked
_MIME_FORMATS: dict[str, frozenset[str]] = {
    mime: frozenset(formats) for formats, mimes in [
        (("PNG",), ("image/png", "image/x-png", "image/apng")),
        (("JPEG", "MPO"), ("image/jpeg", "image/jpg", "image/pjpeg", "image/mpo")),
        (("GIF",), ("image/gif",)),
        (("WEBP",), ("image/webp",)),
        (("BMP",), ("image/bmp", "image/x-bmp", "image/x-ms-bmp")),
        (("TIFF",), ("image/tiff", "image/tif")),
        (("AVIF",), ("image/avif",)),
    ] for mime in mimes
}
_UNTYPED = frozenset({"", "image", "image/*", "application/octet-stream"})
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/_\-\s]+=*\s*")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_RESOLVER = ThreadPoolExecutor(max_workers=8, thread_name_prefix="polyseek-dns")
_HEADERS = {
    "User-Agent": "polyseek-image-fetch",
    "Accept-Encoding": "identity",  # images and PDFs are compressed already; no gzip bombs
}
# what a fetch asks for, by the kind of thing it reads (error messages name the kind too)
_ACCEPT = {"image": "image/*", "PDF": "application/pdf"}


# --- entry point --------------------------------------------------------------------------


def load_image(source: ImageSource, limits: ImageLimits = DEFAULT_LIMITS) -> Image.Image:
    """Load any supported image reference as a fully decoded, upright RGB image.

    A PIL image that is already upright RGB is returned as is. (`runtime.inputs` names the
    request item in error messages.)
    """
    if isinstance(source, Image.Image):
        return normalize_image(source, limits)
    if isinstance(source, bytes | bytearray | memoryview):
        return decode_image_bytes(bytes(source), limits)
    if isinstance(source, str):
        data, origin = read_reference(source, limits)
        declared = data_uri_type(source) if source.strip()[:5].lower() == "data:" else None
        try:
            return decode_image_bytes(data, limits, declared)
        except InvalidInput as error:
            raise InvalidInput(f"{origin}: {error}") from None
    kind = type(source).__name__
    raise InvalidInput(f"expected an image reference, bytes or a PIL image, not {kind}")


def read_reference(source: str, limits: ImageLimits, kind: str = "image") -> tuple[bytes, str]:
    """The encoded bytes behind a reference to an image (or a PDF: `kind="PDF"`), within
    `limits` and behind the URL guard, and how to name the reference in an error message."""
    text = source.strip()
    if not text:
        raise InvalidInput(f"{kind} reference is empty")
    if text[:5].lower() == "data:":
        return decode_data_uri(text, limits.max_bytes, kind), "data URI"
    scheme = _URL_SCHEME.match(text)
    if scheme:
        if scheme.group(1).lower() in ("http", "https"):
            return fetch_url(text, limits, kind), f"{kind} URL {_show(text)}"
        raise InvalidInput(f"unsupported URL scheme {scheme.group(1)!r}: only http(s) is fetched")
    if limits.allow_local_paths and _is_file(text):
        return read_local_file(text, limits.max_bytes, kind), f"{kind} file {_show(text)}"
    if _BASE64_TEXT.fullmatch(text):
        path_like = "/" in text and len(text) < 256 and not limits.allow_local_paths
        hint = f" ({_show(text)}; local file paths are disabled)" if path_like else ""
        return decode_base64(text, limits.max_bytes, kind), f"base64 {kind} data{hint}"
    expected = f"an http(s) URL, a data URI, base64 {kind} data" + (
        " or an existing file" if limits.allow_local_paths else " (local file paths are disabled)"
    )
    raise InvalidInput(f"{kind} reference {_show(text)} is not {expected}")


# --- encoded bytes from each kind of source ------------------------------------------------


def decode_data_uri(uri: str, max_bytes: int = DEFAULT_LIMITS.max_bytes,
                    kind: str = "image") -> bytes:
    """The payload of a `data:[<type>][;base64],<data>` URI (base64 or percent-encoded)."""
    header, comma, payload = uri.partition(",")
    if not comma:
        raise InvalidInput("malformed data URI: no ',' before the data")
    params = [p.strip().lower() for p in header[5:].split(";")[1:]]
    if "base64" in params:
        return decode_base64(payload, max_bytes, kind)
    data = urllib.parse.unquote_to_bytes(payload)
    _check_byte_size(len(data), max_bytes, kind)
    return data


def data_uri_type(uri: str) -> str:
    """The media type a `data:` URI declares, lower-cased ("" when it declares none)."""
    header = uri.strip().partition(",")[0]
    return header[5:].split(";")[0].strip().lower()


def check_declared_type(declared: str | None, image_format: str | None) -> None:
    """Refuse bytes of one format sent under another format's media type."""
    if declared is None or declared in _UNTYPED:
        return
    if image_format not in _MIME_FORMATS.get(declared, frozenset()):
        actual = Image.MIME.get(image_format or "", image_format or "unknown")
        raise InvalidInput(f"declared type {declared} does not match the data, which is "
                           f"{image_format} ({actual})")


def decode_base64(text: str, max_bytes: int = DEFAULT_LIMITS.max_bytes,
                  kind: str = "image") -> bytes:
    """Decode standard or URL-safe base64, tolerating line breaks and missing padding."""
    compact = "".join(text.split()).translate(str.maketrans("-_", "+/"))
    _check_byte_size(len(compact) * 3 // 4, max_bytes, kind)
    if "=" not in compact:
        compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidInput(f"invalid base64 {kind} data: {error}") from None


def read_local_file(path: str | Path, max_bytes: int = DEFAULT_LIMITS.max_bytes,
                    kind: str = "image") -> bytes:
    """Read at most `max_bytes` of a local file (callers decide whether paths are allowed)."""
    try:
        with open(path, "rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as error:
        raise InvalidInput(f"cannot read {kind} file {_show(str(path))}: {error.strerror}"
                           ) from None
    _check_byte_size(len(data), max_bytes, kind)
    return data


def _is_file(text: str) -> bool:
    try:
        return len(text) < 4096 and Path(text).is_file()
    except (OSError, ValueError):  # name too long, NUL byte, ...
        return False


def _check_byte_size(size: int, max_bytes: int, kind: str = "image") -> None:
    if size > max_bytes:
        raise InputTooLarge(f"{kind} is larger than the {max_bytes:,}-byte limit")


def _show(text: str, limit: int = 120) -> str:
    """A reference for an error message, shortened (data URIs and base64 can be megabytes)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


# --- URLs: guard and fetch -----------------------------------------------------------------


def check_url_allowed(
    url: str, allow_private: bool = False, timeout: float | None = None
) -> list[IPAddress]:
    """Validate an http(s) URL and resolve its host; the addresses it may be fetched from.

    Refuses other schemes, and hosts resolving to any loopback, private, link-local or
    otherwise non-global address unless `allow_private` (IPv4-mapped, 6to4 and NAT64 IPv6
    addresses are judged by the IPv4 address they embed). Unspecified, multicast and
    reserved addresses are always refused.
    """
    parsed = _parse_url(url)
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = _resolve(host.strip("[]"), port, timeout)
    for address in addresses:
        reason = address_refusal(address, allow_private)
        if reason:
            private = address_refusal(address, allow_private=True) is None
            why = "private URLs are disabled" if private else "never fetched"
            raise InvalidInput(f"URL {_show(url)} resolves to {reason} address {address}: {why}")
    return addresses


def address_refusal(address: IPAddress, allow_private: bool = False) -> str | None:
    """Why `address` must not be fetched from (e.g. "loopback"), or None if it may."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return address_refusal(embedded, allow_private)
    never = {
        "unspecified": address.is_unspecified,
        "multicast": address.is_multicast,
        "reserved": address.is_reserved and not address.is_loopback,  # ::1 is in ::/8
    }
    for kind, hit in never.items():
        if hit:
            return kind
    if allow_private:
        return None
    for kind in ("loopback", "link_local", "private"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if address.is_global else "non-global"


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped or address.sixtofour:
        return address.ipv4_mapped or address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _parse_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as error:
        raise InvalidInput(f"invalid URL {_show(url)}: {error}") from None
    if parsed.scheme not in ("http", "https"):
        raise InvalidInput(f"unsupported URL scheme in {_show(url)}: only http(s) is fetched")
    if not parsed.host:
        raise InvalidInput(f"URL {_show(url)} has no host")
    return parsed


def _resolve(host: str, port: int, timeout: float | None) -> list[IPAddress]:
    """Resolve `host` (IP literal or name) in a worker thread, so a slow DNS cannot hang us."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    future = _RESOLVER.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=timeout)
    except FutureTimeout:
        raise InvalidInput(f"DNS lookup of {host!r} timed out") from None
    except (OSError, UnicodeError) as error:
        raise InvalidInput(f"cannot resolve host {host!r}: {error}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def fetch_url(url: str, limits: ImageLimits = DEFAULT_LIMITS, kind: str = "image") -> bytes:
    """Download an image (or a PDF) over http(s) within `limits`; every redirect hop is
    re-checked."""
    deadline = time.monotonic() + limits.fetch_timeout
    current = _parse_url(url)
    for hop in range(limits.max_redirects + 1):
        try:
            addresses = check_url_allowed(
                str(current), limits.allow_private_urls, _remaining(deadline, url, limits, kind)
            )
        except InvalidInput as error:
            if hop == 0:
                raise
            raise InvalidInput(f"{error} (redirected from {_show(url)})") from None
        try:
            with _get_pinned(current, addresses, _remaining(deadline, url, limits, kind),
                             _ACCEPT.get(kind, "*/*")) as response:
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    current = current.join(location)
                    continue
                if response.status_code != 200:
                    reason = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
                    raise _fetch_error(url, reason, kind)
                return _read_capped(response, url, deadline, limits, kind)
        except httpx.TimeoutException:
            raise _timed_out(url, limits, kind) from None
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            raise _fetch_error(url, str(error) or type(error).__name__, kind) from None
    raise _fetch_error(url, f"more than {limits.max_redirects} redirects", kind)


@contextmanager
def _get_pinned(
    url: httpx.URL, addresses: list[IPAddress], timeout: float, accept: str = "image/*"
) -> Iterator[httpx.Response]:
    """Stream a GET of `url` from the first reachable approved address.

    The connection goes to the address itself, with the URL's Host header and TLS server name.
    One client per hop, so no connection is reused across host names.
    """
    with httpx.Client(
        verify=_tls_context(), timeout=timeout, follow_redirects=False, trust_env=False
    ) as client:
        *others, last = addresses
        for address in others:
            with suppress(httpx.ConnectError):
                response = client.send(_pinned_request(client, url, address, accept), stream=True)
                break
        else:
            response = client.send(_pinned_request(client, url, last, accept), stream=True)
        try:
            yield response
        finally:
            response.close()


@cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for all fetches (building one loads the CA bundle)."""
    return httpx.create_ssl_context()


def _pinned_request(client: httpx.Client, url: httpx.URL, address: IPAddress,
                    accept: str) -> httpx.Request:
    return client.build_request(
        "GET",
        url.copy_with(host=str(address)),
        headers={**_HEADERS, "Accept": accept, "Host": url.netloc.decode("ascii")},
        extensions={"sni_hostname": url.raw_host.decode("ascii")},
    )


def _read_capped(
    response: httpx.Response, url: str, deadline: float, limits: ImageLimits, kind: str
) -> bytes:
    """Stream the body, stopping as soon as it passes `max_bytes` or the deadline."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit():
        _check_byte_size(int(declared), limits.max_bytes, kind)
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        _check_byte_size(size, limits.max_bytes, kind)
        if time.monotonic() > deadline:
            raise _timed_out(url, limits, kind)
        chunks.append(chunk)
    return b"".join(chunks)


def _remaining(deadline: float, url: str, limits: ImageLimits, kind: str) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _timed_out(url, limits, kind)
    return remaining


def _timed_out(url: str, limits: ImageLimits, kind: str = "image") -> InvalidInput:
    return _fetch_error(url, f"timed out after {limits.fetch_timeout:g} s", kind)


def _fetch_error(url: str, reason: str, kind: str = "image") -> InvalidInput:
    return InvalidInput(f"cannot fetch {kind} {_show(url)}: {reason}")


# --- decoding ------------------------------------------------------------------------------


def decode_image_bytes(data: bytes, limits: ImageLimits = DEFAULT_LIMITS,
                       declared: str | None = None) -> Image.Image:
    """Decode encoded image bytes to upright RGB, refusing bombs before decoding pixels;
    `declared`: the media type the bytes came with (a data URI's), checked against them."""
    _check_byte_size(len(data), limits.max_bytes)
    if not data:
        raise InvalidInput("image data is empty")
    try:
        image = Image.open(io.BytesIO(data), formats=_available_formats(limits.formats))
    except Image.DecompressionBombError as error:
        raise InputTooLarge(f"image has too many pixels: {error}") from None
    except UnidentifiedImageError:
        accepted = ", ".join(_available_formats(limits.formats))
        raise InvalidInput(f"not a supported image (accepted formats: {accepted})") from None
    except Exception as error:  # PIL plugins raise many types on malformed headers
        raise InvalidInput(f"corrupt image header: {error}") from None
    check_declared_type(declared, image.format)
    return normalize_image(image, limits)


def normalize_image(image: Image.Image, limits: ImageLimits = DEFAULT_LIMITS) -> Image.Image:
    """Check the header size, then decode the (first) frame and make it upright RGB."""
    check_dimensions(image.size, limits)
    try:
        image.load()
    except Exception as error:  # truncated or corrupt raster, closed file, ...
        raise InvalidInput(f"corrupt or truncated image: {error}") from None
    return to_rgb(_upright(image))


def check_dimensions(size: tuple[int, int], limits: ImageLimits = DEFAULT_LIMITS) -> None:
    """Refuse images with a side below `min_side` or more than `max_pixels` pixels."""
    width, height = size
    if min(width, height) < limits.min_side:
        raise InvalidInput(f"image is {width}x{height}; sides must be at least {limits.min_side}")
    if width * height > limits.max_pixels:
        raise InputTooLarge(
            f"image is {width}x{height} = {width * height:,} pixels, "
            f"over the {limits.max_pixels:,}-pixel limit"
        )


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any mode to RGB: transparency is composited on white; 16-bit grey is scaled
    to 8 bits (values above 65535 saturate); other modes use PIL's own conversion."""
    if image.mode == "RGB" and not image.has_transparency_data:
        return image
    try:
        if image.mode.startswith("I;16") or image.mode == "I":
            grey = (np.asarray(image).clip(0, 65535) >> 8).astype(np.uint8)
            return Image.fromarray(grey).convert("RGB")
        if image.has_transparency_data:
            rgba = image.convert("RGBA")
            white = Image.new("RGB", rgba.size, (255, 255, 255))
            white.paste(rgba, mask=rgba.getchannel("A"))
            return white
        return image.convert("RGB")
    except ValueError as error:
        raise InvalidInput(f"unsupported image mode {image.mode!r}: {error}") from None


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; unreadable EXIF leaves the pixels as stored."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        if orientation in (2, 3, 4, 5, 6, 7, 8):
            return ImageOps.exif_transpose(image)
    except Exception:  # malformed EXIF must not make a decodable image fail
        pass
    return image


@cache
def _available_formats(formats: tuple[str, ...]) -> tuple[str, ...]:
    """The requested formats this PIL build can read (unknown names would raise KeyError)."""
    Image.init()
    return tuple(name for name in formats if name.upper() in Image.OPEN)
