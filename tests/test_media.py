"""Media checks: files are decoded, not sniffed; broken, tiny or odd files are refused with a
friendly sentence; oversized pictures are scaled down and re-encoded."""

import io
from collections.abc import Callable

import pytest
from PIL import Image

from bot.domain.media import (
    MAX_AUDIO_BYTES,
    MAX_IMAGE_BYTES,
    InvalidMedia,
    MediaLimits,
    check_audio,
    check_declared_size,
    check_image,
)
from tests.fakes.images import (
    animated_png,
    mp3,
    picture,
    png_header_only,
    png_signature_then_garbage,
    tiny_png,
    truncated_png,
    wav,
)

UNREADABLE = "isn't an image I can open"


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("fmt", "filename", "content_type"),
    [
        ("PNG", "cat.png", "image/png"),
        ("JPEG", "cat.jpg", "image/jpeg"),
        ("BMP", "cat.bmp", "image/bmp"),
        ("WEBP", "cat.webp", "image/webp"),
    ],
)
def test_a_picture_that_fits_is_uploaded_byte_for_byte(
    fmt: str, filename: str, content_type: str
) -> None:
    data = picture(fmt, 320, 240)
    media = check_image("cat.gif", data)
    assert (media.filename, media.content_type, media.data) == (filename, content_type, data)


def test_the_default_test_png_is_acceptable() -> None:
    assert check_image("cat.png", tiny_png()).data == tiny_png()


@pytest.mark.parametrize(
    "data",
    [
        png_signature_then_garbage(),
        truncated_png(),
        picture("JPEG", 640, 480, noise=True)[:-5000],
        picture("WEBP", 640, 480, noise=True)[:-2000],
        picture("BMP", 640, 480)[:-1000],
        b"%PDF-1.7 " + bytes(500),
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        wav(3),
    ],
    ids=["png-garbage", "png-truncated", "jpeg-cut", "webp-cut", "bmp-cut", "pdf", "svg", "wav"],
)
def test_files_that_do_not_decode_in_full_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidMedia, match=UNREADABLE):
        check_image("cat.png", data)


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "ICO"])
def test_other_image_formats_are_refused(fmt: str) -> None:
    with pytest.raises(InvalidMedia, match="JPEG, PNG, BMP or WebP"):
        check_image("cat.png", picture(fmt, 256, 256))


def test_empty_and_huge_files_are_refused() -> None:
    with pytest.raises(InvalidMedia, match="The image is empty"):
        check_image("cat.png", b"")
    with pytest.raises(InvalidMedia, match=r"limit is 10\.0 MB"):
        check_image("cat.png", tiny_png() + bytes(MAX_IMAGE_BYTES))


@pytest.mark.parametrize(("width", "height"), [(8000, 8000), (30_000, 30_000)])
def test_decompression_bombs_are_refused_before_decoding(width: int, height: int) -> None:
    with pytest.raises(InvalidMedia, match="too many pixels"):
        check_image("bomb.png", png_header_only(width, height))


@pytest.mark.parametrize(("width", "height"), [(239, 400), (400, 239), (8, 8)])
def test_small_pictures_are_refused(width: int, height: int) -> None:
    with pytest.raises(InvalidMedia, match=f"is {width}×{height} px.*at least 240 px on each side"):
        check_image("cat.png", tiny_png(width, height))


def test_the_minimum_side_is_a_limit() -> None:
    limits = MediaLimits(image_min_side_px=100)
    assert check_image("cat.png", tiny_png(100, 100), limits).data == tiny_png(100, 100)
    with pytest.raises(InvalidMedia, match="at least 300 px"):
        check_image("cat.png", tiny_png(), MediaLimits(image_min_side_px=300))


@pytest.mark.parametrize(
    ("fmt", "out_format", "filename", "content_type"),
    [
        ("PNG", "PNG", "cat.png", "image/png"),
        ("JPEG", "JPEG", "cat.jpg", "image/jpeg"),
        ("WEBP", "WEBP", "cat.webp", "image/webp"),
        ("BMP", "PNG", "cat.png", "image/png"),
    ],
)
def test_large_pictures_are_scaled_down_keeping_their_shape(
    fmt: str, out_format: str, filename: str, content_type: str
) -> None:
    media = check_image("cat.bin", picture(fmt, 2400, 1200))
    assert (media.filename, media.content_type) == (filename, content_type)
    image = decoded(media.data)
    assert (image.format, image.size) == (out_format, (2000, 1000))


