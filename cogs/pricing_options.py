"""The options /video and /price share — what the price depends on — with one description and one
default each, so the quote can never drift from the command it prices. The defaults are the
request model's."""

from __future__ import annotations

from bot.domain.pricing import Resolution
from bot.domain.request import GenerationRequest

_DEFAULTS = GenerationRequest.model_fields
DEFAULT_RESOLUTION: Resolution = _DEFAULTS["resolution"].default
DEFAULT_DURATION_S: int = _DEFAULTS["duration"].default
DEFAULT_ENABLE_AUDIO: bool = _DEFAULTS["enable_audio"].default

#: app_commands.describe(...) of the shared options (bot/locales hold them per command).
DESCRIPTIONS = {
    "resolution": "720p, or 1080p at 1.5× the price",
    "duration": "Length in seconds, 2–15 (default 5)",
    "enable_audio": "Generate sound (doubles the price; default on)",
}
