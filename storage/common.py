"""What every store shares: the columns a move may set and the stamps it gets, the checks on
money amounts and leases, numbered SQL migration files, and rows turned into JobRecord /
LedgerEntry.

Pure: no I/O beyond reading the packaged migration files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

from bot.domain.budget import SERVER_SCOPE_MEMBER_ID, Allowance, AllowanceSource
from bot.domain.job import InteractionToken, JobRecord, LedgerEntry
from bot.domain.lifecycle import IN_PROGRESS, FailureKind, JobState, Settlement
from bot.domain.queue import QueueEntry, QueueSnapshot
from bot.domain.timing import TimingSample

# A job's columns, in JobRecord's order; `settlement` comes from the ledger, not the jobs table.
JOB_COLUMNS = tuple(field.name for field in fields(JobRecord) if field.name != "settlement")
LEDGER_COLUMNS = tuple(field.name for field in fields(LedgerEntry))
JOB_DATETIMES = (
    "created_at",
    "submit_started_at",
    "submit_ended_at",
    "hold_until",
    "submitted_at",
    "finished_at",
    "delivered_at",
    "lease_until",
    "interaction_expires_at",
    "queued_at",
)
# The states counted against a member's in-progress limit, as stored.
IN_PROGRESS_VALUES = tuple(sorted(state.value for state in IN_PROGRESS))
# What a move may set besides the state; the stamps are the store's own (its clock).
MOVABLE_COLUMNS = frozenset(
    {
        "request_json",
        "failure_kind",
        "prediction_id",
        "wavespeed_status",
        "output_url",
        "has_nsfw",
        "inference_ms",
        "error_code",
        "error_message",
        "result_channel_id",
        "result_message_id",
        "hold_until",
        "retried_prediction_id",
    }
)
# The moment each state is reached is stamped into these columns. Entering `delivered` both
# settles the job (finished_at) and shows the member its outcome (delivered_at).
STAMPS_ON_ENTERING: dict[JobState, tuple[str, ...]] = {
    JobState.QUEUED: ("queued_at",),
    JobState.SUBMITTING: ("submit_started_at",),
    JobState.UNCERTAIN: ("submit_ended_at",),
    JobState.SUBMITTED: ("submitted_at",),
    JobState.DELIVERED: ("finished_at", "delivered_at"),
    JobState.FAILED: ("finished_at",),
    JobState.CLOSED: ("delivered_at",),
}

# Stamps that keep their first value: a job sent back to the queue keeps its place in it.
FIRST_STAMPS = frozenset({"queued_at"})
# What a move back to the queue clears: the next submit starts afresh.
CLEARED_ON_REQUEUE = ("prediction_id", "wavespeed_status", "submit_ended_at", "hold_until")

# The interaction a job was asked for (a credential): written with the reservation, cleared when
# the job reaches a final state so that it does not linger in the database.
INTERACTION_COLUMNS = ("interaction_app_id", "interaction_token", "interaction_expires_at")
CLEARS_INTERACTION = frozenset({JobState.DELIVERED, JobState.CLOSED})

# Every running total that differs from what the ledger adds up to (the schemas' own
# balances_from_ledger view), in SQL that SQLite and PostgreSQL both speak: used by both stores'
# audit() and by migrate-db, which must check a snapshot no store can see.
AUDIT_SQL = """
SELECT guild_id, member_id, period_key,
       COALESCE(b.granted, 0) AS granted, COALESCE(b.spent, 0) AS spent,
       COALESCE(b.held, 0) AS held,
       COALESCE(l.granted, 0) AS ledger_granted, COALESCE(l.spent, 0) AS ledger_spent,
       COALESCE(l.held, 0) AS ledger_held
FROM (SELECT guild_id, member_id, period_key FROM balances
      UNION SELECT guild_id, member_id, period_key FROM balances_from_ledger) AS k
LEFT JOIN balances AS b USING (guild_id, member_id, period_key)
LEFT JOIN balances_from_ledger AS l USING (guild_id, member_id, period_key)
WHERE COALESCE(b.granted, 0) != COALESCE(l.granted, 0)
   OR COALESCE(b.spent, 0) != COALESCE(l.spent, 0)
   OR COALESCE(b.held, 0) != COALESCE(l.held, 0)
