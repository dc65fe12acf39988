"""PDFs written byte by byte for tests: text pages, and pages behind a password (the PDF
standard security handler, revision 2: 40-bit RC4, as in the PDF 1.7 reference, 7.6.3)."""

from __future__ import annotations

import hashlib

# the padding string of the standard security handler
PAD = bytes.fromhex("28bf4e5e4e758a4164004e56fffa01082e2e00b6d0683e802f0ca9fe6453697a")
FILE_ID = bytes(range(16))


def rc4(key: bytes, data: bytes) -> bytes:
    state = list(range(256))
    j = 0
    for i in range(256):
        j = (j + state[i] + key[i % len(key)]) % 256
        state[i], state[j] = state[j], state[i]
    out, i, j = bytearray(), 0, 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + state[i]) % 256
        state[i], state[j] = state[j], state[i]
        out.append(byte ^ state[(state[i] + state[j]) % 256])
    return bytes(out)


def _padded(password: str) -> bytes:
    return (password.encode("latin-1") + PAD)[:32]


def _security(user: str, owner: str, permissions: int = -4) -> tuple[bytes, bytes, bytes]:
    """(file key, /O, /U) for revision 2 (algorithms 2, 3 and 4 of the reference)."""
    owner_value = rc4(hashlib.md5(_padded(owner)).digest()[:5], _padded(user))
    seed = _padded(user) + owner_value + permissions.to_bytes(4, "little", signed=True) + FILE_ID
    key = hashlib.md5(seed).digest()[:5]
    return key, owner_value, rc4(key, PAD)


def _escape(text: str) -> bytes:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")


def make_pdf(pages: list[str], *, user_password: str | None = None, owner_password: str = "o",
             size: tuple[float, float] = (612, 792)) -> bytes:
    """A PDF with one line of Helvetica text per page (an empty string: a blank page);
    with `user_password` (possibly ""), encrypted so that opening it needs that password."""
    key = None
    encrypt = b""
    if user_password is not None:
        key, owner_value, user_value = _security(user_password, owner_password)
        encrypt = (b"<< /Filter /Standard /V 1 /R 2 /Length 40 /P -4 /O <"
                   + owner_value.hex().encode() + b"> /U <" + user_value.hex().encode() + b"> >>")
    count = len(pages)
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + b" ".join(f"{4 + 2 * i} 0 R".encode() for i in range(count))
        + f"] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for i, text in enumerate(pages):
        number = 5 + 2 * i  # the content stream's object number
        stream = b"BT /F1 24 Tf 72 700 Td (" + _escape(text) + b") Tj ET" if text else b""
        if key is not None:
            object_key = hashlib.md5(key + number.to_bytes(3, "little") + b"\0\0").digest()[:10]
            stream = rc4(object_key, stream)
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {size[0]} {size[1]}] "
                       f"/Resources << /Font << /F1 3 0 R >> >> /Contents {number} 0 R >>"
                       .encode())
        objects.append(f"<< /Length {len(stream)} >>\nstream\n".encode() + stream
                       + b"\nendstream")
    if encrypt:
        objects.append(encrypt)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    trailer = f"<< /Size {len(objects) + 1} /Root 1 0 R".encode()
    if encrypt:
        trailer += f" /Encrypt {len(objects)} 0 R".encode()
    trailer += b" /ID [<" + FILE_ID.hex().encode() + b"> <" + FILE_ID.hex().encode() + b">] >>"
    out += b"trailer\n" + trailer + f"\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
