"""SqliteStorage: the Storage protocol on aiosqlite.

One connection per instance, in autocommit mode. Every write is one `BEGIN IMMEDIATE`
transaction taken under an asyncio.Lock: the lock keeps this instance's coroutines from
interleaving inside a transaction on the shared connection, and BEGIN IMMEDIATE (with a busy
timeout) serialises writers across connections and processes, so a budget check and the reserve
row it allows are never separated by another writer. Reads take the lock too, so they never see
another coroutine's uncommitted rows.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import fields
from datetime import UTC, datetime
from typing import Literal, Self

import aiosqlite

from bot.domain.budget import (
    SERVER_SCOPE_MEMBER_ID,
    Balance,
    BudgetExceeded,
    BudgetPolicy,
    TooManyJobs,
    period_key,
    period_resets_at,
)
from bot.domain.job import JobOwner, JobRecord, LedgerEntry, MemberUsage
from bot.domain.lifecycle import (
    IN_PROGRESS,
    FailureKind,
    IllegalTransition,
    JobState,
    Settlement,
    can_move,
    settlement_on_entering,
)
from storage.migrate import migrate

BUSY_TIMEOUT_MS = 10_000

_JOB_SELECT = f"SELECT {', '.join(field.name for field in fields(JobRecord))} FROM job_records"
_LEDGER_COLUMNS = ", ".join(field.name for field in fields(LedgerEntry))
_JOB_DATETIMES = (
    "created_at",
    "submit_started_at",
    "submit_ended_at",
    "hold_until",
    "submitted_at",
    "finished_at",
    "delivered_at",
)
# What a move may set besides the state; the stamps are the store's own (its clock).
_MOVABLE_COLUMNS = frozenset(
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
    }
)
# The moment each state is reached is stamped into these columns. Entering `delivered` both
# settles the job (finished_at) and shows the member its outcome (delivered_at).
_STAMPS_ON_ENTERING: dict[JobState, tuple[str, ...]] = {
    JobState.SUBMITTING: ("submit_started_at",),
    JobState.UNCERTAIN: ("submit_ended_at",),
    JobState.SUBMITTED: ("submitted_at",),
    JobState.DELIVERED: ("finished_at", "delivered_at"),
    JobState.FAILED: ("finished_at",),
    JobState.CLOSED: ("delivered_at",),
}

# One budget in one period. :whole_server selects every member's reserve/charge/refund rows;
# grants and the allowance always come from :scope (the member, or 0 for the server).
_BALANCE_SQL = """
SELECT
    COALESCE(
        (SELECT amount_micro FROM ledger
         WHERE guild_id = :guild AND member_id = :scope AND kind = 'limit'
         ORDER BY id DESC LIMIT 1),
        :default_allowance
    ) AS allowance,
    COALESCE(SUM(amount_micro) FILTER (WHERE kind = 'grant' AND member_id = :scope), 0) AS granted,
    COALESCE(SUM(amount_micro) FILTER (WHERE kind = 'charge'), 0) AS spent,
    COALESCE(SUM(CASE kind WHEN 'reserve' THEN amount_micro
                           WHEN 'charge' THEN -amount_micro
                           WHEN 'refund' THEN -amount_micro END), 0) AS held
FROM ledger
WHERE guild_id = :guild AND period_key = :period AND (:whole_server OR member_id = :scope)
"""

# A job's reserve and charge rows share its period, so both are counted from the ledger alone.
_USAGE_SQL = """
SELECT
    member_id,
    COALESCE(SUM(amount_micro) FILTER (WHERE kind = 'charge'), 0) AS spent_micro,
    COUNT(*) FILTER (WHERE kind = 'reserve') AS jobs