ORDER BY guild_id, member_id, period_key
"""

# The allowance of one budget, by the rule of bot.domain.budget.effective_allowance, as one row
# (rank, amount_micro, role_id): its own latest `limit` row (rank 1), else the highest current
# tier among the member's roles (rank 2: a role's latest role_allowances row is its tier, NULL
# meaning cleared; a tie names the smaller role id), else the default (rank 3). Each store fills
# in its parameter marks: {guild}, {member}, {default}, and {roles}, a condition that holds for
# the role ids given (none for the server's own budget).
EFFECTIVE_ALLOWANCE_SQL = """
SELECT rank, amount_micro, role_id FROM (
    SELECT 1 AS rank, amount_micro, NULL AS role_id FROM (
        SELECT amount_micro FROM ledger
        WHERE guild_id = {guild} AND member_id = {member} AND kind = 'limit'
        ORDER BY id DESC LIMIT 1
    ) AS own
    UNION ALL
    SELECT 2, amount_micro, role_id FROM role_allowances AS tier
    WHERE guild_id = {guild} AND {roles} AND amount_micro IS NOT NULL
      AND id = (SELECT MAX(id) FROM role_allowances AS later
                WHERE later.guild_id = tier.guild_id AND later.role_id = tier.role_id)
    UNION ALL
    SELECT 3, {default}, NULL
) AS candidates
ORDER BY rank, amount_micro DESC, role_id
LIMIT 1
"""
# A server's current role tiers (cleared ones left out), largest first.
ROLE_TIERS_SQL = """
SELECT role_id, amount_micro, actor_id, created_at FROM role_allowances AS tier
WHERE guild_id = {guild} AND amount_micro IS NOT NULL
  AND id = (SELECT MAX(id) FROM role_allowances AS later
            WHERE later.guild_id = tier.guild_id AND later.role_id = tier.role_id)
