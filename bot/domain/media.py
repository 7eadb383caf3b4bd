"""Checks on uploaded media by decoding them, never by their name. Pure: no network or storage.

Images are decoded in full with Pillow; audio is parsed with mutagen. Both are CPU work, so async
callers should run check_image and check_audio in a worker thread.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import mutagen
from mutagen.mp3 import MP3
from mutagen.wave import WAVE
from PIL import Image, ImageOps

from bot.domain.wording import Sentence, WordedError

# The lower bound of the "10–20 MB" image limit on WaveSpeed's public API docs.
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_AUDIO_BYTES = 15 * 1024 * 1024
# Decoding holds every pixel in memory (up to 4 bytes each): refuse before loading anything
# bigger than 40 megapixels, about 160 MB. Pillow's own bomb check stops at twice 89 MP.
MAX_IMAGE_PIXELS = 40_000_000
JPEG_QUALITY = 92

# Pillow format name -> (format to upload, extension, content type). BMP is re-encoded as PNG
# (lossless and much smaller); MPO, the multi-picture JPEG of some cameras, as a plain JPEG.
_IMAGE_OUTPUTS = {
    "JPEG": ("JPEG", "jpg", "image/jpeg"),
    "MPO": ("JPEG", "jpg", "image/jpeg"),
    "PNG": ("PNG", "png", "image/png"),
    "BMP": ("PNG", "png", "image/png"),
    "WEBP": ("WEBP", "webp", "image/webp"),
}
_AS_UPLOADED = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "BMP": "bmp", "WEBP": "webp"}
_DECODERS = ["JPEG", "PNG", "BMP", "WEBP"]  # Pillow's JPEG decoder also opens MPO
_UPLOADED_TYPES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "bmp": "image/bmp",
    "webp": "image/webp",
}
_AUDIO_TYPES = {WAVE: ("wav", "audio/wav"), MP3: ("mp3", "audio/mpeg")}
_EXIF_ORIENTATION = 0x0112
_MIB = 1024 * 1024
_SIZE_KINDS = {"image": "image", "audio file": "audio"}  # what check_declared_size is told

# The refusals in English by catalogue key (bot/locales/en.json holds the same wording).
MESSAGES = {
    "media.empty.image": "The image is empty.",
    "media.empty.audio": "The audio file is empty.",
    "media.too_big.image": "That image is {size:.1f} MB; the limit is {limit:.1f} MB.",
    "media.too_big.audio": "That audio file is {size:.1f} MB; the limit is {limit:.1f} MB.",
    "media.unreadable_image": (
        "`{filename}` isn't an image I can open: send a complete JPEG, PNG, BMP or WebP picture."
    ),
    "media.too_many_pixels": "`{filename}` has too many pixels: send a picture under {mp} MP.",
    "media.too_small": (
        "`{filename}` is {width}×{height} px; the picture must be at least {min_side} px on "
        "each side."
    ),
    "media.too_narrow": (
        "`{filename}` is too long and narrow: scaled to at most {max_side} px, its short side "
        "is under {min_side} px."
    ),
    "media.unreadable_audio": "`{filename}` isn't a WAV or MP3 audio file I can read.",
    "media.audio_length": (
        "`{filename}` lasts {seconds:.2f} s; custom audio must last {min_s:g}–{max_s:g} seconds."
    ),
}


class InvalidMedia(WordedError):
    """A file the model cannot use; the message is friendly, and `sentences` say it in any
    language."""

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__([Sentence(key, values)], MESSAGES)


@dataclass(frozen=True)
class MediaLimits:
    """The ranges an upload must fit: image sides in pixels, audio duration in seconds."""

    image_min_side_px: int = 240
    image_max_side_px: int = 2000
    audio_min_s: float = 3.0
    audio_max_s: float = 30.0


@dataclass(frozen=True)
class MediaFile:
    """A file to upload to WaveSpeed's media endpoint."""

    filename: str
    data: bytes
    content_type: str


def check_image(filename: str, data: bytes, limits: MediaLimits = MediaLimits()) -> MediaFile:
    """Accept a JPEG, PNG, BMP or WebP that decodes in full and fits the limits.

    An image whose longer side exceeds the maximum is scaled down, upright per its EXIF
    orientation, and re-encoded; so is an animated image, reduced to its first frame. Anything
    else is uploaded byte for byte. Raises InvalidMedia with a friendly sentence.
    """
    _check_size("image", data, MAX_IMAGE_BYTES)
    image = _decode(filename, data)
    width, height = image.size
    if min(width, height) < limits.image_min_side_px:
        raise InvalidMedia(
            "media.too_small",
            filename=filename,
            width=width,
            height=height,
            min_side=limits.image_min_side_px,
        )
    fits = max(width, height) <= limits.image_max_side_px
    if fits and not getattr(image, "is_animated", False) and not _rotated(image):
        extension = _AS_UPLOADED[str(image.format)]
        return MediaFile(_renamed(filename, extension), data, _UPLOADED_TYPES[extension])
    return _reencode(filename, image, limits)


