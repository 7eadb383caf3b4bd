"""Media checks: formats are sniffed from bytes, sizes are enforced, names are corrected."""

import pytest

from bot.domain.media import (
    MAX_IMAGE_BYTES,
    InvalidMedia,
    check_audio,
    check_declared_size,
    check_image,
    sniff_image,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 64
BMP = b"BM" + b"\x00" * 64
WAV = b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\x00" * 64
MP3_ID3 = b"ID3\x04" + b"\x00" * 64
MP3_FRAME = b"\xff\xfb\x90\x00" + b"\x00" * 64


@pytest.mark.parametrize(
    ("data", "kind"),
    [(PNG, "png"), (JPEG, "jpeg"), (WEBP, "webp"), (BMP, "bmp"), (b"GIF89a", None)],
)
def test_sniff_image(data: bytes, kind: str | None) -> None:
    assert sniff_image(data) == kind


def test_image_type_comes_from_the_bytes_not_the_name() -> None:
    media = check_image("holiday.gif", PNG)
    assert (media.filename, media.content_type) == ("holiday.png", "image/png")
    assert check_image("photo", JPEG).filename == "photo.jpg"


@pytest.mark.parametrize("data", [b"%PDF-1.7 ...", b"GIF89a....", WAV, b"<svg/>"])
def test_non_images_are_refused_with_a_friendly_message(data: bytes) -> None:
    with pytest.raises(InvalidMedia, match="isn't an image I can use"):
        check_image("cat.png", data)


def test_empty_and_huge_images_are_refused() -> None:
    with pytest.raises(InvalidMedia, match="empty"):
        check_image("cat.png", b"")
    with pytest.raises(InvalidMedia, match=r"limit is 10\.0 MB"):
        check_image("cat.png", PNG + b"\x00" * MAX_IMAGE_BYTES)


@pytest.mark.parametrize(("data", "ext"), [(WAV, "wav"), (MP3_ID3, "mp3"), (MP3_FRAME, "mp3")])
def test_audio_formats(data: bytes, ext: str) -> None:
    assert check_audio("track.bin", data).filename == f"track.{ext}"


def test_non_audio_is_refused() -> None:
    with pytest.raises(InvalidMedia, match="WAV or MP3"):
        check_audio("song.mp3", PNG)


def test_declared_size_is_checked_before_download() -> None:
    check_declared_size("image", 100, 100)
    with pytest.raises(InvalidMedia, match=r"That image is 0\.0 MB"):
        check_declared_size("image", 101, 100)