ORDER BY amount_micro DESC, role_id
"""
_ALLOWANCE_SOURCES = {
    1: AllowanceSource.OWN,
    2: AllowanceSource.TIER,
    3: AllowanceSource.DEFAULT,
}

# The local queue remembers a server's or member's turns this long (after a day of nothing,
# they are as new).
SERVED_MEMORY = timedelta(days=1)

# The latest timings of each shape, oldest first ({per_shape}: the store's parameter mark).
RECENT_TIMINGS_SQL = """
SELECT shape, local_wait_s, queue_s, generation_s FROM (
    SELECT job_timings.*,
           ROW_NUMBER() OVER (PARTITION BY shape ORDER BY job_id DESC) AS latest
    FROM job_timings
) AS ranked
WHERE latest <= {per_shape}
ORDER BY job_id
"""

_MIGRATION_FILE = re.compile(r"(\d+)_\w+\.sql")


def require_micro(value: int, what: str, *, minimum: int | None = None) -> None:
    """Refuse anything but an integer number of micro-dollars (at least `minimum`)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer number of micro-dollars, not {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be at least {minimum} micro-dollars, not {value}")


def require_scope(member_id: int) -> None:
    """A budget is a member's (a Discord id) or the server's (SERVER_SCOPE_MEMBER_ID)."""
    if member_id < SERVER_SCOPE_MEMBER_ID:
        raise ValueError(f"member_id must be ≥ 0, not {member_id}")


def require_member(member_id: int) -> None:
    """A job belongs to a member: member_id 0 names the server's own budget (its balance row
    would be held twice, once as the member's and once as the server's)."""
    if member_id == SERVER_SCOPE_MEMBER_ID:
        raise ValueError("member_id 0 is the server's own budget, not a member")


def require_role(role_id: int) -> None:
    """A role tier names a Discord role (a positive snowflake)."""
    if isinstance(role_id, bool) or not isinstance(role_id, int) or role_id <= 0:
        raise ValueError(f"role_id must be a positive Discord id, not {role_id!r}")


def allowance_of(row: Mapping[str, Any]) -> Allowance:
    """An Allowance from EFFECTIVE_ALLOWANCE_SQL's row."""
    source = _ALLOWANCE_SOURCES[row["rank"]]
    role_id = row["role_id"] if source is AllowanceSource.TIER else None
    return Allowance(int(row["amount_micro"]), source, role_id)


def lease_expiry(owner: str, lease_s: float, now: datetime) -> datetime:
    """When a lease `owner` takes or renews at `now` runs out. A lease needs a named owner and a
    positive, finite length (ValueError otherwise): an unnamed or endless one could never be
    told apart from another process's, or taken over."""
    if not owner:
        raise ValueError("a lease needs an owner")
    if not 0 < lease_s < float("inf"):
        raise ValueError(f"a lease must last a positive, finite time, not {lease_s!r} s")
    return now + timedelta(seconds=lease_s)


def move_columns(
    job: JobRecord, to: JobState, changes: Mapping[str, object], now: datetime
) -> dict[str, object]:
    """The columns a move of `job` into `to` writes: the state, the caller's `changes` (only
    those a move may set, else ValueError), the stamps of entering `to` (a first stamp only if
    unset), what a requeue or a final state clears, and the counters a move counts."""
    unknown = set(changes) - MOVABLE_COLUMNS
    if unknown:
        raise ValueError(f"not a column a move may set: {', '.join(sorted(unknown))}")
    stamps = {
        name: now
        for name in STAMPS_ON_ENTERING.get(to, ())
        if name not in FIRST_STAMPS or getattr(job, name) is None
    }
    cleared = dict.fromkeys(INTERACTION_COLUMNS if to in CLEARS_INTERACTION else ())
    if to is JobState.QUEUED and job.state is not JobState.RESERVED:
        cleared.update(dict.fromkeys(CLEARED_ON_REQUEUE))
    counted: dict[str, object] = {}
    if to is JobState.POSTING:
        counted["post_attempts"] = job.post_attempts + 1
    if to is JobState.SUBMITTING:
        counted["attempts"] = job.attempts + 1
    return {"state": to.value, **cleared, **changes, **stamps, **counted}


def interaction_values(
    interaction: InteractionToken | None,
) -> tuple[int | None, str | None, datetime | None]:
    """The INTERACTION_COLUMNS' values for a job asked through `interaction` (or none)."""
    if interaction is None:
        return (None, None, None)
    return (interaction.application_id, interaction.token, interaction.expires_at)


def roles_value(roles: Collection[int]) -> str:
    """The member_roles column's value for `roles`: a JSON array of role ids."""
    return json.dumps([int(role) for role in roles])


def job_record(values: Mapping[str, Any]) -> JobRecord:
    """A JobRecord from a row of job columns plus `settlement`. Datetimes may be stored as
    ISO-8601 text (SQLite) or come back as datetimes (PostgreSQL)."""
    record = dict(values)
    record["state"] = JobState(record["state"])
    if record["failure_kind"] is not None:
        record["failure_kind"] = FailureKind(record["failure_kind"])
    if record["settlement"] is not None:
        record["settlement"] = Settlement(record["settlement"])
    record["has_nsfw"] = bool(record["has_nsfw"])
    record["member_roles"] = tuple(json.loads(record["member_roles"]))
    for name in JOB_DATETIMES:
        if isinstance(record[name], str):
            record[name] = datetime.fromisoformat(record[name])
    return JobRecord(**record)


def ledger_entry(values: Mapping[str, Any]) -> LedgerEntry:
    """A LedgerEntry from a ledger row (created_at as ISO-8601 text or a datetime)."""
    record = dict(values)
    if isinstance(record["created_at"], str):
        record["created_at"] = datetime.fromisoformat(record["created_at"])
    return LedgerEntry(**record)


def snapshot_of(
    entries: tuple[QueueEntry, ...],
    turns: list[tuple[int, int, datetime]],
    at_wavespeed: int,
    recent_submits: int,
) -> QueueSnapshot:
    """A QueueSnapshot from the queued jobs and each (server, member)'s latest turn."""
    member_served_at = {(guild, member): at for guild, member, at in turns}
    guild_served_at: dict[int, datetime] = {}
    for (guild, _), at in member_served_at.items():
        guild_served_at[guild] = max(at, guild_served_at.get(guild, at))
    return QueueSnapshot(entries, guild_served_at, member_served_at, at_wavespeed, recent_submits)


def timing_sample(row: Mapping[str, Any]) -> TimingSample:
    """A TimingSample from a job_timings row."""
    return TimingSample(row["shape"], row["local_wait_s"], row["queue_s"], row["generation_s"])


def audit_line(row: Mapping[str, Any]) -> str:
    """One difference an audit found between a stored balance (granted, spent, held) and what
    the ledger adds up to (ledger_granted, ledger_spent, ledger_held), for a person to read."""
    member_id = row["member_id"]
    whose = "the server" if member_id == SERVER_SCOPE_MEMBER_ID else f"member {member_id}"
    return (
        f"guild {row['guild_id']}, {whose}, {row['period_key']}: "
        f"stored granted/spent/held {row['granted']}/{row['spent']}/{row['held']}, "
        f"ledger says {row['ledger_granted']}/{row['ledger_spent']}/{row['ledger_held']}"
    )


@dataclass(frozen=True)
class SqlMigration:
    """One numbered migration file: `NNN_name.sql`."""

    version: int
    name: str
    sql: str


def load_sql_migrations(folder: str) -> list[SqlMigration]:
    """The migrations packaged in `storage/<folder>`, ordered; versions must be 1, 2, 3, …"""
    migrations = []
    for entry in (resources.files("storage") / folder).iterdir():
        if match := _MIGRATION_FILE.fullmatch(entry.name):
            migrations.append(SqlMigration(int(match[1]), entry.name, entry.read_text("utf-8")))
    migrations.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise RuntimeError(f"migrations must be numbered 1, 2, 3, … without gaps: {versions}")
    return migrations
