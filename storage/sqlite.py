"""SqliteStorage: the Storage protocol on one SQLite file.

One connection per instance, used a whole transaction at a time, so coroutines never interleave
inside a transaction. A short call runs right on the event loop's thread when SQLite can take it
at once (a transaction is a few hundred microseconds; a hop to another thread and back costs about
as much again, measured in docs/PERFORMANCE.md); when another connection or process holds the
write lock, or the call may be long (whole-ledger reads), it runs on the store's own thread,
which waits for the lock up to the busy timeout without stalling the loop. Every write is one
`BEGIN IMMEDIATE` transaction, which serialises writers across connections and processes.

Balances are running totals (the `balances` table) updated in the same transaction as each
ledger row; the ledger stays the source of truth and `audit()` recomputes them from it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Literal, Self, TypeVar

from bot.domain.budget import (
    SERVER_SCOPE_MEMBER_ID,
    Allowance,
    Balance,
    BudgetExceeded,
    BudgetPolicy,
    RoleTier,
    TooManyJobs,
    period_key,
    period_resets_at,
)
from bot.domain.job import InteractionToken, JobOwner, JobRecord, LedgerEntry, MemberUsage
from bot.domain.lifecycle import (
    IllegalTransition,
    JobState,
    LeaseLost,
    Settlement,
    can_move,
    settlement_on_entering,
)
from bot.domain.queue import QueueEntry, QueueLimits, QueueSnapshot
from bot.domain.timing import TimingSample
from storage.common import (
    AUDIT_SQL,
    EFFECTIVE_ALLOWANCE_SQL,
    IN_PROGRESS_VALUES,
    INTERACTION_COLUMNS,
    JOB_COLUMNS,
    LEDGER_COLUMNS,
    RECENT_TIMINGS_SQL,
    ROLE_TIERS_SQL,
    SERVED_MEMORY,
    allowance_of,
    audit_line,
    interaction_values,
    job_record,
    lease_expiry,
    ledger_entry,
    move_columns,
    require_member,
    require_micro,
    require_role,
    require_scope,
    roles_value,
    snapshot_of,
    timing_sample,
)
from storage.migrate import migrate

BUSY_TIMEOUT_S = 10.0
T = TypeVar("T")

_JOB_SELECT = f"SELECT {', '.join(JOB_COLUMNS)}, settlement FROM job_records"
_LEDGER_SELECT = f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger"
_RECENT_TIMINGS_SQL = RECENT_TIMINGS_SQL.format(per_shape="?")
# The member's role ids come as one JSON array (a fixed statement, whatever their number).
_ALLOWANCE_SQL = EFFECTIVE_ALLOWANCE_SQL.format(
    guild=":guild",
    member=":member",
    default=":default",
    roles="role_id IN (SELECT value FROM json_each(:roles))",
)
_ROLE_TIERS_SQL = ROLE_TIERS_SQL.format(guild="?")

# Take a job's lease if it is unfinished and nobody else's live lease holds it (text moments in
# one format compare in time order).
_CLAIM_SQL = """
UPDATE jobs SET lease_owner = :owner, lease_until = :until
WHERE id = :id AND state NOT IN ('delivered', 'closed')
  AND (lease_owner IS NULL OR lease_owner IN (:owner, :dead) OR lease_until < :now)
"""

_QUEUED_SQL = (
    "SELECT id, guild_id, member_id, queued_at FROM jobs WHERE state = 'queued' "
    "ORDER BY queued_at, id"
)
# The latest turn of each member of these servers (moments as text compare in time order).
_TURNS_SQL = """
SELECT guild_id, member_id, MAX(at) AS at FROM submits
WHERE guild_id IN ({guilds}) AND at > ?
GROUP BY guild_id, member_id
"""
_AT_WAVESPEED_SQL = (
    "SELECT COUNT(*) FROM jobs WHERE state IN ('submitting', 'uncertain', 'submitted')"
)
_RECENT_SUBMITS_SQL = "SELECT COUNT(*) FROM submits WHERE at > ?"

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


def _enable_wal(db: sqlite3.Connection, attempts: int = 100) -> None:
    """Switch to WAL. Another process doing the same on a new file makes SQLite answer "locked"
    at once (the busy timeout does not cover this switch), so retry briefly."""
    for attempt in range(attempts):
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.02)


def _connect(path: str) -> sqlite3.Connection:
    """Open the file (WAL, foreign keys, busy timeout) and apply pending migrations; runs on the
    store's thread, which owns the connection from then on."""
    # used from the loop's thread and the store's own, never both at once (SqliteStorage._owner)
    db = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    try:
        db.row_factory = sqlite3.Row
        _enable_wal(db)
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        migrate(db)
        db.execute("PRAGMA busy_timeout = 0")  # calls on the loop never wait; see _call
    except BaseException:
        db.close()
        raise
    return db


