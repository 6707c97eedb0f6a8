from __future__ import annotations

import base64
import io
import math

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


def test_the_pixel_cap_is_25_megapixels_inclusive():
    assert images.MAX_PIXELS == 25_000_000
    at_cap = encode(PILImage.new("1", (5000, 5000)), "PNG")
    assert images.load_bytes(at_cap).width == 5000
    over = encode(PILImage.new("1", (5001, 5000)), "PNG")
    with pytest.raises(ImageTooLarge, match="25 megapixels"):
        images.load_bytes(over)


def big_jpeg(face_bytes, factor: int) -> images.Image:
    src = PILImage.open(io.BytesIO(face_bytes("obama.jpg")))
    return images.load_bytes(encode(src.resize((src.width * factor, src.height * factor)), "JPEG", quality=90))


def test_a_large_jpeg_is_decoded_reduced_for_the_engine(face_bytes):
    img = big_jpeg(face_bytes, 4)  # 3640x4548: 1/2 scale still keeps 2048 px
    rgb, scale = img.engine_rgb
    assert scale == 2 and max(rgb.shape[:2]) >= images.ENGINE_MAX_SIDE
    assert rgb.shape[:2] == (math.ceil(img.height / 2), math.ceil(img.width / 2))
    # 1/2 of 3411 px would fall under 2048: decoded in full.
    assert big_jpeg(face_bytes, 3).engine_rgb[1] == 1
    small = images.load_bytes(face_bytes("obama.jpg"))
    assert small.engine_rgb[1] == 1 and small.engine_rgb[0].shape == small.rgb.shape


def test_non_jpeg_is_never_decoded_reduced(face_bytes):
    img = images.load_bytes(encode(PILImage.new("RGB", (3000, 2100), (5, 5, 5)), "PNG"))
    rgb, scale = img.engine_rgb
    assert scale == 1 and rgb.shape[:2] == (2100, 3000)


def test_fit_decodes_a_large_jpeg_reduced_and_still_fits(face_bytes, monkeypatch):
    img = big_jpeg(face_bytes, 4)  # 3640x4548, ~16.6 MP
    sides = []
    real_pil = images.Image.pil
    monkeypatch.setattr(
        images.Image, "pil", lambda self, max_side=None: sides.append(max_side) or real_pil(self, max_side)
    )
    out = images.fit(img, images.ImageLimits(max_bytes=1_000_000))
    assert len(out.data) <= 1_000_000 and max(out.width, out.height) >= 1000
    # The start side is bounded by the cap (sqrt(4 * 1,000,000) = 2000), not the 4548 px source.
    assert sides == [2000]


# --- the documented limits, just under and just over ------------------------------------


def padded_png(size: int) -> bytes:
    """A valid 32x32 PNG of exactly ``size`` bytes: bytes after IEND are not read."""
    png = encode(PILImage.new("RGB", (32, 32), (9, 9, 9)), "PNG")
    return png + b"\0" * (size - len(png))


def test_an_image_of_exactly_max_image_bytes_is_read_and_one_byte_more_is_too_large():
    assert images.MAX_IMAGE_BYTES == 8 * 1024 * 1024  # 8 MiB, as documented
    exact = padded_png(images.MAX_IMAGE_BYTES)
    assert images.load_bytes(exact).width == 32
    # The same bytes in base64 (with its padding) pass the length check before decoding.
    assert images.decode_base64(base64.b64encode(exact).decode()) == exact
    with pytest.raises(ImageTooLarge):
        images.load_bytes(padded_png(images.MAX_IMAGE_BYTES + 1))


def test_base64_longer_than_max_image_bytes_can_encode_is_refused_before_decoding():
    longest = images.MAX_IMAGE_BYTES * 4 // 3 + 4  # 8 MiB in base64, padding and slack included
    with pytest.raises(InvalidImage, match="base64"):  # not too large: read, then found invalid
        images.decode_base64("A" * (longest - 1) + "!")
    with pytest.raises(ImageTooLarge):
        images.decode_base64("A" * (longest + 1))


@pytest.mark.parametrize(("size", "ok"), [((16, 16), True), ((15, 40), False), ((40, 15), False)])
def test_a_side_of_min_side_is_read_and_one_pixel_less_is_too_small(size, ok):
    assert images.MIN_SIDE == 16
    data = encode(PILImage.new("RGB", size, (9, 9, 9)), "PNG")
    if ok:
        assert (images.load_bytes(data).width, images.load_bytes(data).height) == size
    else:
        with pytest.raises(InvalidImage, match="too small"):
            images.load_bytes(data)


# --- the JPEG check walks the structure instead of decoding ------------------------------


def _segments_without(data: bytes, marker: int) -> bytes:
    """``data`` with every marker segment of type ``marker`` before the first scan removed."""
    out, pos = bytearray(data[:2]), 2
    while data[pos + 1] != 0xDA:
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4])
        if data[pos + 1] != marker:
            out += data[pos:end]
        pos = end
    return bytes(out + data[pos:])