def test_the_maximum_side_is_a_limit() -> None:
    media = check_image("cat.png", tiny_png(320, 480), MediaLimits(100, 300))
    assert decoded(media.data).size == (200, 300)


def test_scaling_keeps_transparency_and_flattens_palettes() -> None:
    assert decoded(check_image("a.png", picture("PNG", 2400, 2400, mode="RGBA")).data).mode == (
        "RGBA"
    )
    palette = decoded(check_image("a.png", picture("PNG", 2400, 2400, mode="P")).data)
    assert (palette.mode, palette.size) == ("RGB", (2000, 2000))


def test_a_picture_too_narrow_once_scaled_is_refused() -> None:
    with pytest.raises(InvalidMedia, match="too long and narrow"):
        check_image("strip.png", picture("PNG", 6000, 300))


def test_exif_orientation_is_applied() -> None:
    media = check_image("phone.jpg", picture("JPEG", 400, 300, exif_orientation=6))
    image = decoded(media.data)
    assert image.size == (300, 400)
    assert image.getexif().get(0x0112, 1) == 1


def test_animated_pictures_keep_their_first_frame() -> None:
    media = check_image("anim.png", animated_png(frames=3))
    image = decoded(media.data)
    assert not getattr(image, "is_animated", False)
    assert image.getpixel((0, 0)) == (0, 0, 0)


@pytest.mark.parametrize(("make", "filename"), [(wav, "track.wav"), (mp3, "track.mp3")])
@pytest.mark.parametrize("seconds", [3, 12, 30])
def test_audio_in_range_is_accepted(
    make: Callable[[float], bytes], filename: str, seconds: float
) -> None:
    data = make(seconds)
    media = check_audio("track.bin", data)
    assert (media.filename, media.data) == (filename, data)
    assert media.content_type == ("audio/wav" if filename.endswith("wav") else "audio/mpeg")


@pytest.mark.parametrize("make", [wav, mp3])
@pytest.mark.parametrize(("seconds", "shown"), [(1, "1.00"), (31, "31.00")])
def test_audio_out_of_range_is_refused(
    make: Callable[[float], bytes], seconds: float, shown: str
) -> None:
    with pytest.raises(
        InvalidMedia, match=rf"lasts {shown} s; custom audio must last 3–30 seconds"
    ):
        check_audio("song", make(seconds))


def test_the_audio_range_is_a_limit() -> None:
    check_audio("song.wav", wav(1), MediaLimits(audio_min_s=0.5, audio_max_s=2))
    with pytest.raises(InvalidMedia, match=r"must last 0\.5–2 seconds"):
        check_audio("song.wav", wav(3), MediaLimits(audio_min_s=0.5, audio_max_s=2))


@pytest.mark.parametrize(
    "data",
    [
        tiny_png(),
        b"\xff\xfb\x90\x64" + bytes(200),
        mp3(0.1)[:500] + png_signature_then_garbage(50_000),
        b"ID3\x04\x00\x00\x00\x00\x00\x00",
        b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(8),
    ],
    ids=["png", "one-mp3-frame", "mp3-then-garbage", "bare-id3", "broken-wav"],
)
def test_unreadable_audio_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidMedia, match="isn't a WAV or MP3 audio file"):
        check_audio("song.mp3", data)


def test_empty_and_huge_audio_is_refused() -> None:
    with pytest.raises(InvalidMedia, match="The audio file is empty"):
        check_audio("song.mp3", b"")
    with pytest.raises(InvalidMedia, match=r"limit is 15\.0 MB"):
        check_audio("song.mp3", bytes(MAX_AUDIO_BYTES + 1))


def test_declared_size_is_checked_before_download() -> None:
    check_declared_size("image", 100, 100)
    with pytest.raises(InvalidMedia, match=r"That image is 0\.0 MB"):
        check_declared_size("image", 101, 100)
