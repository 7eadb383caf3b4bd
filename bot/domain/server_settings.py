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

# Any: a setting's value type differs per entry (ServerSetting is invariant in it)
REGISTRY: tuple[ServerSetting[Any], ...] = (
    LOG_CHANNEL,
    NSFW_POLICY,
    VIDEO_CHANNELS,
    VIDEO_ROLES,
)
