"""Price of a generation in integer micro-dollars, from the model page's published formula.

Total = $0.125 per 5 s (720p, silent) × (duration / 5) × 1.5 for 1080p × 2 with audio.
$0.125 / 5 s is exactly 25,000 micro-dollars per second, so every price is an exact integer.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal

Resolution = Literal["720p", "1080p"]

MICRO_PER_USD = 1_000_000
BASE_MICRO_PER_SECOND = 25_000  # $0.125 per 5 s at 720p without audio
MIN_DURATION_S = 2
AMOUNT_PATTERN = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,12})?|-?\.[0-9]{1,12}")
THOUSANDS_PATTERN = re.compile(r"-?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]*)?")
MAX_DURATION_S = 15


def price_micro(duration: int, resolution: Resolution, has_audio: bool) -> int:
    """Return the exact price of one video in micro-dollars."""
    if isinstance(duration, bool) or not MIN_DURATION_S <= duration <= MAX_DURATION_S:
        raise ValueError(f"duration must be {MIN_DURATION_S}–{MAX_DURATION_S} seconds")
    if resolution not in ("720p", "1080p"):
        raise ValueError("resolution must be 720p or 1080p")
    micro = BASE_MICRO_PER_SECOND * duration
    if resolution == "1080p":
        micro = micro * 3 // 2  # exact: 25,000 × n is always even
    if has_audio:
        micro *= 2
    return micro


def format_usd(micro: int) -> str:
    """Format micro-dollars as dollars with at least two decimals: $0.50, $0.125, $1.1875."""
    sign = "-" if micro < 0 else ""
    dollars, rest = divmod(abs(micro), MICRO_PER_USD)
    fraction = f"{rest:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}${dollars:,}.{fraction}"


def parse_usd(text: str) -> int:
    """Parse a dollar amount such as "5", "$2.50" or "0.125" into exact micro-dollars."""
    cleaned = text.strip().removeprefix("$").strip()
    # A comma only groups thousands: "2,50" (a decimal comma, as Spanish and Portuguese write
    # it) is refused rather than read as 250 dollars.
    if "," in cleaned and not THOUSANDS_PATTERN.fullmatch(cleaned):
        raise ValueError(f"{text!r} is not a dollar amount")
    cleaned = cleaned.replace(",", "")
    if not AMOUNT_PATTERN.fullmatch(cleaned):
        raise ValueError(f"{text!r} is not a dollar amount")
    micro = Decimal(cleaned) * MICRO_PER_USD
    if micro != micro.to_integral_value():
        raise ValueError(f"{text!r} has more than six decimal places")
    return int(micro)
