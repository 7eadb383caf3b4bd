"""The local queue's order: fair across servers, and within a server across members.

Pure: no I/O. The queue itself is the `queued` jobs in the database (bot.domain.lifecycle); this
module only decides who goes next, and how many may go now under the WaveSpeed account's limits
(tasks at WaveSpeed at once, submits per minute: wavespeed.ai/docs/account-levels).

The order is round-robin with memory. Servers take turns, one job each per round; the server
served least recently goes first in every round (one never served before goes first of all,
oldest waiting job breaking ties). Within a server, members take turns the same way. So a member
who queues ten re-rolls gets one turn per round like everyone else, and a busy server cannot
starve a quiet one: each admission moves its server and member to the back of the next round.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, zip_longest


@dataclass(frozen=True)
class QueueEntry:
    """A queued job: who asked, and when it first joined the queue."""

    job_id: int
    guild_id: int
    member_id: int
    queued_at: datetime


@dataclass(frozen=True)
class QueueSnapshot:
    """The queue and the account's use of its limits, read in one go from the database."""

    entries: tuple[QueueEntry, ...]  # oldest first
    guild_served_at: Mapping[int, datetime]  # a server's latest admission, if recent
    member_served_at: Mapping[tuple[int, int], datetime]  # (guild, member) → latest admission
    at_wavespeed: int  # jobs whose task is (or may be) at WaveSpeed now
    recent_submits: int  # submits begun within the last window (a minute)


@dataclass(frozen=True)
class QueueLimits:
    """The WaveSpeed account's limits. Bronze, the first tier, allows 2–3 tasks at once and 2–5
    videos a minute (its docs give both figures): the defaults take the lower ones."""

    max_concurrent: int = 2
    max_per_minute: int = 2
    window_s: float = 60.0  # the "minute" (tests shorten it)

    def __post_init__(self) -> None:
        if self.max_concurrent < 1 or self.max_per_minute < 1 or self.window_s <= 0:
            raise ValueError("queue limits must be at least 1, and the window positive")


def fair_order(snapshot: QueueSnapshot) -> list[int]:
    """The queued job ids in the order they are to be submitted."""
    by_guild: dict[int, list[QueueEntry]] = {}
    for entry in snapshot.entries:
        by_guild.setdefault(entry.guild_id, []).append(entry)
    guild_turns = [
        _members_in_turn(entries, snapshot.member_served_at)
        for entries in _by_turn(by_guild, snapshot.guild_served_at)
    ]
    return [entry.job_id for entry in _round_robin(guild_turns)]


def free_slots(snapshot: QueueSnapshot, limits: QueueLimits) -> int:
    """How many queued jobs may be submitted now without passing either limit."""
    return max(
        0,
        min(
            limits.max_concurrent - snapshot.at_wavespeed,
            limits.max_per_minute - snapshot.recent_submits,
        ),
    )


def _members_in_turn(
    entries: list[QueueEntry], member_served_at: Mapping[tuple[int, int], datetime]
) -> list[QueueEntry]:
    by_member: dict[int, list[QueueEntry]] = {}
    for entry in entries:
        by_member.setdefault(entry.member_id, []).append(entry)
    guild_id = entries[0].guild_id
    served = {member: at for (guild, member), at in member_served_at.items() if guild == guild_id}
    return list(_round_robin(_by_turn(by_member, served)))


def _by_turn(
    groups: dict[int, list[QueueEntry]], served_at: Mapping[int, datetime]
) -> list[list[QueueEntry]]:
    """The groups, least recently served first; never served before comes first of all, and
    the group whose oldest job waited longest breaks a tie."""

    def turn(key: int) -> tuple[bool, datetime | None, int]:
        last = served_at.get(key)
        return (last is not None, last, groups[key][0].job_id)

    return [groups[key] for key in sorted(groups, key=turn)]


def _round_robin(groups: Iterable[list[QueueEntry]]) -> Iterable[QueueEntry]:
    """One from each group per round, in the groups' order."""
    rounds = zip_longest(*groups)
    return (entry for entry in chain.from_iterable(rounds) if entry is not None)