def check_audio(filename: str, data: bytes, limits: MediaLimits = MediaLimits()) -> MediaFile:
    """Accept a WAV or MP3 that mutagen can read and whose duration fits the limits.

    Raises InvalidMedia with a friendly sentence.
    """
    _check_size("audio file", data, MAX_AUDIO_BYTES)
    audio = _parse_audio(filename, data)
    seconds = audio.info.length
    if not limits.audio_min_s <= seconds <= limits.audio_max_s:
        raise InvalidMedia(
            "media.audio_length",
            filename=filename,
            seconds=seconds,
            min_s=limits.audio_min_s,
            max_s=limits.audio_max_s,
        )
    extension, content_type = _AUDIO_TYPES[type(audio)]
    return MediaFile(_renamed(filename, extension), data, content_type)


def check_declared_size(what: str, size: int, limit: int) -> None:
    """Refuse a file by its declared size before downloading it."""
    if size > limit:
        kind = _SIZE_KINDS[what]
        raise InvalidMedia(f"media.too_big.{kind}", size=size / _MIB, limit=limit / _MIB)


def _decode(filename: str, data: bytes) -> Image.Image:
    """Open and fully decode the first frame, or raise InvalidMedia."""
    unusable = InvalidMedia("media.unreadable_image", filename=filename)
    try:
        image = Image.open(io.BytesIO(data), formats=_DECODERS)
    except Image.DecompressionBombError:
        raise _too_many_pixels(filename) from None
    except Exception:  # Pillow's decoders raise many types on malformed input
        raise unusable from None
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise _too_many_pixels(filename)
    try:
        image.load()  # reads every pixel: a truncated or corrupt file fails here
    except Exception:
        raise unusable from None
    return image


def _too_many_pixels(filename: str) -> InvalidMedia:
    return InvalidMedia(
        "media.too_many_pixels", filename=filename, mp=MAX_IMAGE_PIXELS // 1_000_000
    )


def _rotated(image: Image.Image) -> bool:
    """Whether EXIF asks viewers to turn or mirror the image; the model may not."""
    return image.getexif().get(_EXIF_ORIENTATION, 1) != 1


def _reencode(filename: str, image: Image.Image, limits: MediaLimits) -> MediaFile:
    """The first frame, upright and within the maximum side, in the upload's format."""
    target, extension, content_type = _IMAGE_OUTPUTS[str(image.format)]
    icc_profile = image.info.get("icc_profile")
    frame = ImageOps.exif_transpose(image)
    if frame.mode not in _resizable_modes(target):
        # Palette images would be resized with the nearest-pixel filter; JPEG has no alpha
        has_alpha = "A" in frame.mode or "transparency" in frame.info
        frame = frame.convert("RGBA" if has_alpha and target != "JPEG" else "RGB")
        icc_profile = None  # the profile described the old colour space
    frame.thumbnail((limits.image_max_side_px,) * 2, Image.Resampling.LANCZOS)
    if min(frame.size) < limits.image_min_side_px:
        raise InvalidMedia(
            "media.too_narrow",
            filename=filename,
            max_side=limits.image_max_side_px,
            min_side=limits.image_min_side_px,
        )
    out = io.BytesIO()
    options: dict[str, Any] = {"quality": JPEG_QUALITY} if target in ("JPEG", "WEBP") else {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    frame.save(out, format=target, **options)
    return MediaFile(_renamed(filename, extension), out.getvalue(), content_type)


def _resizable_modes(target: str) -> tuple[str, ...]:
    return ("L", "RGB") if target == "JPEG" else ("L", "LA", "RGB", "RGBA")


def _parse_audio(filename: str, data: bytes) -> mutagen.FileType:
    """Read the WAV or MP3 headers, or raise InvalidMedia."""
    unusable = InvalidMedia("media.unreadable_audio", filename=filename)
    try:
        audio = mutagen.File(io.BytesIO(data), options=list(_AUDIO_TYPES))
    except mutagen.MutagenError:
        raise unusable from None
    # mutagen guesses MP3 from a single frame header; "sketchy" means no run of frames followed
    if audio is None or getattr(audio.info, "sketchy", False) or not audio.info.length:
        raise unusable
    return audio


def _check_size(what: str, data: bytes, limit: int) -> None:
    if not data:
        raise InvalidMedia(f"media.empty.{_SIZE_KINDS[what]}")
    check_declared_size(what, len(data), limit)


def _renamed(filename: str, extension: str) -> str:
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    return f"{stem or 'upload'}.{extension}"
