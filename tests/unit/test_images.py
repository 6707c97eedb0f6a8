from __future__ import annotations

import base64
import io

import pytest
from PIL import Image as PILImage

from facegate import images
from facegate.errors import ImageTooLarge, InvalidImage, UnsupportedImageFormat


def encode(img: PILImage.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP"])
def test_supported_formats_are_read_by_content(fmt):
    data = encode(PILImage.new("RGB", (40, 30), (1, 2, 3)), fmt)
    img = images.load_bytes(data)
    assert (img.format, img.width, img.height) == (fmt, 40, 30)
    assert img.sha256 == __import__("hashlib").sha256(data).hexdigest()


def test_format_comes_from_content_not_the_data_uri_claim():
    png = encode(PILImage.new("RGB", (32, 32)), "PNG")
    text = "data:image/jpeg;base64," + base64.b64encode(png).decode()
    assert images.load_bytes(images.decode_base64(text)).format == "PNG"


def test_base64_with_line_breaks_and_urlsafe_alphabet():
    data = encode(PILImage.new("RGB", (32, 32), (250, 250, 250)), "JPEG")
    wrapped = "\n".join(base64.b64encode(data).decode()[i : i + 76] for i in range(0, 400, 76))
    assert images.decode_base64(wrapped)[:3] == data[:3]
    urlsafe = base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert images.decode_base64(urlsafe) == data


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", InvalidImage),
        (b"GIF89a" + b"\0" * 64, UnsupportedImageFormat),
        (b"%PDF-1.7 not an image", InvalidImage),
        (b"\xff\xd8\xff\xe0" + b"\0" * 20, InvalidImage),  # JPEG magic, no image
        (b"\xff\xd8\xff" + b"\0" * (images.MAX_IMAGE_BYTES + 1), ImageTooLarge),
    ],
    ids=["empty", "gif", "pdf", "jpeg-magic-only", "oversized"],
)
def test_bad_bytes(data, error):
    with pytest.raises(error):
        images.load_bytes(data)


def test_truncated_png_is_caught_by_the_full_decode(face_bytes):
    data = face_bytes("32bit.png")
    with pytest.raises(InvalidImage, match="truncated or corrupt"):
        images.load_bytes(data[: len(data) // 2])


def test_rgba_png_is_flattened_to_rgb(face_bytes):
    img = images.load_bytes(face_bytes("32bit.png"))
    assert img.format == "PNG"
    assert img.pil().mode == "RGBA"
    assert img.rgb.shape == (img.height, img.width, 3)


def test_exif_orientation_is_applied():
    src = PILImage.new("RGB", (60, 20), (9, 9, 9))
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    img = images.load_bytes(encode(src, "JPEG", exif=exif))
    assert img.rgb.shape[:2] == (60, 20)


def test_repr_never_shows_bytes(face_bytes):
    img = images.load_bytes(face_bytes("obama.jpg"))
    assert "\\x" not in repr(img) and len(repr(img)) < 120


def test_decompression_bomb_is_refused():
    data = encode(PILImage.new("1", (8000, 6000)), "PNG")
    with pytest.raises(ImageTooLarge, match="megapixels"):
        images.load_bytes(data)


def test_fit_leaves_an_acceptable_image_alone(face_bytes):
    img = images.load_bytes(face_bytes("obama.jpg"))
    assert images.fit(img, images.ImageLimits(max_bytes=1024 * 1024)) is img


def test_fit_reencodes_and_downscales_to_the_limit(face_bytes):
    img = images.load_bytes(face_bytes("32bit.png"))  # 887 KB RGBA PNG
    limits = images.ImageLimits(formats=frozenset({"JPEG"}), max_base64_bytes=100 * 1024)
    out = images.fit(img, limits)
    assert out.format == "JPEG"
    assert len(base64.b64encode(out.data)) <= 100 * 1024
    assert images.load_bytes(out.data).width == out.width


def test_fit_honours_a_per_image_budget(face_bytes):
    img = images.load_bytes(face_bytes("biden.jpg"))
    out = images.fit(img, images.ImageLimits(), budget=150 * 1024)
    assert len(out.data) <= 150 * 1024


def test_fit_gives_up_with_image_too_large(face_bytes):
    img = images.load_bytes(face_bytes("obama.jpg"))
    with pytest.raises(ImageTooLarge):
        images.fit(img, images.ImageLimits(max_bytes=2000))