def test_a_jpeg_cut_anywhere_is_refused(face_bytes):
    data = face_bytes("obama.jpg")
    for cut in [*range(3, 400, 7), *range(400, len(data) - 1, len(data) // 97), len(data) - 1]:
        with pytest.raises(InvalidImage, match="truncated or corrupt"):
            images.load_bytes(data[:cut])


@pytest.mark.parametrize(
    "options",
    [{"progressive": True}, {"restart_marker_blocks": 4}, {"quality": 100, "subsampling": 0}, {}],
    ids=["progressive", "restart-markers", "q100-444", "baseline"],
)
def test_valid_jpegs_pass_the_walk(options):
    src = PILImage.radial_gradient("L").convert("RGB").resize((300, 200))
    data = encode(src, "JPEG", **options)
    img = images.load_bytes(data)
    assert (img.width, img.height) == (300, 200)
    assert images.load_bytes(data + b"\0trailing bytes after EOI").width == 300  # as every decoder ignores them


def test_a_jpeg_whose_scan_comes_before_its_frame_is_refused():
    data = encode(PILImage.new("RGB", (40, 30), (1, 2, 3)), "JPEG")
    with pytest.raises(InvalidImage):
        images.load_bytes(_segments_without(data, 0xC0))  # no SOF0 left


def test_a_stray_marker_inside_the_scan_is_refused():
    data = bytearray(encode(PILImage.radial_gradient("L").convert("RGB"), "JPEG"))
    sos = data.index(b"\xff\xda")
    scan = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4])
    data[scan + 10 : scan + 12] = b"\xff\xd8"  # a second SOI in the entropy-coded data
    with pytest.raises(InvalidImage):
        images.load_bytes(bytes(data))


def test_damage_only_a_decode_sees_is_invalid_image_where_pixels_are_decoded():
    # Without its quantization tables the structure is intact, so the check passes it (as
    # a vendor taking bytes gets it); fitting or the engine decode it and must say why.
    data = _segments_without(encode(PILImage.radial_gradient("L").convert("RGB"), "JPEG"), 0xDB)
    img = images.load_bytes(data)
    with pytest.raises(InvalidImage, match="truncated or corrupt"):
        images.fit(img, images.ImageLimits(max_side=100))
    with pytest.raises(InvalidImage, match="truncated or corrupt"):
        _ = img.engine_rgb


def test_plain_base64_takes_the_strict_fast_path_and_everything_else_still_decodes():
    data = encode(PILImage.new("RGB", (32, 32), (250, 250, 250)), "JPEG")
    text = base64.b64encode(data).decode()
    assert images.decode_base64(text) == data
    assert images.decode_base64(f"  data:image/jpeg;base64,{text}\n") == data
    assert images.decode_base64(text.rstrip("=")) == data
    for bad in ("not base64!", text[:-4] + "@@@@", "é" + text):
        with pytest.raises(InvalidImage, match="not valid base64"):
            images.decode_base64(bad)
    with pytest.raises(InvalidImage, match="empty"):
        images.decode_base64("")


def _with_frame(data: bytes, *, marker: int | None = None, size: tuple[int, int] | None = None) -> bytes:
    """``data`` with its frame header's marker or (width, height) rewritten."""
    out = bytearray(data)
    sof = next(i for i in range(2, len(out) - 1) if out[i] == 0xFF and out[i + 1] in (0xC0, 0xC1, 0xC2))
    if marker is not None:
        out[sof + 1] = marker
    if size is not None:
        out[sof + 5 : sof + 9] = size[1].to_bytes(2) + size[0].to_bytes(2)
    return bytes(out)


def test_a_jpeg_s_size_is_its_frame_header_s_and_the_pixel_cap_holds_without_a_decode():
    data = encode(PILImage.new("RGB", (64, 48), (5, 6, 7)), "JPEG")
    assert (images.load_bytes(data).width, images.load_bytes(data).height) == (64, 48)
    with pytest.raises(ImageTooLarge, match="megapixels"):
        images.load_bytes(_with_frame(data, size=(6000, 5000)))
    with pytest.raises(InvalidImage):
        images.load_bytes(_with_frame(data, size=(64, 0)))  # a height left to a DNL marker


@pytest.mark.parametrize("marker", [0xC3, 0xC9, 0xCA], ids=["lossless", "arithmetic", "arithmetic-progressive"])
def test_jpeg_codings_no_decoder_here_reads_are_refused(marker):
    data = encode(PILImage.new("RGB", (64, 48), (5, 6, 7)), "JPEG")
    with pytest.raises(UnsupportedImageFormat):
        images.load_bytes(_with_frame(data, marker=marker))