def _is_busy(error: sqlite3.OperationalError) -> bool:
    """SQLite could not take the lock at once (another connection or process holds it)."""
    return getattr(error, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY


def _in_transaction(
    db: sqlite3.Connection,
    work: Callable[[sqlite3.Connection], T],
    begin: str = "BEGIN IMMEDIATE",
) -> T:
    """Run `work` in one transaction: committed if it returns, rolled back if it raises.
    BEGIN IMMEDIATE takes the write lock first (waiting up to the busy timeout), so a budget
    check and the rows it allows are never separated by another writer; a plain BEGIN suits
    several reads that must see one moment (WAL gives them a snapshot without the lock)."""
    db.execute(begin)
    try:
        result = work(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result


def _fetch_job(db: sqlite3.Connection, job_id: int) -> JobRecord:
    row = db.execute(f"{_JOB_SELECT} WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise LookupError(f"no job {job_id}")
    return job_record(row)


def _append(
    db: sqlite3.Connection,
    *,
    guild_id: int,
    member_id: int,
    kind: str,
    amount_micro: int,
    period: str,
    now: datetime,
    job_id: int | None = None,
    actor_id: int | None = None,
    note: str | None = None,
) -> None:
    """Append one ledger row."""
    db.execute(
        """
        INSERT INTO ledger (guild_id, member_id, kind, amount_micro, period_key,
                            job_id, actor_id, note, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        (guild_id, member_id, kind, amount_micro, period, job_id, actor_id, note, _utc_text(now)),
    )


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _as_stored(columns: dict[str, object]) -> dict[str, object]:
    """Column values as SQLite keeps them: moments as UTC text."""
    return {
        name: _utc_text(value) if isinstance(value, datetime) else value
        for name, value in columns.items()
    }


def _execute(db: sqlite3.Connection, sql: str, params: Sequence[object]) -> None:
    db.execute(sql, params)


def _set_columns(db: sqlite3.Connection, job_id: int, columns: dict[str, object]) -> None:
    """UPDATE a job's columns (the names come from this module, never from input)."""
    assignments = ", ".join(f"{name} = :{name}" for name in columns)
    db.execute(f"UPDATE jobs SET {assignments} WHERE id = :id", {**columns, "id": job_id})


def _add_to_balance(
    db: sqlite3.Connection,
    guild_id: int,
    member_id: int,
    period: str,
    column: Literal["granted", "held"],
    amount: int,
    allowance: int | None = None,
) -> bool:
    """Add `amount` to one running total — with an `allowance`, only if the budget can still
    afford it (False if not). The row is created on first use."""
    condition = "1" if allowance is None else ":allowance + granted - spent - held >= :amount"
    key = {
        "guild": guild_id,
        "member": member_id,
        "period": period,
        "amount": amount,
        "allowance": allowance,
    }
    updated = db.execute(
        f"UPDATE balances SET {column} = {column} + :amount "
        f"WHERE guild_id = :guild AND member_id = :member AND period_key = :period "
        f"AND {condition}",
        key,
    ).rowcount
    if updated or _balance_exists(db, guild_id, member_id, period):
        return bool(updated)
    new_row = "0 AS granted, 0 AS spent, 0 AS held"
    return bool(
        db.execute(
            f"INSERT INTO balances (guild_id, member_id, period_key, {column}) "
            f"SELECT :guild, :member, :period, :amount FROM (SELECT {new_row}) "
            f"WHERE {condition}",
            key,
        ).rowcount
    )


def _balance_exists(db: sqlite3.Connection, guild_id: int, member_id: int, period: str) -> bool:
    return (
        db.execute(
            "SELECT 1 FROM balances WHERE guild_id = ? AND member_id = ? AND period_key = ?",
            (guild_id, member_id, period),
        ).fetchone()
        is not None
    )


def _settle_balances(db: sqlite3.Connection, job: JobRecord, *, spent: int) -> None:
    """Release a job's held price on its member's and its server's rows (in its reservation's
    period), adding `spent` to what they spent."""
    db.execute(
        "UPDATE balances SET held = held - :price, spent = spent + :spent "
        "WHERE guild_id = :guild AND period_key = :period AND member_id IN (0, :member)",
        {
            "price": job.price_micro,
            "spent": spent,
            "guild": job.guild_id,
            "period": job.period_key,
            "member": job.member_id,
        },
    )


class SqliteStorage:
    """The Storage protocol on one SQLite file (or :memory:). Create it with `open()`."""

    def __init__(
        self,
        db: sqlite3.Connection,
        worker: ThreadPoolExecutor,
        policy: BudgetPolicy,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._worker = worker
        self._owner = threading.Lock()  # whoever holds it may use the connection
        self._policy = policy
        self._clock = clock  # must return aware datetimes

    @classmethod
    async def open(
        cls,
        path: str,
        policy: BudgetPolicy,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> Self:
        """Connect (WAL, foreign keys, busy timeout) and apply pending migrations."""
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wanbot-sqlite")
        try:
            db = await asyncio.get_running_loop().run_in_executor(worker, _connect, path)
        except BaseException:
            worker.shutdown(wait=False)
            raise
        return cls(db, worker, policy, clock or (lambda: datetime.now(UTC)))

    async def close(self) -> None:
        """Close the connection (after any transaction still running) and its thread."""
        await self._call(sqlite3.Connection.close, quick=False)
        self._worker.shutdown()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- results told between processes -------------------------------------------------------
    async def announce_result(self, prediction_id: str) -> bool:
        """SQLite has no way to tell other processes: False (they find the result by polling)."""
        return False

    async def listen_for_results(self, heard: Callable[[str], None]) -> None:
        """Nothing is ever announced to a process on SQLite (see announce_result)."""

    # --- plumbing -----------------------------------------------------------------------------
    async def _call(self, work: Callable[[sqlite3.Connection], T], *, quick: bool = True) -> T:
        """Run `work` (a whole transaction, or one read) with the connection.

        A quick call runs here, on the loop's thread, if the connection is free and SQLite
        answers at once (busy timeout 0): nothing to hop to. If SQLite reports the database busy
        — which it does before a transaction has changed anything — or the call may be long, it
        runs on the store's thread instead, which may wait for the lock. A call there runs to its
        end even if the awaiting task is cancelled, so a transaction is never left half done."""
        if quick and self._owner.acquire(blocking=False):
            try:
                return work(self._db)
            except sqlite3.OperationalError as error:
                if not _is_busy(error):
                    raise
            finally:
                self._owner.release()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, self._run_waiting, work)

    def _run_waiting(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on the store's thread, letting SQLite wait up to the busy timeout."""
        with self._owner:
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            try:
                return work(self._db)
            finally:
                if work is not sqlite3.Connection.close:
                    self._db.execute("PRAGMA busy_timeout = 0")

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` as one write transaction."""
        return await self._call(partial(_in_transaction, work=work))

    async def _read(
        self, sql: str, params: Sequence[object] = (), *, quick: bool = True
    ) -> list[sqlite3.Row]:
        return await self._call(lambda db: db.execute(sql, params).fetchall(), quick=quick)

    def _allowance(
        self,
        db: sqlite3.Connection,
        guild_id: int,
        member_id: int,
        roles: Collection[int] = (),
    ) -> Allowance:
        """A member's allowance (bot.domain.budget.effective_allowance: their own, else the
        highest tier of their `roles`, else the default), or the server's (member_id 0: its own,
        else the default; roles never count)."""
        server = member_id == SERVER_SCOPE_MEMBER_ID
        default = self._policy.server_allowance if server else self._policy.member_allowance
        row = db.execute(
            _ALLOWANCE_SQL,
            {
                "guild": guild_id,
                "member": member_id,
                "default": default,
                "roles": "[]" if server else json.dumps([int(role) for role in roles]),
            },
        ).fetchone()
        return allowance_of(row)

    def _balance(
        self,
        db: sqlite3.Connection,
        guild_id: int,
        member_id: int,
        now: datetime,
        roles: Collection[int] = (),
    ) -> Balance:
        """A member's balance (member_id 0: the server's) in the period containing `now`, for
        a member holding `roles`."""
        row = db.execute(
            "SELECT granted, spent, held FROM balances "
            "WHERE guild_id = ? AND member_id = ? AND period_key = ?",
            (guild_id, member_id, period_key(now, self._policy.period)),
        ).fetchone()
        granted, spent, held = row if row is not None else (0, 0, 0)
        allowance = self._allowance(db, guild_id, member_id, roles)
        return Balance(
            allowance=allowance.amount,
            granted=granted,
            spent=spent,
            held=held,
            resets_at=period_resets_at(now, self._policy.period),
            source=allowance.source,
            tier_role_id=allowance.role_id,
        )

    def _hold(
        self,
        db: sqlite3.Connection,
        owner: JobOwner,
        price: int,
        period: str,
        now: datetime,
        roles: Collection[int],
    ) -> None:
        """Hold `price` on the server's budget, then on the member's (their allowance by their
        `roles`): one conditional update each, in that fixed order. Raises BudgetExceeded (the
        member's first) if either is short; the caller's transaction then rolls both back."""
        for member_id in (SERVER_SCOPE_MEMBER_ID, owner.member_id):  # the fixed lock order
            # read inside this BEGIN IMMEDIATE transaction: no allowance or tier changes under it
            allowance = self._allowance(db, owner.guild_id, member_id, roles).amount
            if not _add_to_balance(db, owner.guild_id, member_id, period, "held", price, allowance):
                break
        else:
            return
        # refused: the budget that refused, and the member's when the server's did, are read as
        # they were before this transaction
        member = self._balance(db, owner.guild_id, owner.member_id, now, roles)
        if member.available < price:
            raise BudgetExceeded("member", price, member)
        raise BudgetExceeded("server", price, self._balance(db, owner.guild_id, 0, now))

    def _admin_row(
        self,
        kind: Literal["grant", "limit"],
        guild_id: int,
        member_id: int,
        amount_micro: int,
        actor_id: int,
        note: str | None,
    ) -> Callable[[sqlite3.Connection], None]:
        """The transaction that writes a grant (and its running total) or an allowance."""
        require_scope(member_id)
        now = self._clock()
        period = period_key(now, self._policy.period)

        def write(db: sqlite3.Connection) -> None:
            _append(
                db,
                guild_id=guild_id,
                member_id=member_id,
                kind=kind,
                amount_micro=amount_micro,
                period=period,
                now=now,
                actor_id=actor_id,
                note=note,
            )
            if kind == "grant":
                _add_to_balance(db, guild_id, member_id, period, "granted", amount_micro)

        return write

    # --- money + jobs -------------------------------------------------------------------------
    async def reserve(
        self,
        owner: JobOwner,
        request_json: str,
        price_micro: int,
        max_in_flight: int,
        *,
        lease_owner: str | None = None,
        lease_s: float = 0.0,
        interaction: InteractionToken | None = None,
        roles: Collection[int] = (),
        locale: str | None = None,
    ) -> JobRecord:
        """Check the in-flight limit and the member and server budgets, then write the job and
        its reserve row, all in one transaction; with `lease_owner`, leased to it for `lease_s`
        seconds; with `interaction`, keeping its token; the member's allowance counts the tiers
        of `roles`, kept with the job with the member's `locale`. Raises TooManyJobs /
        BudgetExceeded, writing nothing."""
        require_micro(price_micro, "price", minimum=0)
        require_member(owner.member_id)
        roles = tuple(roles)  # read inside the transaction, perhaps on the store's thread
        now = self._clock()
        period = period_key(now, self._policy.period)
        lease_until = None if lease_owner is None else lease_expiry(lease_owner, lease_s, now)
        app_id, token, expires_at = interaction_values(interaction)
        marks = ", ".join("?" for _ in IN_PROGRESS_VALUES)

        def write(db: sqlite3.Connection) -> JobRecord:
            (count,) = db.execute(
                f"SELECT COUNT(*) FROM jobs "
                f"WHERE guild_id = ? AND member_id = ? AND state IN ({marks})",
                (owner.guild_id, owner.member_id, *IN_PROGRESS_VALUES),
            ).fetchone()
            if count >= max_in_flight:
                raise TooManyJobs(max_in_flight)
            self._hold(db, owner, price_micro, period, now, roles)
            cursor = db.execute(
                """
                INSERT INTO jobs (guild_id, channel_id, member_id, request_json, price_micro,
                                  period_key, state, created_at, lease_owner, lease_until,
                                  interaction_app_id, interaction_token, interaction_expires_at,
                                  member_locale, member_roles)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
                    lease_owner,
                    None if lease_until is None else _utc_text(lease_until),
                    app_id,
                    token,
                    None if expires_at is None else _utc_text(expires_at),
                    locale,
                    roles_value(roles),
                ),
            )
            job_id = cursor.lastrowid
            assert job_id is not None
            _append(
                db,
                guild_id=owner.guild_id,
                member_id=owner.member_id,
                kind="reserve",
                amount_micro=price_micro,
                period=period,
                now=now,
                job_id=job_id,
            )
            return _fetch_job(db, job_id)

        return await self._write(write)

    async def advance(
        self, job_id: int, to: JobState, *, holder: str | None = None, **changes: object
    ) -> JobRecord:
        """Move a job to `to` with `changes`, writing the ledger row the move settles (and its
        running totals), in one transaction. Raises IllegalTransition for a move the lifecycle
        forbids, and LeaseLost when `holder` no longer holds the job's lease, changing nothing."""
        now = self._clock()

        def write(db: sqlite3.Connection) -> JobRecord:
            job = _fetch_job(db, job_id)
            if holder is not None and job.lease_owner != holder:
                raise LeaseLost(job_id, holder, job.lease_owner)
            if not can_move(job.state, to):
                raise IllegalTransition(job_id, job.state, to)
            columns = _as_stored(move_columns(job, to, changes, now))
            settlement = settlement_on_entering(to)
            # Only a job from before the lifecycle (schema 2) can already be settled: that
            # version charged on completion, before delivery. Its settlement stands.
            if settlement is not None and job.settlement is None:
                _append(
                    db,
                    guild_id=job.guild_id,
                    member_id=job.member_id,
                    kind=settlement.value,
                    amount_micro=job.price_micro,
                    period=job.period_key,
                    now=now,
                    job_id=job.id,
                )
                spent = job.price_micro if settlement is Settlement.CHARGE else 0
                _settle_balances(db, job, spent=spent)
            _set_columns(db, job_id, columns)
            return _fetch_job(db, job_id)

        return await self._write(write)

    async def forget_interaction(self, job_id: int) -> None:
        """Clear the job's interaction token (Discord refused it; no state change)."""
        await self._write(
            partial(_set_columns, job_id=job_id, columns=dict.fromkeys(INTERACTION_COLUMNS))
        )

    async def set_wavespeed_status(self, job_id: int, wavespeed_status: str) -> None:
        """Remember the last status WaveSpeed reported (no state change)."""
        await self._write(
            partial(_set_columns, job_id=job_id, columns={"wavespeed_status": wavespeed_status})
        )

    async def known_predictions(self, prediction_ids: Collection[str]) -> set[str]:
        """Which of these WaveSpeed task ids already belong to a job (its task, or the one it
        submitted before a retry)."""
        ids = list(prediction_ids)
        if not ids:
            return set()
        marks = ", ".join("?" for _ in ids)
        rows = await self._read(
            f"SELECT prediction_id AS id FROM jobs WHERE prediction_id IN ({marks}) "
            f"UNION SELECT retried_prediction_id FROM jobs "
            f"WHERE retried_prediction_id IN ({marks})",
            ids * 2,
        )
        return {row["id"] for row in rows}

    async def get_job(self, job_id: int) -> JobRecord | None:
        """One job, or None."""
        rows = await self._read(f"{_JOB_SELECT} WHERE id = ?", (job_id,))
        return job_record(rows[0]) if rows else None

    async def unfinished_jobs(self) -> list[JobRecord]:
        """Jobs not in a final state, oldest first."""
        rows = await self._read(
            f"{_JOB_SELECT} WHERE state NOT IN ('delivered', 'closed') ORDER BY id", quick=False
        )
        return [job_record(row) for row in rows]

    async def recent_jobs(self, guild_id: int, member_id: int, limit: int = 5) -> list[JobRecord]:
        """A member's latest jobs in a server, newest first."""
        rows = await self._read(
            f"{_JOB_SELECT} WHERE guild_id = ? AND member_id = ? ORDER BY id DESC LIMIT ?",
            (guild_id, member_id, limit),
        )
        return [job_record(row) for row in rows]

    # --- leases -------------------------------------------------------------------------------
    async def claim(
        self, job_id: int, owner: str, lease_s: float, *, dead_owner: str | None = None
    ) -> JobRecord | None:
        """Take the job's lease if it is unfinished and free (nobody's, `owner`'s, `dead_owner`'s
        or run out); the job, or None if it is final or another live process holds it."""
        now = self._clock()
        key = {
            "id": job_id,
            "owner": owner,
            "dead": dead_owner,
            "until": _utc_text(lease_expiry(owner, lease_s, now)),
            "now": _utc_text(now),
        }

        def write(db: sqlite3.Connection) -> JobRecord | None:
            if not db.execute(_CLAIM_SQL, key).rowcount:
                return None
            return _fetch_job(db, job_id)

        return await self._write(write)

    async def renew(self, job_ids: Collection[int], owner: str, lease_s: float) -> set[int]:
        """Extend the leases `owner` still holds among `job_ids`; return those renewed."""
        ids = list(job_ids)
        if not ids:
            return set()
        until = _utc_text(lease_expiry(owner, lease_s, self._clock()))
        marks = ", ".join("?" for _ in ids)
        sql = (
            f"UPDATE jobs SET lease_until = ? WHERE lease_owner = ? AND id IN ({marks}) "
            "RETURNING id"
        )
        rows = await self._write(lambda db: db.execute(sql, (until, owner, *ids)).fetchall())
        return {row["id"] for row in rows}

    async def release(self, job_id: int, owner: str) -> None:
        """Give up the job's lease if `owner` holds it."""
        await self._write(
            partial(
                _execute,
                sql="UPDATE jobs SET lease_owner = NULL, lease_until = NULL "
                "WHERE id = ? AND lease_owner = ?",
                params=(job_id, owner),
            )
        )

    # --- the local queue and timings ----------------------------------------------------------
    async def queue_snapshot(self, window_s: float = 60.0) -> QueueSnapshot:
        """The queued jobs (oldest first), the recent turns of their servers and members, the
        jobs at WaveSpeed and the submits of the last `window_s`, read in one transaction."""
        now = self._clock()
        since_turn = _utc_text(now - SERVED_MEMORY)
        since_submit = _utc_text(now - timedelta(seconds=window_s))

        def read(db: sqlite3.Connection) -> QueueSnapshot:
            entries = tuple(
                QueueEntry(row["id"], row["guild_id"], row["member_id"], _moment(row["queued_at"]))
                for row in db.execute(_QUEUED_SQL)
            )
            guilds = sorted({entry.guild_id for entry in entries})
            marks = ", ".join("?" for _ in guilds)
            turns = db.execute(
                f"{_TURNS_SQL.format(guilds=marks)}", (*guilds, since_turn)
            ).fetchall()
            (at_wavespeed,) = db.execute(_AT_WAVESPEED_SQL).fetchone()
            (recent,) = db.execute(_RECENT_SUBMITS_SQL, (since_submit,)).fetchone()
            return snapshot_of(
                entries,
                [(row["guild_id"], row["member_id"], _moment(row["at"])) for row in turns],
                at_wavespeed,
                recent,
            )

        # on the store's thread: with thousands queued, the read would hold the loop too long
        return await self._call(partial(_in_transaction, work=read, begin="BEGIN"), quick=False)

    async def admit(self, job_id: int, owner: str, limits: QueueLimits) -> JobRecord | None:
        """Move the queued job `owner` follows to `submitting` if the account's limits leave
        room, logging the submit, in one transaction; None (changing nothing) if they do not,
        or if the job is no longer queued or followed by `owner`."""
        now = self._clock()
        since_submit = _utc_text(now - timedelta(seconds=limits.window_s))

        def write(db: sqlite3.Connection) -> JobRecord | None:
            job = _fetch_job(db, job_id)
            if job.state is not JobState.QUEUED or job.lease_owner != owner:
                return None
            (at_wavespeed,) = db.execute(_AT_WAVESPEED_SQL).fetchone()
            (recent,) = db.execute(_RECENT_SUBMITS_SQL, (since_submit,)).fetchone()
            if at_wavespeed >= limits.max_concurrent or recent >= limits.max_per_minute:
                return None
            _set_columns(db, job_id, _as_stored(move_columns(job, JobState.SUBMITTING, {}, now)))
            db.execute(
                "INSERT INTO submits (job_id, guild_id, member_id, at) VALUES (?, ?, ?, ?)",
                (job_id, job.guild_id, job.member_id, _utc_text(now)),
            )
            return _fetch_job(db, job_id)

        return await self._write(write)

    async def record_timing(self, job_id: int, sample: TimingSample) -> None:
        """Keep a finished job's timings (once: a second record of the job changes nothing)."""
        now = _utc_text(self._clock())
        await self._write(
            partial(
                _execute,
                sql="INSERT INTO job_timings (job_id, shape, local_wait_s, queue_s, generation_s, "
                "recorded_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id) DO NOTHING",
                params=(
                    job_id,
                    sample.shape,
                    sample.local_wait_s,
                    sample.queue_s,
                    sample.generation_s,
                    now,
                ),
            )
        )

    async def recent_timings(self, per_shape: int) -> list[TimingSample]:
        """The latest `per_shape` timings of each shape, oldest first."""
        rows = await self._read(_RECENT_TIMINGS_SQL, (per_shape,), quick=False)
        return [timing_sample(row) for row in rows]

    # --- budgets ------------------------------------------------------------------------------
    async def member_balance(
        self, guild_id: int, member_id: int, *, roles: Collection[int] = ()
    ) -> Balance:
        """A member's budget in the current period, their allowance counting the tiers of the
        `roles` they hold."""
        now = self._clock()
        held = tuple(roles)
        return await self._call(lambda db: self._balance(db, guild_id, member_id, now, held))

    async def server_balance(self, guild_id: int) -> Balance:
        """The server's budget in the current period (every member's jobs count against it)."""
        now = self._clock()
        return await self._call(lambda db: self._balance(db, guild_id, SERVER_SCOPE_MEMBER_ID, now))

    async def grant(
        self, guild_id: int, member_id: int, amount_micro: int, actor_id: int, note: str | None
    ) -> None:
        """Add (or with a negative amount, remove) money for this period. member_id 0 = server."""
        require_micro(amount_micro, "grant")
        await self._write(
            self._admin_row("grant", guild_id, member_id, amount_micro, actor_id, note)
        )

    async def set_allowance(
        self, guild_id: int, member_id: int, amount_micro: int, actor_id: int
    ) -> None:
        """Set a per-period allowance (a `limit` ledger row; latest wins). member_id 0 = server."""
        require_micro(amount_micro, "allowance", minimum=0)
        await self._write(
            self._admin_row("limit", guild_id, member_id, amount_micro, actor_id, None)
        )

    async def set_role_allowance(
        self, guild_id: int, role_id: int, amount_micro: int | None, actor_id: int
    ) -> None:
        """Set (or with None, clear) a role's tier: an append-only role_allowances row."""
        require_role(role_id)
        if amount_micro is not None:
            require_micro(amount_micro, "allowance", minimum=0)
        row = (guild_id, role_id, amount_micro, actor_id, _utc_text(self._clock()))
        await self._write(
            partial(
                _execute,
                sql="INSERT INTO role_allowances (guild_id, role_id, amount_micro, actor_id, "
                "created_at) VALUES (?, ?, ?, ?, ?)",
                params=row,
            )
        )

    async def role_tiers(self, guild_id: int) -> list[RoleTier]:
        """A server's current role tiers, largest first."""
        rows = await self._read(_ROLE_TIERS_SQL, (guild_id,))
        return [
            RoleTier(
                row["role_id"], row["amount_micro"], row["actor_id"], _moment(row["created_at"])
            )
            for row in rows
        ]

    async def usage(self, guild_id: int) -> list[MemberUsage]:
        """Spend (charges) and jobs per member in the current period, largest spend first."""
        period = period_key(self._clock(), self._policy.period)
        rows = await self._read(_USAGE_SQL, (guild_id, period), quick=False)
        return [MemberUsage(row["member_id"], row["spent_micro"], row["jobs"]) for row in rows]

    async def ledger(self, guild_id: int, period_key: str | None = None) -> list[LedgerEntry]:
        """Ledger rows of a server, oldest first; only one period when period_key is given."""
        rows = await self._read(
            f"{_LEDGER_SELECT} WHERE guild_id = ? AND (? IS NULL OR period_key = ?) ORDER BY id",
            (guild_id, period_key, period_key),
            quick=False,
        )
        return [ledger_entry(row) for row in rows]

    async def audit(self) -> list[str]:
        """Every running total that differs from what the ledger adds up to (empty: clean)."""
        rows = await self._read(AUDIT_SQL, quick=False)
        return [audit_line(row) for row in rows]

    # --- per-server and bot-wide settings (key/value text) -------------------------------------
    async def get_guild_setting(self, guild_id: int, key: str) -> str | None:
        """A server's setting, or None."""
        rows = await self._read(
            "SELECT value FROM guild_settings WHERE guild_id = ? AND key = ?", (guild_id, key)
        )
        return rows[0]["value"] if rows else None

    async def set_guild_setting(self, guild_id: int, key: str, value: str | None) -> None:
        """Set a server's setting; None deletes it."""
        if value is None:
            sql = "DELETE FROM guild_settings WHERE guild_id = ? AND key = ?"
            params: tuple[object, ...] = (guild_id, key)
        else:
            sql = (
                "INSERT INTO guild_settings (guild_id, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (guild_id, key) DO UPDATE SET value = excluded.value"
            )
            params = (guild_id, key, value)
        await self._write(partial(_execute, sql=sql, params=params))

    async def get_bot_setting(self, key: str) -> str | None:
        """A bot-wide setting, or None."""
        rows = await self._read("SELECT value FROM bot_settings WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    async def set_bot_setting(self, key: str, value: str | None) -> None:
        """Set a bot-wide setting; None deletes it."""
        if value is None:
            sql, params = "DELETE FROM bot_settings WHERE key = ?", (key,)
        else:
            sql = (
                "INSERT INTO bot_settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            )
            params = (key, value)
        await self._write(partial(_execute, sql=sql, params=params))

    # --- health and metrics -------------------------------------------------------------------
    async def ping(self) -> None:
        """One trivial query; it reads the schema, so a missing or unreadable file fails too."""
        await self._read("SELECT 1 FROM sqlite_master LIMIT 1")

    async def job_counts(self) -> dict[str, int]:
        """How many jobs are in each state (states without a job are left out)."""
        rows = await self._read(
            "SELECT state, COUNT(*) AS jobs FROM jobs GROUP BY state", quick=False
        )
        return {row["state"]: row["jobs"] for row in rows}

    async def spend_by_guild(self) -> dict[int, int]:
        """What each server was charged in the current period, in micro-dollars; read from the
        servers' running totals, which equal the period's charge rows (`audit` checks)."""
        period = period_key(self._clock(), self._policy.period)
        rows = await self._read(
            "SELECT guild_id, spent FROM balances "
            "WHERE member_id = ? AND period_key = ? AND spent <> 0",
            (SERVER_SCOPE_MEMBER_ID, period),
            quick=False,
        )
        return {row["guild_id"]: row["spent"] for row in rows}

    # --- /history -------------------------------------------------------------------------------
    async def history(
        self, guild_id: int, member_id: int, *, offset: int, limit: int
    ) -> list[JobRecord]:
        """One page of a member's jobs in a server, newest first."""
        rows = await self._read(
            f"{_JOB_SELECT} WHERE guild_id = ? AND member_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
            (guild_id, member_id, limit, offset),
        )
        return [job_record(row) for row in rows]

    async def history_count(self, guild_id: int, member_id: int) -> int:
        """How many jobs a member has in a server (every state)."""
        rows = await self._read(
            "SELECT COUNT(*) AS jobs FROM jobs WHERE guild_id = ? AND member_id = ?",
            (guild_id, member_id),
        )
        return int(rows[0]["jobs"])

    # --- money alerts -------------------------------------------------------------------------
    async def claim_alert(self, guild_id: int, key: str) -> bool:
        """Write the alert marker if absent; True only for the writer (one statement, under
        SQLite's write lock)."""
        params = (guild_id, key, _utc_text(self._clock()))

        def write(db: sqlite3.Connection) -> bool:
            inserted = db.execute(
                "INSERT INTO guild_settings (guild_id, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (guild_id, key) DO NOTHING",
                params,
            )
            return inserted.rowcount == 1

        return await self._write(write)

    async def guilds_with_setting(self, key: str) -> dict[int, str]:
        """Every server that has the setting `key`, with its value."""
        rows = await self._read(
            "SELECT guild_id, value FROM guild_settings WHERE key = ?", (key,), quick=False
        )
        return {row["guild_id"]: row["value"] for row in rows}