FROM ledger
WHERE guild_id = ? AND period_key = ? AND kind IN ('reserve', 'charge')
GROUP BY member_id
ORDER BY spent_micro DESC, jobs DESC, member_id
"""


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _job_record(row: aiosqlite.Row) -> JobRecord:
    values = dict(zip(row.keys(), row, strict=True))
    values["state"] = JobState(values["state"])
    if values["failure_kind"] is not None:
        values["failure_kind"] = FailureKind(values["failure_kind"])
    if values["settlement"] is not None:
        values["settlement"] = Settlement(values["settlement"])
    values["has_nsfw"] = bool(values["has_nsfw"])
    for name in _JOB_DATETIMES:
        if values[name] is not None:
            values[name] = datetime.fromisoformat(values[name])
    return JobRecord(**values)


def _ledger_entry(row: aiosqlite.Row) -> LedgerEntry:
    values = dict(zip(row.keys(), row, strict=True))
    values["created_at"] = datetime.fromisoformat(values["created_at"])
    return LedgerEntry(**values)


def _require_micro(value: int, what: str, *, minimum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer number of micro-dollars, not {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be at least {minimum} micro-dollars, not {value}")


async def _enable_wal(db: aiosqlite.Connection, attempts: int = 100) -> None:
    """Switch to WAL. Another process doing the same on a new file makes SQLite answer "locked"
    at once (the busy timeout does not cover this switch), so retry briefly."""
    for attempt in range(attempts):
        try:
            await db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.02)


class SqliteStorage:
    """The Storage protocol on one SQLite file (or :memory:). Create it with `open()`."""

    def __init__(
        self, db: aiosqlite.Connection, policy: BudgetPolicy, clock: Callable[[], datetime]
    ) -> None:
        self._db = db
        self._policy = policy
        self._clock = clock  # must return aware datetimes
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls,
        path: str,
        policy: BudgetPolicy,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> Self:
        """Connect (WAL, foreign keys, busy timeout) and apply pending migrations."""
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            db.row_factory = aiosqlite.Row
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await _enable_wal(db)
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
            await migrate(db)
        except BaseException:
            await db.close()
            raise
        return cls(db, policy, clock or (lambda: datetime.now(UTC)))

    async def close(self) -> None:
        """Close the connection."""
        async with self._lock:
            await self._db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- plumbing -----------------------------------------------------------------------------
    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction: committed on success, rolled back on any exception.

        aiosqlite runs queued statements in order even when their awaiting task is cancelled, so
        the ROLLBACK always runs after the statement that was interrupted, BEGIN included. When
        BEGIN itself failed there is nothing to roll back, and that error is ignored.
        """
        async with self._lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                yield self._db
            except BaseException:
                with suppress(sqlite3.OperationalError):
                    await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def _read(self, sql: str, params: Sequence[object] = ()) -> list[aiosqlite.Row]:
        async with self._lock:
            return list(await self._db.execute_fetchall(sql, params))

    @staticmethod
    async def _fetch_job(db: aiosqlite.Connection, job_id: int) -> JobRecord:
        async with db.execute(f"{_JOB_SELECT} WHERE id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
        if row is None:
            raise LookupError(f"no job {job_id}")
        return _job_record(row)

    @staticmethod
    async def _append(
        db: aiosqlite.Connection,
        *,
        guild_id: int,
        member_id: int,
        kind: Literal["reserve", "charge", "refund", "grant", "limit"],
        amount_micro: int,
        period: str,
        now: datetime,
        job_id: int | None = None,
        actor_id: int | None = None,
        note: str | None = None,
    ) -> None:
        await db.execute(
            """
            INSERT INTO ledger (guild_id, member_id, kind, amount_micro, period_key,
                                job_id, actor_id, note, created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            (
                guild_id,
                member_id,
                kind,
                amount_micro,
                period,
                job_id,
                actor_id,
                note,
                _utc_text(now),
            ),
        )

    @staticmethod
    async def _set_columns(
        db: aiosqlite.Connection, job_id: int, columns: dict[str, object]
    ) -> None:
        """UPDATE a job's columns (the names come from this module, never from input)."""
        assignments = ", ".join(f"{name} = :{name}" for name in columns)
        await db.execute(f"UPDATE jobs SET {assignments} WHERE id = :id", {**columns, "id": job_id})

    async def _balance(
        self, db: aiosqlite.Connection, guild_id: int, member_id: int | None, now: datetime
    ) -> Balance:
        """A member's balance, or the server's when member_id is None."""
        whole_server = member_id is None
        params = {
            "guild": guild_id,
            "scope": SERVER_SCOPE_MEMBER_ID if whole_server else member_id,
            "whole_server": whole_server,
            "period": period_key(now, self._policy.period),
            "default_allowance": (
                self._policy.server_allowance if whole_server else self._policy.member_allowance
            ),
        }
        async with db.execute(_BALANCE_SQL, params) as cursor:
            row = await cursor.fetchone()
        assert row is not None  # an aggregate always yields one row
        return Balance(
            allowance=row["allowance"],
            granted=row["granted"],
            spent=row["spent"],
            held=row["held"],
            resets_at=period_resets_at(now, self._policy.period),
        )

    async def _settle(
        self, db: aiosqlite.Connection, job: JobRecord, settlement: Settlement, now: datetime
    ) -> None:
        """Write the job's one charge or refund row, in the period of its reservation.

        Only a job from before the lifecycle (schema 2) can already be settled: that version
        charged on completion, before delivery. Its settlement stands, as it did then."""
        if job.settlement is not None:
            return
        await self._append(
            db,
            guild_id=job.guild_id,
            member_id=job.member_id,
            kind=settlement.value,
            amount_micro=job.price_micro,
            period=job.period_key,
            now=now,
            job_id=job.id,
        )

    async def _admin_row(
        self,
        kind: Literal["grant", "limit"],
        guild_id: int,
        member_id: int,
        amount_micro: int,
        actor_id: int,
        note: str | None,
    ) -> None:
        if member_id < 0:
            raise ValueError(f"member_id must be ≥ 0, not {member_id}")
        now = self._clock()
        async with self._transaction() as db:
            await self._append(
                db,
                guild_id=guild_id,
                member_id=member_id,
                kind=kind,
                amount_micro=amount_micro,
                period=period_key(now, self._policy.period),
                now=now,
                actor_id=actor_id,
                note=note,
            )

    # --- money + jobs -------------------------------------------------------------------------
    async def reserve(
        self, owner: JobOwner, request_json: str, price_micro: int, max_in_flight: int
    ) -> JobRecord:
        """Check the in-flight limit and the member and server budgets, then write the job and
        its reserve row, all in one transaction. Raises TooManyJobs / BudgetExceeded, writing
        nothing."""
        _require_micro(price_micro, "price", minimum=0)
        now = self._clock()
        period = period_key(now, self._policy.period)
        in_progress = sorted(IN_PROGRESS)
        in_flight_marks = ", ".join("?" for _ in in_progress)
        async with self._transaction() as db:
            async with db.execute(
                f"SELECT COUNT(*) FROM jobs "
                f"WHERE guild_id = ? AND member_id = ? AND state IN ({in_flight_marks})",
                (owner.guild_id, owner.member_id, *in_progress),
            ) as cursor:
                row = await cursor.fetchone()
            assert row is not None  # COUNT(*) always yields one row
            if row[0] >= max_in_flight:
                raise TooManyJobs(max_in_flight)
            member = await self._balance(db, owner.guild_id, owner.member_id, now)
            if member.available < price_micro:
                raise BudgetExceeded("member", price_micro, member)
            server = await self._balance(db, owner.guild_id, None, now)
            if server.available < price_micro:
                raise BudgetExceeded("server", price_micro, server)
            cursor = await db.execute(
                """
                INSERT INTO jobs (guild_id, channel_id, member_id, request_json, price_micro,
                                  period_key, state, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """,
                (
                    owner.guild_id,
                    owner.channel_id,
                    owner.member_id,
                    request_json,
                    price_micro,
                    period,
                    JobState.RESERVED.value,
                    _utc_text(now),
                ),
            )
            job_id = cursor.lastrowid
            assert job_id is not None
            await self._append(
                db,
                guild_id=owner.guild_id,
                member_id=owner.member_id,
                kind="reserve",
                amount_micro=price_micro,
                period=period,
                now=now,
                job_id=job_id,
            )
            return await self._fetch_job(db, job_id)

    async def advance(self, job_id: int, to: JobState, **changes: object) -> JobRecord:
        """Move a job to `to` with `changes`, writing the ledger row the move settles, in one
        transaction. Raises IllegalTransition (changing nothing) for a move the lifecycle
        forbids."""
        unknown = set(changes) - _MOVABLE_COLUMNS
        if unknown:
            raise ValueError(f"not a column a move may set: {', '.join(sorted(unknown))}")
        now = self._clock()
        columns: dict[str, object] = {"state": to.value}
        for name, value in changes.items():
            columns[name] = _utc_text(value) if isinstance(value, datetime) else value
        for stamp in _STAMPS_ON_ENTERING.get(to, ()):
            columns[stamp] = _utc_text(now)
        async with self._transaction() as db:
            job = await self._fetch_job(db, job_id)
            if not can_move(job.state, to):
                raise IllegalTransition(job_id, job.state, to)
            if to is JobState.POSTING:
                columns["post_attempts"] = job.post_attempts + 1
            settlement = settlement_on_entering(to)
            if settlement is not None:
                await self._settle(db, job, settlement, now)
            await self._set_columns(db, job_id, columns)
            return await self._fetch_job(db, job_id)

    async def set_wavespeed_status(self, job_id: int, wavespeed_status: str) -> None:
        """Remember the last status WaveSpeed reported (no state change)."""
        async with self._transaction() as db:
            await self._set_columns(db, job_id, {"wavespeed_status": wavespeed_status})

    async def known_predictions(self, prediction_ids: Collection[str]) -> set[str]:
        """Which of these WaveSpeed task ids already belong to a job."""
        ids = list(prediction_ids)
        if not ids:
            return set()
        marks = ", ".join("?" for _ in ids)
        rows = await self._read(
            f"SELECT prediction_id FROM jobs WHERE prediction_id IN ({marks})", ids
        )
        return {row["prediction_id"] for row in rows}

    async def get_job(self, job_id: int) -> JobRecord | None:
        """One job, or None."""
        rows = await self._read(f"{_JOB_SELECT} WHERE id = ?", (job_id,))
        return _job_record(rows[0]) if rows else None

    async def unfinished_jobs(self) -> list[JobRecord]:
        """Jobs not in a final state, oldest first."""
        rows = await self._read(
            f"{_JOB_SELECT} WHERE state NOT IN ('delivered', 'closed') ORDER BY id"
        )
        return [_job_record(row) for row in rows]

    async def recent_jobs(self, guild_id: int, member_id: int, limit: int = 5) -> list[JobRecord]:
        """A member's latest jobs in a server, newest first."""
        rows = await self._read(
            f"{_JOB_SELECT} WHERE guild_id = ? AND member_id = ? ORDER BY id DESC LIMIT ?",
            (guild_id, member_id, limit),
        )
        return [_job_record(row) for row in rows]

    # --- budgets ------------------------------------------------------------------------------
    async def member_balance(self, guild_id: int, member_id: int) -> Balance:
        """A member's budget in the current period."""
        async with self._lock:
            return await self._balance(self._db, guild_id, member_id, self._clock())

    async def server_balance(self, guild_id: int) -> Balance:
        """The server's budget in the current period (every member's jobs count against it)."""
        async with self._lock:
            return await self._balance(self._db, guild_id, None, self._clock())

    async def grant(
        self, guild_id: int, member_id: int, amount_micro: int, actor_id: int, note: str | None
    ) -> None:
        """Add (or with a negative amount, remove) money for this period. member_id 0 = server."""
        _require_micro(amount_micro, "grant")
        await self._admin_row("grant", guild_id, member_id, amount_micro, actor_id, note)

    async def set_allowance(
        self, guild_id: int, member_id: int, amount_micro: int, actor_id: int
    ) -> None:
        """Set a per-period allowance (a `limit` ledger row; latest wins). member_id 0 = server."""
        _require_micro(amount_micro, "allowance", minimum=0)
        await self._admin_row("limit", guild_id, member_id, amount_micro, actor_id, None)

    async def usage(self, guild_id: int) -> list[MemberUsage]:
        """Spend (charges) and jobs per member in the current period, largest spend first."""
        period = period_key(self._clock(), self._policy.period)
        rows = await self._read(_USAGE_SQL, (guild_id, period))
        return [MemberUsage(row["member_id"], row["spent_micro"], row["jobs"]) for row in rows]

    async def ledger(self, guild_id: int, period_key: str | None = None) -> list[LedgerEntry]:
        """Ledger rows of a server, oldest first; only one period when period_key is given."""
        rows = await self._read(
            f"SELECT {_LEDGER_COLUMNS} FROM ledger "
            "WHERE guild_id = ? AND (? IS NULL OR period_key = ?) ORDER BY id",
            (guild_id, period_key, period_key),
        )
        return [_ledger_entry(row) for row in rows]

    # --- per-server settings (key/value text) --------------------------------------------------
    async def get_guild_setting(self, guild_id: int, key: str) -> str | None:
        """A server's setting, or None."""
        rows = await self._read(
            "SELECT value FROM guild_settings WHERE guild_id = ? AND key = ?", (guild_id, key)
        )
        return rows[0]["value"] if rows else None

    async def set_guild_setting(self, guild_id: int, key: str, value: str | None) -> None:
        """Set a server's setting; None deletes it."""
        async with self._transaction() as db:
            if value is None:
                await db.execute(
                    "DELETE FROM guild_settings WHERE guild_id = ? AND key = ?", (guild_id, key)
                )
            else:
                await db.execute(
                    """
                    INSERT INTO guild_settings (guild_id, key, value) VALUES (?, ?, ?)
                    ON CONFLICT (guild_id, key) DO UPDATE SET value = excluded.value
                    """,
                    (guild_id, key, value),
                )

    # --- bot-wide settings (key/value text) ----------------------------------------------------
    async def get_bot_setting(self, key: str) -> str | None:
        """A bot-wide setting, or None."""
        rows = await self._read("SELECT value FROM bot_settings WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    async def set_bot_setting(self, key: str, value: str | None) -> None:
        """Set a bot-wide setting; None deletes it."""
        async with self._transaction() as db:
            if value is None:
                await db.execute("DELETE FROM bot_settings WHERE key = ?", (key,))
            else:
                await db.execute(
                    """
                    INSERT INTO bot_settings (key, value) VALUES (?, ?)
                    ON CONFLICT (key) DO UPDATE SET value = excluded.value
                    """,
                    (key, value),
                )
