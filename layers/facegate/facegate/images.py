"""Image inputs: check once by content, decode pixels only where needed, fit to a vendor's limits.

An ``Image`` is bytes that were checked once (so a truncated file is caught here, not
at a vendor), with its real format read from the content, never from a name or a
data-URI's claimed type. Its SHA-256 is the only trace of it that facegate ever stores.

A JPEG is checked by its structure (``_check_jpeg``), not by decoding it: a vendor
that takes bytes needs no pixels of ours, and decoding costs ~10 ms per 250 KB where
the walk costs well under one. What a decode would refuse and the walk would not is
only damage inside the compressed data, which libjpeg itself mostly decodes with a
warning; pixels are decoded where they are used (fitting, the built-in engine), and a
decode that fails there is the same ``INVALID_IMAGE``. Other formats are decoded in
full once, as a check: PNG and WebP have no cheap structural end to test.

base64 goes through pybase64 (SIMD): the stdlib's codec costs ~7 ms per MB each way.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Literal

import pybase64

from facegate.errors import ImageTooLarge, InvalidImage, UnsupportedImageFormat

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy as np
    from PIL.Image import Image as PILImage

Format = Literal["JPEG", "PNG", "BMP", "WEBP"]
SUPPORTED_FORMATS: frozenset[Format] = frozenset({"JPEG", "PNG", "BMP", "WEBP"})

# Larger inputs are refused before decoding: API Gateway caps a payload at 10 MB anyway.
MAX_IMAGE_BYTES = 8 * 1024 * 1024
# A decompression bomb guard: 25 megapixels (a 6144x4096 photo) is far beyond any
# useful face photo, and bounds the worst decode (bench/image_cost_bench.py).
MAX_PIXELS = 25_000_000
MIN_SIDE = 16
# The built-in engine finds faces on a <= 1024 px copy and embeds from a 150 px chip:
# past this side, more decoded pixels only cost time and memory.
ENGINE_MAX_SIDE = 2048

_MAGIC: tuple[tuple[bytes, int, Format], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"BM", 0, "BMP"),
    (b"WEBP", 8, "WEBP"),
)
_DATA_URI = re.compile(r"^data:[\w.+-]+/[\w.+-]+(?:;[\w=-]+)*;base64,", re.IGNORECASE)
_NOT_B64 = re.compile(rb"[^A-Za-z0-9+/=\-_]")
_MAX_BASE64_CHARS = MAX_IMAGE_BYTES * 4 // 3 + 4


def sniff(data: bytes) -> Format | None:
    for magic, offset, fmt in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            if fmt == "WEBP" and not data.startswith(b"RIFF"):
                continue
            return fmt
    return None


def decode_base64(text: str) -> bytes:
    """Decode a base64 image, with or without a ``data:`` URI prefix and line breaks."""
    if len(text) <= _MAX_BASE64_CHARS:
        # Plain padded standard base64, what nearly every caller sends: one strict pass.
        # Anything else (a prefix, line breaks, the URL-safe alphabet, no padding)
        # fails it and takes the forgiving path below.
        try:
            data = pybase64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            pass
        else:
            if not data:
                raise InvalidImage("the image is empty")
            return data
    text = _DATA_URI.sub("", text.strip(), count=1)
    raw = re.sub(r"\s+", "", text).encode("ascii", "replace")
    if not raw:
        raise InvalidImage("the image is empty")
    if len(raw) > _MAX_BASE64_CHARS:
        raise ImageTooLarge(f"the image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
    if _NOT_B64.search(raw):
        raise InvalidImage("the image is not valid base64")
    if b"-" in raw or b"_" in raw:
        raw = raw.replace(b"-", b"+").replace(b"_", b"/")
    raw += b"=" * (-len(raw) % 4)
    try:
        return pybase64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImage("the image is not valid base64") from None


@dataclass(frozen=True, eq=False)
class Image:
    data: bytes
    format: Format
    width: int
    height: int

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def base64(self) -> str:
        return pybase64.b64encode_as_string(self.data)

    def pil(self, max_side: int | None = None) -> PILImage:
        """The decoded image. With ``max_side``, a larger JPEG is decoded at 1/2, 1/4 or
        1/8 scale (Pillow's ``draft``: the DCT does the downscale, at a fraction of a full
        decode's time and memory), never below ``max_side``; other formats in full."""
        from PIL import Image as PILModule

        img = PILModule.open(io.BytesIO(self.data))
        if max_side is not None and self.format == "JPEG" and max(img.size) > max_side:
            k = max_side / max(img.size)
            img.draft("RGB", (math.ceil(img.width * k), math.ceil(img.height * k)))
        try:
            img.load()
        except (OSError, SyntaxError, ValueError):  # damage the JPEG walk cannot see (module doc)
            raise InvalidImage(f"the {self.format} image is truncated or corrupt") from None
        return img

    @cached_property
    def rgb(self) -> np.ndarray:
        """H×W×3 uint8, alpha flattened onto white, EXIF orientation applied."""
        import numpy as np

        return np.asarray(_to_rgb(self.pil()))

    @cached_property
    def engine_rgb(self) -> tuple[np.ndarray, float]:
        """``(rgb, scale)`` for the built-in engine: like ``rgb``, but a JPEG larger than
        ``ENGINE_MAX_SIDE`` is decoded reduced; ``scale`` (1, 2, 4 or 8) maps its pixels
        back to the original's."""
        import numpy as np

        img = self.pil(ENGINE_MAX_SIDE)
        scale = self.width / img.width
        return np.asarray(_to_rgb(img)), scale

    def rgb_at_most(self, max_side: int) -> tuple[np.ndarray, float]:
        """``(rgb, scale)``: like ``rgb``, at most ``max_side`` pixels a side (a JPEG decoded
        reduced first, then resized); ``scale`` maps its pixels back to the original's."""
        import numpy as np

        img = _to_rgb(self.pil(max_side))
        if max(img.size) > max_side:
            img.thumbnail((max_side, max_side))
        return np.asarray(img), max(self.width, self.height) / max(img.size)

    def __repr__(self) -> str:  # never the bytes
        return f"Image({self.format} {self.width}x{self.height}, {len(self.data)} B, sha256={self.sha256[:12]}…)"


def _to_rgb(img: PILImage) -> PILImage:
    from PIL import Image as PILModule
    from PIL import ImageOps

    img = ImageOps.exif_transpose(img) or img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = PILModule.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB")


def load_bytes(data: bytes) -> Image:
    """Check ``data`` by content: a JPEG by its structure, any other format by decoding
    it fully once (module doc)."""
    if not data:
        raise InvalidImage("the image is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageTooLarge(f"the image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
    fmt = sniff(data)
    if fmt is None:
        if _looks_like_image(data):
            raise UnsupportedImageFormat("the image format is not supported; send JPEG, PNG, BMP or WebP")
        raise InvalidImage("the data is not an image")

    if fmt == "JPEG":
        width, height = _check_jpeg(data)  # its structure, to the end of the image (module doc)
        _check_pixels(width, height)
    else:
        width, height = _decode_fully(data, fmt)
    if min(width, height) < MIN_SIDE:
        raise InvalidImage(f"the image is too small ({width}x{height}); a face needs at least {MIN_SIDE} px")
    return Image(data=data, format=fmt, width=width, height=height)


def _check_pixels(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ImageTooLarge(f"the image has more than {MAX_PIXELS // 1_000_000} megapixels")


def _decode_fully(data: bytes, fmt: Format) -> tuple[int, int]:
    from PIL import Image as PILModule
    from PIL import UnidentifiedImageError

    try:
        with PILModule.open(io.BytesIO(data)) as img:
            _check_pixels(*img.size)  # before the decode: the bomb guard
            img.load()  # a whole decode: catches truncated and corrupt files
            return img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, PILModule.DecompressionBombError):
        raise InvalidImage(f"the {fmt} image is truncated or corrupt") from None


# JPEG markers (ITU-T T.81, B.1.1.3 and Table B.1).
_SOI, _EOI, _SOS, _TEM = 0xD8, 0xD9, 0xDA, 0x01
_RST = range(0xD0, 0xD8)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers; C4 DHT, C8 JPG, CC DAC are not
# Baseline, extended and progressive Huffman coding: what libjpeg decodes (the others,
# lossless, hierarchical and arithmetic, failed the full decode this walk replaces).
_SOF_DECODED = frozenset({0xC0, 0xC1, 0xC2})


def _check_jpeg(data: bytes) -> tuple[int, int]:
    """Walk a JPEG's marker segments to its end-of-image marker and return its (width,
    height) from its frame header; raise ``InvalidImage`` if it is cut short or a segment
    is not where the format puts one.

    T.81 B.1.1.2: each marker segment is 0xFF, a marker code and a 2-byte length; after
    a scan header (SOS), entropy-coded data in which 0xFF is followed only by 0x00
    (a stuffed byte), RSTn, or the next marker. A file cut anywhere loses its EOI; a
    frame header (SOF) must come before the first scan. Bytes after EOI are ignored,
    as every decoder does."""
    corrupt = InvalidImage("the JPEG image is truncated or corrupt")
    n, pos, size = len(data), 2, None
    while True:
        if pos + 2 > n:
            raise corrupt
        if data[pos] != 0xFF:
            raise corrupt
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == _EOI:
            if size is None:
                raise corrupt
            return size
        if marker == _SOI or marker == 0x00:
            raise corrupt
        if marker == _TEM or marker in _RST:  # no length
            pos += 2
            continue
        if pos + 4 > n:
            raise corrupt
        end = pos + 2 + _u16(data, pos + 2)
        if end - pos < 4 or end > n:
            raise corrupt
        if marker in _SOF:
            if marker not in _SOF_DECODED:
                raise UnsupportedImageFormat(
                    "send a baseline or progressive JPEG (lossless and arithmetic are not read)"
                )
            if size is not None or end - pos < 10:  # B.2.2: P, Y, X, Nf after the length
                raise corrupt
            precision, height, width = data[pos + 4], _u16(data, pos + 5), _u16(data, pos + 7)
            if precision != 8 or data[pos + 9] not in (1, 3, 4) or not (width and height):
                raise corrupt  # 12-bit, or a height left to a DNL marker: no decoder here reads them
            size = (width, height)
        pos = end
        if marker == _SOS:
            if size is None:
                raise corrupt
            pos = _scan_end(data, pos, corrupt)


def _u16(data: bytes, pos: int) -> int:
    return (data[pos] << 8) | data[pos + 1]


# In entropy-coded data, 0xFF followed by anything but a stuffed 0x00 or RSTn ends the scan
# (fill bytes 0xFF are left to the segment walk). A regex finds it at C speed.
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")


def _scan_end(data: bytes, pos: int, corrupt: InvalidImage) -> int:
    """The offset of the marker that ends the entropy-coded data starting at ``pos``."""
    m = _SCAN_END.search(data, pos)
    if m is None:
        raise corrupt
    return m.start()


def _looks_like_image(data: bytes) -> bool:
    head = data[:16]
    return head.startswith((b"GIF8", b"II*\x00", b"MM\x00*", b"\x00\x00\x00\x0cjP")) or head[4:12] in (
        b"ftypheic",
        b"ftypavif",
        b"ftypmif1",
        b"ftypheix",
    )


# --- fitting an image to a vendor ------------------------------------------------------


@dataclass(frozen=True)
class ImageLimits:
    """What a vendor accepts. Sizes are of the raw bytes or of their base64 text,
    whichever the vendor's doc states; ``total_bytes`` caps all images of one call."""

    formats: frozenset[Format] = SUPPORTED_FORMATS
    max_bytes: int | None = None
    max_base64_bytes: int | None = None
    total_bytes: int | None = None
    max_side: int | None = None

    def fits(self, image: Image, budget: int | None = None) -> bool:
        size = len(image.data)
        if image.format not in self.formats:
            return False
        if self.max_bytes is not None and size > self.max_bytes:
            return False
        if self.max_base64_bytes is not None and _b64_len(size) > self.max_base64_bytes:
            return False
        if budget is not None and size > budget:
            return False
        return self.max_side is None or max(image.width, image.height) <= self.max_side


def _b64_len(n: int) -> int:
    return 4 * ((n + 2) // 3)


def fit(image: Image, limits: ImageLimits, budget: int | None = None) -> Image:
    """Return ``image`` unchanged if the vendor takes it, else a JPEG re-encoding,
    downscaled step by step until it fits. A face stays recognisable far below any
    vendor's limit; ``IMAGE_TOO_LARGE`` only when even the smallest step fails."""
    if limits.fits(image, budget):
        return image
    cap = min(
        x
        for x in (
            limits.max_bytes,
            (limits.max_base64_bytes * 3 // 4) if limits.max_base64_bytes else None,
            budget,
            MAX_IMAGE_BYTES,
        )
        if x is not None
    )
    # Start where the result can fit: JPEG photos take roughly 0.2-0.6 bytes a pixel
    # at these qualities, so a side past sqrt(4 * cap) only buys encodes that fail.
    side = min(max(image.width, image.height), max(_MIN_FIT_SIDE, math.isqrt(cap * 4)))
    if limits.max_side:
        side = min(side, limits.max_side)
    src = _to_rgb(image.pil(side))
    for scale_side in _steps(side):
        candidate = src
        if max(src.size) > scale_side:
            candidate = src.copy()
            candidate.thumbnail((scale_side, scale_side))
        for quality in (92, 85, 75):
            buf = io.BytesIO()
            candidate.save(buf, format="JPEG", quality=quality, optimize=True)
            if buf.tell() <= cap:
                out = Image(data=buf.getvalue(), format="JPEG", width=candidate.width, height=candidate.height)
                if limits.fits(out, budget):
                    return out
    raise ImageTooLarge("the image cannot be made small enough for the vendor")


_MIN_FIT_SIDE = 320


def _steps(side: int) -> Iterator[int]:
    while side >= _MIN_FIT_SIDE:
        yield side
        side = int(side * 0.75)
    yield _MIN_FIT_SIDE
