"""Checks on uploaded media, by their bytes rather than their declared type. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass

MAX_IMAGE_BYTES = (
    10 * 1024 * 1024
)  # the API's lower bound of "10–20 MB" (../shared/wavespeed-api.md)
MAX_AUDIO_BYTES = 15 * 1024 * 1024

IMAGE_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "bmp": "image/bmp", "webp": "image/webp"}
AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}


class InvalidMedia(ValueError):
    """A file the model cannot use; the message is friendly."""


@dataclass(frozen=True)
class MediaFile:
    """A file to upload to WaveSpeed's media endpoint."""

    filename: str
    data: bytes
    content_type: str


def sniff_image(data: bytes) -> str | None:
    """Name the image format from magic bytes: jpeg, png, bmp, webp, or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"BM") and len(data) > 26:
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def sniff_audio(data: bytes) -> str | None:
    """Name the audio format from magic bytes: wav, mp3, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data.startswith(b"ID3") or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def check_image(filename: str, data: bytes) -> MediaFile:
    """Accept a JPEG, PNG, BMP or WebP of at most 10 MB, whatever its name claims."""
    _check_size("image", data, MAX_IMAGE_BYTES)
    kind = sniff_image(data)
    if kind is None:
        raise InvalidMedia(
            f"`{filename}` isn't an image I can use: send a JPEG, PNG, BMP or WebP picture."
        )
    return MediaFile(_with_extension(filename, kind), data, IMAGE_TYPES[kind])


def check_audio(filename: str, data: bytes) -> MediaFile:
    """Accept a WAV or MP3 of at most 15 MB, whatever its name claims."""
    _check_size("audio file", data, MAX_AUDIO_BYTES)
    kind = sniff_audio(data)
    if kind is None:
        raise InvalidMedia(f"`{filename}` isn't a WAV or MP3 audio file.")
    return MediaFile(_with_extension(filename, kind), data, AUDIO_TYPES[kind])


def check_declared_size(what: str, size: int, limit: int) -> None:
    """Refuse a file by its declared size before downloading it."""
    if size > limit:
        raise InvalidMedia(f"That {what} is {_mib(size)}; the limit is {_mib(limit)}.")


def _check_size(what: str, data: bytes, limit: int) -> None:
    if not data:
        raise InvalidMedia(f"The {what} is empty.")
    check_declared_size(what, len(data), limit)


def _with_extension(filename: str, kind: str) -> str:
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    return f"{stem or 'upload'}.{'jpg' if kind == 'jpeg' else kind}"


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"
