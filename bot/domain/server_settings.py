"""Every per-server setting in one registry, each with its stored key, type and default. Pure.

Values are kept as text by storage (`get_guild_setting`/`set_guild_setting`); `decode` and
`encode` are the only places that know their text form. Bot-wide values (not per server) live in
storage's separate bot settings, never under a made-up server id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from bot.domain.pricing import parse_usd

T = TypeVar("T")


class NsfwPolicy(StrEnum):
    """What happens to a video WaveSpeed flags as NSFW outside an age-restricted channel."""

    SPOILER = "spoiler"  # posted behind a spoiler
    WITHHOLD = "withhold"  # not posted; the member gets a private copy while the token lives


def parse_ids(text: str | None) -> tuple[int, ...]:
    """Ids from stored text such as "12,34", in order, without duplicates; junk is skipped."""
    ids: dict[int, None] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if part.isdecimal() and int(part) > 0:
            ids[int(part)] = None
    return tuple(ids)


def format_ids(ids: Iterable[int]) -> str | None:
    """The text to store for `ids`; None (delete the setting) for an empty list."""
    return ",".join(str(i) for i in ids) or None


def _optional_id(text: str) -> int | None:
    """One id, read like a list entry (spaces and junk tolerated); None for junk."""
    ids = parse_ids(text)
    return ids[0] if len(ids) == 1 else None


def _id_text(value: int | None) -> str | None:
    return None if value is None else str(value)


def _policy(text: str) -> NsfwPolicy:
    """The stored policy; unknown text falls back to the safe default, the spoiler."""
    try:
        return NsfwPolicy(text)
    except ValueError:
        return NsfwPolicy.SPOILER


def _optional_micro(text: str) -> int | None:
    """A stored amount of micro-dollars; junk, zero or less reads as off (None)."""
    amount = int(text) if text.strip().isdecimal() else 0
    return amount if amount > 0 else None


def _micro_text(value: int | None) -> str | None:
    """The text to store for an amount; None (delete: off) for None or nothing."""
    return str(value) if value else None


OFF_WORDS = frozenset({"0", "off", "none", "no", "never"})


def parse_confirm_above(text: str) -> int | None:
    """An admin's confirm_above, such as "0.50" or "$1": micro-dollars, or None (off) for
    "0", "off", "none" or nothing. Raises ValueError for a negative amount or not an amount."""
    cleaned = text.strip().lower()
    if not cleaned or cleaned in OFF_WORDS:
        return None
    amount = parse_usd(cleaned)
    if amount < 0:
        raise ValueError(f"{text!r} is negative")
    return amount or None


def needs_confirmation(price: int, confirm_above: int | None) -> bool:
    """Whether a request of `price` micro-dollars asks the member to confirm it first."""
    return confirm_above is not None and price > confirm_above


@dataclass(frozen=True)
class ServerSetting(Generic[T]):
    """One per-server setting. `encode` returning None deletes it (back to the default)."""

    key: str
    default: T
    decode: Callable[[str], T]
    encode: Callable[[T], str | None]

    def read(self, text: str | None) -> T:
        """The value of stored text (None: never set)."""
        return self.default if text is None else self.decode(text)


LOG_CHANNEL: ServerSetting[int | None] = ServerSetting(
    "log_channel_id", None, _optional_id, _id_text
)
NSFW_POLICY: ServerSetting[NsfwPolicy] = ServerSetting(
    "nsfw_policy", NsfwPolicy.SPOILER, _policy, str
)
# /video works only in these channels (and their threads); empty: anywhere
VIDEO_CHANNELS: ServerSetting[tuple[int, ...]] = ServerSetting(
    "video_channel_ids", (), parse_ids, format_ids
)
# /video needs at least one of these roles; empty: every member
VIDEO_ROLES: ServerSetting[tuple[int, ...]] = ServerSetting(
    "video_role_ids", (), parse_ids, format_ids
)
# members confirm the price of a request above this many micro-dollars first; None: never
CONFIRM_ABOVE: ServerSetting[int | None] = ServerSetting(
    "confirm_above_micro", None, _optional_micro, _micro_text
)
# the admins are warned when the WaveSpeed account's balance falls below this many
# micro-dollars (bot.domain.alerts); None: never
LOW_BALANCE: ServerSetting[int | None] = ServerSetting(
    "low_balance_micro", None, _optional_micro, _micro_text
)

# Any: a setting's value type differs per entry (ServerSetting is invariant in it)
REGISTRY: tuple[ServerSetting[Any], ...] = (
    LOG_CHANNEL,
    NSFW_POLICY,
    VIDEO_CHANNELS,
    VIDEO_ROLES,
    CONFIRM_ABOVE,
    LOW_BALANCE,
)
