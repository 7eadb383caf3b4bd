"""Real media files made in code, valid or broken on purpose, for tests."""

from __future__ import annotations

import io
import math
import random
import struct
import wave
import zlib

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, joint stereo, no CRC, no padding: 417-byte frames
# of 1152 samples. An all-zero body is a valid silent frame.
MP3_FRAME_HEADER = bytes.fromhex("FFFB9064")
MP3_FRAME_BYTES = 417
MP3_BITRATE = 128_000


def picture(
    fmt: str = "PNG",
    width: int = 320,
    height: int = 240,
    *,
    mode: str = "RGB",
    noise: bool = False,
    exif_orientation: int | None = None,
) -> bytes:
    """An image in a Pillow format (PNG, JPEG, BMP, WEBP, GIF…): a gradient, or seeded noise."""
    if noise:
        image = Image.frombytes("RGB", (width, height), _random_bytes(width * height * 3))
    else:
        image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    image = image.convert(mode)
    out = io.BytesIO()
    options = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        options["exif"] = exif.tobytes()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def tiny_png(width: int = 320, height: int = 240) -> bytes:
    """A small valid PNG; the default size passes the default minimum side."""
    return picture("PNG", width, height)


def animated_png(width: int = 320, height: int = 240, frames: int = 3) -> bytes:
    """An APNG whose frames differ in colour."""
    images = [Image.new("RGB", (width, height), (80 * i, 0, 0)) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, format="PNG", save_all=True, append_images=images[1:], duration=100)
    return out.getvalue()


def truncated_png(width: int = 320, height: int = 240) -> bytes:
    """A noisy PNG cut in the middle of its pixel data: the header still reads fine."""
    data = picture("PNG", width, height, noise=True)
    return data[: len(data) // 2]


def png_signature_then_garbage(size: int = 4096) -> bytes:
    """The eight PNG signature bytes followed by random bytes."""
    return PNG_SIGNATURE + _random_bytes(size)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size but holds no pixels: opening reads only the header."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IEND", b"")


def wav(seconds: float, rate: int = 8000) -> bytes:
    """A mono 16-bit PCM WAV of silence."""
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(b"\0\0" * round(seconds * rate))
    return out.getvalue()


def mp3(seconds: float) -> bytes:
    """A constant-bitrate MP3 of silent frames that mutagen reads as `seconds` long.

    Without a Xing header mutagen derives the length from the byte count and the bitrate, so the
    last frame is cut to make the count exact.
    """
    size = round(seconds * MP3_BITRATE / 8)
    frame = MP3_FRAME_HEADER + bytes(MP3_FRAME_BYTES - len(MP3_FRAME_HEADER))
    return (frame * math.ceil(size / MP3_FRAME_BYTES))[:size]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def _random_bytes(size: int) -> bytes:
    return random.Random(size).randbytes(size)
