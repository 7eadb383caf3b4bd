"""Who may make videos where: a server's allowed channels and roles. Pure: no Discord objects,
no storage.

Both are id lists, stored as the VIDEO_CHANNELS and VIDEO_ROLES per-server settings
(bot.domain.server_settings). An empty list means no restriction. Nobody is exempt, not even
members with Manage Server: they can change the rules, and a rule that silently doesn't apply to
the people testing it is a rule nobody trusts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MAX_ENTRIES = 25  # per list; a longer list is unreadable in a refusal (use fewer, busier channels)


@dataclass(frozen=True)
class VideoAccess:
    """A server's rules for /video and the buttons that start a video. Empty = unrestricted."""

    channel_ids: tuple[int, ...] = ()
    role_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Denial:
    """Why a member may not make a video here: the wrong channel, a missing role, or both."""

    wrong_channel: bool
    missing_role: bool
    access: VideoAccess


def check_access(
    access: VideoAccess,
    *,
    channel_id: int,
    parent_id: int | None = None,
    role_ids: Iterable[int] = (),
) -> Denial | None:
    """None if a member with `role_ids` may make a video in `channel_id`, else why not.

    `parent_id` is the channel a thread belongs to: threads of an allowed channel are allowed (and
    so are posts of an allowed forum). A thread can also be allowed on its own.
    """
    wrong_channel = bool(access.channel_ids) and not (
        channel_id in access.channel_ids
        or (parent_id is not None and parent_id in access.channel_ids)
    )
    missing_role = bool(access.role_ids) and set(access.role_ids).isdisjoint(role_ids)
    if wrong_channel or missing_role:
        return Denial(wrong_channel, missing_role, access)
    return None


class TooManyEntries(ValueError):
    """Adding would make a list longer than MAX_ENTRIES."""


def with_id(ids: tuple[int, ...], new: int) -> tuple[int, ...]:
    """`ids` with `new` appended (unchanged if present); TooManyEntries past MAX_ENTRIES."""
    if new in ids:
        return ids
    if len(ids) >= MAX_ENTRIES:
        raise TooManyEntries(f"at most {MAX_ENTRIES} entries")
    return (*ids, new)


def without_id(ids: tuple[int, ...], old: int) -> tuple[int, ...]:
    """`ids` without `old`."""
    return tuple(i for i in ids if i != old)
