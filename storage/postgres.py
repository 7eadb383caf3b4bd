"""PostgresStorage: the Storage protocol on PostgreSQL, with asyncpg.

A pool of connections; every write is one transaction at READ COMMITTED. Money is checked and
moved on running totals (the `balances` table: granted, spent and held per server, member and
period, the server's row counting every member's money) in the same transaction as the ledger
row that records it and the job change that causes it.

Concurrency without a global lock: a reservation takes its money with one conditional UPDATE
per budget (`… SET held = held + price WHERE allowance + granted - spent - held >= price`).
PostgreSQL re-checks that predicate on the newest row after waiting for a concurrent updater's
lock, so two reservations can never both take the last of a budget. Every transaction locks
balances rows in one order (the server's, then the member's), and a job's row before either, so
they queue instead of deadlocking.

The URL is libpq-style (`postgresql://user:password@host:port/database`); query parameters
asyncpg does not know are sent as server settings, so `?search_path=wanbot` keeps wanbot's tables
in schema `wanbot`. The password never appears in a log line, an error or a repr.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Self
from urllib.parse import parse_qsl, unquote, urlsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from bot.domain.budget import (
    SERVER_SCOPE_MEMBER_ID,
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
    load_sql_migrations,
    move_columns,
    require_member,
    require_micro,
    require_role,
    require_scope,
    roles_value,
    snapshot_of,
    timing_sample,
)
from storage.pg_results import APPLICATION_NAME, ResultListener, announce

POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})
MIGRATIONS_FOLDER = "pg_migrations"
MAX_CONNECTIONS = 10

Connection = PoolConnectionProxy

# One key for every process migrating this database ("wanbot" in ASCII).
_MIGRATION_LOCK = 0x77616E626F74
_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    only_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    version  INTEGER NOT NULL
);
INSERT INTO schema_version (version) VALUES (0) ON CONFLICT DO NOTHING;
"""
# What a failed connection attempt raises: the network, the server, or asyncpg itself.
_CONNECT_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

_JOB_LIST = ", ".join(JOB_COLUMNS)
_JOB_SELECT = f"SELECT {_JOB_LIST}, settlement FROM job_records"
_RECENT_TIMINGS_SQL = RECENT_TIMINGS_SQL.format(per_shape="$1")
# One key for every process admitting queued jobs ("wanbotQ" in ASCII).
_ADMISSION_LOCK = 0x77616E626F7451
_QUEUED_SQL = (
    "SELECT id, guild_id, member_id, queued_at FROM jobs WHERE state = 'queued' "
    "ORDER BY queued_at, id"
)
_TURNS_SQL = """
SELECT guild_id, member_id, max(at) AS at FROM submits
WHERE guild_id = ANY($1::bigint[]) AND at > $2
GROUP BY guild_id, member_id
"""
_AT_WAVESPEED_SQL = (
    "SELECT count(*) FROM jobs WHERE state IN ('submitting', 'uncertain', 'submitted')"
)
_RECENT_SUBMITS_SQL = "SELECT count(*) FROM submits WHERE at > $1"


def _allowance_sql(roles: str) -> str:
    """The allowance of budget $2 (a member, or 0 for the server) in server $1, for a member
    holding the role ids in parameter `roles` (none for the server): the row of
    EFFECTIVE_ALLOWANCE_SQL, with the default $4."""
    return EFFECTIVE_ALLOWANCE_SQL.format(
        guild="$1", member="$2", default="$4::bigint", roles=f"role_id = ANY({roles}::bigint[])"
    )


# One budget in period $3, for a member holding roles $5; a budget nothing has touched yet has
# no row, and counts zeros.
_BALANCE_SQL = f"""
SELECT effective.rank, effective.amount_micro, effective.role_id,
       COALESCE(granted, 0) AS granted, COALESCE(spent, 0) AS spent, COALESCE(held, 0) AS held
FROM ({_allowance_sql("$5")}) AS effective
LEFT JOIN balances ON guild_id = $1 AND member_id = $2 AND period_key = $3
"""

# A reservation needs both rows to hold its price: the server's (member 0) and the member's.
# The VALUES of an INSERT take the target columns' types, so $2 is a BIGINT.
_ENSURE_BALANCES_SQL = """
INSERT INTO balances (guild_id, member_id, period_key) VALUES ($1, 0, $3), ($1, $2, $3)
ON CONFLICT DO NOTHING
"""

# Hold price $5 on one budget if it can pay (its allowance counting the tiers of roles $6): no
# row comes back when it cannot. The allowance is read in this statement, so in the transaction.
_HOLD_SQL = f"""
UPDATE balances SET held = held + $5
WHERE guild_id = $1 AND member_id = $2 AND period_key = $3
  AND (SELECT amount_micro FROM ({_allowance_sql("$6")}) AS effective)
      + granted - spent - held >= $5
RETURNING true
"""

_IN_FLIGHT_SQL = """
SELECT count(*) FROM jobs WHERE guild_id = $1 AND member_id = $2 AND state = ANY($3::text[])
"""

# The job and its reserve row in one statement (the foreign key is checked at its end).
_INSERT_JOB_SQL = f"""
WITH job AS (
    INSERT INTO jobs (guild_id, channel_id, member_id, request_json, price_micro, period_key,
                      state, created_at, lease_owner, lease_until,
                      interaction_app_id, interaction_token, interaction_expires_at,
                      member_locale, member_roles)
    VALUES ($1, $2, $3, $4, $5, $6, 'reserved', $7, $8, $9, $10, $11, $12, $13, $14)
    RETURNING {_JOB_LIST}
), reserve AS (
    INSERT INTO ledger (guild_id, member_id, kind, amount_micro, period_key, job_id, created_at)
    SELECT guild_id, member_id, 'reserve', price_micro, period_key, id, created_at FROM job
)
SELECT {_JOB_LIST}, NULL AS settlement FROM job
"""

# Take job $1's lease for owner $2 until $3 if it is unfinished and nobody else's live lease (at
# $4) holds it, or only dead owner $5's. A claim that waited for another's lock re-checks this on
# the row that one left, so two processes can never both take a job.
_CLAIM_SQL = """
UPDATE jobs SET lease_owner = $2, lease_until = $3
WHERE id = $1 AND state NOT IN ('delivered', 'closed')
  AND (lease_owner IS NULL OR lease_owner = $2 OR lease_owner = $5 OR lease_until < $4)
RETURNING true
"""

# A settlement takes price $4 off what is held, and adds $5 (the price, or 0) to what is spent.
_SETTLE_SQL = """
UPDATE balances SET held = held - $4, spent = spent + $5
WHERE guild_id = $1 AND member_id = $2 AND period_key = $3
"""

_GRANT_SQL = """
INSERT INTO balances (guild_id, member_id, period_key, granted) VALUES ($1, $2, $3, $4)
ON CONFLICT (guild_id, member_id, period_key)
DO UPDATE SET granted = balances.granted + excluded.granted
"""

_ROLE_TIER_SQL = """
INSERT INTO role_allowances (guild_id, role_id, amount_micro, actor_id, created_at)
VALUES ($1, $2, $3, $4, $5)
"""
_ROLE_TIERS_SQL = ROLE_TIERS_SQL.format(guild="$1")

_APPEND_SQL = """
INSERT INTO ledger (guild_id, member_id, kind, amount_micro, period_key, job_id, actor_id, note,
                    created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""

# A job's reserve and charge rows share its period, so both are counted from the ledger alone.
_USAGE_SQL = """
SELECT
    member_id,
    COALESCE(SUM(amount_micro) FILTER (WHERE kind = 'charge'), 0)::BIGINT AS spent_micro,
    COUNT(*) FILTER (WHERE kind = 'reserve') AS jobs
FROM ledger
WHERE guild_id = $1 AND period_key = $2 AND kind IN ('reserve', 'charge')
GROUP BY member_id
ORDER BY spent_micro DESC, jobs DESC, member_id
"""


@dataclass(frozen=True)
class PostgresTarget:
    """Where a PostgreSQL URL points, safe to show: str() names host, port and database. The
    secrets it carries are kept only to be blotted out of error messages."""

    host: str
    port: int
    database: str
    secrets: frozenset[str] = field(default=frozenset(), repr=False)

    @classmethod
    def parse(cls, url: str) -> Self:
        """Read a postgresql:// or postgres:// URL. A malformed one raises ValueError, whose
        message never repeats the URL (it may hold a password)."""
        try:
            parts = urlsplit(url)
            port = parts.port or 5432
            query = dict(parse_qsl(parts.query, strict_parsing=True))
        except ValueError:  # its message may quote the port or a query field: not repeated
            raise ValueError("malformed PostgreSQL URL (check the port and the query)") from None
        if parts.scheme.lower() not in POSTGRES_SCHEMES:
            raise ValueError("not a PostgreSQL URL: use postgresql://user@host:port/database")
        secrets = {parts.password, query.get("password"), query.get("sslpassword")}
        secrets |= {unquote(secret) for secret in secrets if secret}
        return cls(
            host=parts.hostname or "default host",
            port=port,
            database=unquote(parts.path.lstrip("/")) or "default database",
            secrets=frozenset(secret for secret in secrets if secret),
        )

    def redact(self, text: str) -> str:
        """`text` with every secret of the URL replaced by ***."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def __str__(self) -> str:
        return f"{self.host}:{self.port}/{self.database}"


async def _create_pool(url: str, target: PostgresTarget, max_size: int) -> asyncpg.Pool:
    """A pool with one connection open, or ConnectionError naming the target (no password).
    The error is raised outside the handler, so it carries no chained original either."""
    try:
        return await asyncpg.create_pool(url, min_size=1, max_size=max_size)
    except _CONNECT_ERRORS as error:
        reason = target.redact(f"{type(error).__name__}: {error}")
    raise ConnectionError(f"cannot connect to PostgreSQL at {target}: {reason}")


async def migrate(conn: Connection) -> int:
    """Apply the pending migrations of storage/pg_migrations, each in its own transaction under
    an advisory lock (so processes starting together apply each exactly once); return the
    schema version. A database newer than this code is refused."""
    migrations = load_sql_migrations(MIGRATIONS_FOLDER)
    latest = len(migrations)
    version = -1
    while version < latest:
        # READ COMMITTED: the version is read after the lock, so it shows the last holder's work
        async with conn.transaction(isolation="read_committed"):
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(_VERSION_TABLE)
            version = await conn.fetchval("SELECT version FROM schema_version")
            if version > latest:
                raise RuntimeError(
                    f"database schema version {version} is newer than this wanbot ({latest})"
                )
            if version < latest:
                migration = migrations[version]  # version N: the first N files are applied
                await conn.execute(migration.sql)
                await conn.execute("UPDATE schema_version SET version = $1", migration.version)
                version = migration.version
    return latest


class PostgresStorage:
    """The Storage protocol on a PostgreSQL database. Create it with `open()`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        target: PostgresTarget,
        policy: BudgetPolicy,
        clock: Callable[[], datetime],
        url: str,
    ) -> None:
        self._pool = pool
        self._target = target
        self._policy = policy
        self._clock = clock  # must return aware datetimes
        self._url = url  # holds the password: for the result listener's connection only
        self._listener: ResultListener | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        policy: BudgetPolicy,
        *,
        clock: Callable[[], datetime] | None = None,
        max_connections: int = MAX_CONNECTIONS,
    ) -> Self:
        """Connect a pool and apply pending migrations. Raises ValueError for a malformed URL and
        ConnectionError when the server cannot be reached; neither repeats the password."""
        target = PostgresTarget.parse(url)
        pool = await _create_pool(url, target, max_connections)
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, target, policy, clock or (lambda: datetime.now(UTC)), url)

    async def close(self) -> None:
        """Stop listening for results, then close the pool (waiting for connections in use to
        come back)."""
        if self._listener is not None:
            await self._listener.stop()
        await self._pool.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"PostgresStorage({self._target})"

    # --- results told between processes (storage.pg_results) -----------------------------------
    async def announce_result(self, prediction_id: str) -> bool:
        """Tell every process sharing the database that the task's result is in."""
        await announce(self._pool, prediction_id)
        return True

    async def listen_for_results(self, heard: Callable[[str], None]) -> None:
        """Call `heard(prediction_id)` for each result announced, by any process, until
        close()."""
        if self._listener is not None:
            raise RuntimeError("already listening for results")

        async def connect() -> asyncpg.Connection:
            settings = {"application_name": APPLICATION_NAME}
            return await asyncpg.connect(self._url, server_settings=settings)

        self._listener = ResultListener(connect, heard, self._target.redact)
        await self._listener.start()

    # --- plumbing -----------------------------------------------------------------------------
    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        """A transaction on a pooled connection: committed on success, rolled back on any
        exception (a cancelled one too: asyncpg waits out the cancelled statement first).
        READ COMMITTED whatever the server's default: the conditional holds rely on its re-check
        of a row another transaction just changed (stricter levels would fail instead)."""
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="read_committed"),
        ):
            yield conn

    def _period(self, now: datetime) -> str:
        return period_key(now, self._policy.period)

    def _default_allowance(self, scope: int) -> int:
        """The allowance of a budget with no `limit` row: the server's (scope 0) or a member's."""
        if scope == SERVER_SCOPE_MEMBER_ID:
            return self._policy.server_allowance
        return self._policy.member_allowance

    @staticmethod
    def _roles(scope: int, roles: Collection[int]) -> list[int]:
        """The role ids whose tiers count for a budget: the member's; none for the server's."""
        return [] if scope == SERVER_SCOPE_MEMBER_ID else [int(role) for role in roles]

    async def _balance(
        self,
        db: Connection | asyncpg.Pool,
        guild_id: int,
        scope: int,
        now: datetime,
        roles: Collection[int] = (),
    ) -> Balance:
        """The balance of a member's budget (holding `roles`), or of the server's (scope 0), in
        the period of now."""
        row = await db.fetchrow(
            _BALANCE_SQL,
            guild_id,
            scope,
            self._period(now),
            self._default_allowance(scope),
            self._roles(scope, roles),
        )
        allowance = allowance_of(row)
        return Balance(
            allowance=allowance.amount,
            granted=row["granted"],
            spent=row["spent"],
            held=row["held"],
            resets_at=period_resets_at(now, self._policy.period),
            source=allowance.source,
            tier_role_id=allowance.role_id,
        )

    async def _hold(
        self,
        conn: Connection,
        guild_id: int,
        scope: int,
        period: str,
        price_micro: int,
        roles: Collection[int],
    ) -> bool:
        """Hold the price on one budget if it can pay it (locking its row); False if not."""
        held = await conn.fetchval(
            _HOLD_SQL,
            guild_id,
            scope,
            period,
            self._default_allowance(scope),
            price_micro,
            self._roles(scope, roles),
        )
        return held is not None

    async def _refusal(
        self,
        conn: Connection,
        owner: JobOwner,
        price_micro: int,
        now: datetime,
        roles: Collection[int],
        *,
        server: bool,
    ) -> BudgetExceeded:
        """The refusal of a reservation whose hold failed, reported like SQLite does: the
        member's budget before the server's. `server` says the server's hold succeeded (so the
        member's failed). Only budgets this transaction left unchanged are read: the member's
        row is changed by no failed reservation, the server's only when its own hold worked."""
        member = await self._balance(conn, owner.guild_id, owner.member_id, now, roles)
        if server or member.available < price_micro:
            return BudgetExceeded("member", price_micro, member)
        server_balance = await self._balance(conn, owner.guild_id, SERVER_SCOPE_MEMBER_ID, now)
        return BudgetExceeded("server", price_micro, server_balance)

    @staticmethod
    async def _locked_job(conn: Connection, job_id: int) -> JobRecord:
        """Lock a job's row, then read it. Two statements on purpose: a statement that waited for
        the lock still reads the ledger as it was when it began, and would miss the settlement
        a concurrent move just committed; the second statement sees it."""
        if await conn.fetchval("SELECT true FROM jobs WHERE id = $1 FOR UPDATE", job_id) is None:
            raise LookupError(f"no job {job_id}")
        return job_record(await conn.fetchrow(f"{_JOB_SELECT} WHERE id = $1", job_id))

    @staticmethod
    async def _append(
        db: Connection | asyncpg.Pool,
        *,
        guild_id: int,
        member_id: int,
        kind: Literal["charge", "refund", "grant", "limit"],
        amount_micro: int,
        period: str,
        now: datetime,
        job_id: int | None = None,
        actor_id: int | None = None,
        note: str | None = None,
    ) -> None:
        await db.execute(
            _APPEND_SQL,
            guild_id,
            member_id,
            kind,
            amount_micro,
            period,
            job_id,
            actor_id,
            note,
            now,
        )

    async def _settle(
        self, conn: Connection, job: JobRecord, settlement: Settlement, now: datetime
    ) -> None:
        """Write the job's one charge or refund row, in the period of its reservation, and move
        its price out of `held` (into `spent` for a charge) on the server's and member's rows."""
        await self._append(
            conn,
            guild_id=job.guild_id,
            member_id=job.member_id,
            kind=settlement.value,
            amount_micro=job.price_micro,
            period=job.period_key,
            now=now,
            job_id=job.id,
        )
        spent = job.price_micro if settlement is Settlement.CHARGE else 0
        for scope in (SERVER_SCOPE_MEMBER_ID, job.member_id):  # the lock order of reserve()
            status = await conn.execute(
                _SETTLE_SQL, job.guild_id, scope, job.period_key, job.price_micro, spent
            )
            if status != "UPDATE 1":  # its reservation made the row: the totals have drifted
                raise RuntimeError(f"job {job.id}: no balance to settle for budget {scope}")

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
        now = self._clock()
        period = self._period(now)
        lease_until = None if lease_owner is None else lease_expiry(lease_owner, lease_s, now)
        guild_id, member_id = owner.guild_id, owner.member_id
        roles = tuple(roles)  # read twice when the member's hold is refused
        async with self._transaction() as conn:
            await conn.execute(_ENSURE_BALANCES_SQL, guild_id, member_id, period)
            server = await self._hold(
                conn, guild_id, SERVER_SCOPE_MEMBER_ID, period, price_micro, ()
            )
            member = server and await self._hold(
                conn, guild_id, member_id, period, price_micro, roles
            )
            # Counted after the server's row is locked: every reservation in this server queues
            # there, so the count includes the job of any that went before.
            in_flight = await conn.fetchval(_IN_FLIGHT_SQL, guild_id, member_id, IN_PROGRESS_VALUES)
            if in_flight >= max_in_flight:
                raise TooManyJobs(max_in_flight)
            if not member:
                raise await self._refusal(conn, owner, price_micro, now, roles, server=server)
            row = await conn.fetchrow(
                _INSERT_JOB_SQL,
                guild_id,
                owner.channel_id,
                member_id,
                request_json,
                price_micro,
                period,
                now,
                lease_owner,
                lease_until,
                *interaction_values(interaction),
                locale,
                roles_value(roles),
            )
            return job_record(row)

    async def advance(
        self, job_id: int, to: JobState, *, holder: str | None = None, **changes: object
    ) -> JobRecord:
        """Move a job to `to` with `changes`, writing the ledger row the move settles and the
        balances it moves, in one transaction. Raises IllegalTransition for a move the lifecycle
        forbids, and LeaseLost when `holder` no longer holds the job's lease, changing nothing."""
        now = self._clock()
        async with self._transaction() as conn:
            job = await self._locked_job(conn, job_id)
            if holder is not None and job.lease_owner != holder:
                raise LeaseLost(job_id, holder, job.lease_owner)
            if not can_move(job.state, to):
                raise IllegalTransition(job_id, job.state, to)
            columns = move_columns(job, to, changes, now)
            # the names are this module's (move_columns refuses others), the values parameters
            assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(columns, start=2))
            row = await conn.fetchrow(
                f"UPDATE jobs SET {assignments} WHERE id = $1 RETURNING {_JOB_LIST}",
                job_id,
                *columns.values(),
            )
            settlement = settlement_on_entering(to)
            # Only a job from before the lifecycle can already be settled (SQLite's version-2
            # rows); its settlement stands. PostgreSQL never held such a job, but the rule is one.
            if settlement is not None and job.settlement is None:
                await self._settle(conn, job, settlement, now)
            return job_record({**row, "settlement": job.settlement or settlement})

    async def forget_interaction(self, job_id: int) -> None:
        """Clear the job's interaction token (Discord refused it; no state change)."""
        cleared = ", ".join(f"{name} = NULL" for name in INTERACTION_COLUMNS)
        await self._pool.execute(f"UPDATE jobs SET {cleared} WHERE id = $1", job_id)

    async def set_wavespeed_status(self, job_id: int, wavespeed_status: str) -> None:
        """Remember the last status WaveSpeed reported (no state change)."""
        await self._pool.execute(
            "UPDATE jobs SET wavespeed_status = $2 WHERE id = $1", job_id, wavespeed_status
        )

    async def known_predictions(self, prediction_ids: Collection[str]) -> set[str]:
        """Which of these WaveSpeed task ids already belong to a job (its task, or the one it
        submitted before a retry)."""
        rows = await self._pool.fetch(
            "SELECT prediction_id AS id FROM jobs WHERE prediction_id = ANY($1::text[]) "
            "UNION SELECT retried_prediction_id FROM jobs "
            "WHERE retried_prediction_id = ANY($1::text[])",
            list(prediction_ids),
        )
        return {row["id"] for row in rows}

    async def get_job(self, job_id: int) -> JobRecord | None:
        """One job, or None."""
        row = await self._pool.fetchrow(f"{_JOB_SELECT} WHERE id = $1", job_id)
        return None if row is None else job_record(row)

    async def unfinished_jobs(self) -> list[JobRecord]:
        """Jobs not in a final state, oldest first."""
        rows = await self._pool.fetch(
            f"{_JOB_SELECT} WHERE state NOT IN ('delivered', 'closed') ORDER BY id"
        )
        return [job_record(row) for row in rows]

    async def recent_jobs(self, guild_id: int, member_id: int, limit: int = 5) -> list[JobRecord]:
        """A member's latest jobs in a server, newest first."""
        rows = await self._pool.fetch(
            f"{_JOB_SELECT} WHERE guild_id = $1 AND member_id = $2 ORDER BY id DESC LIMIT $3",
            guild_id,
            member_id,
            limit,
        )
        return [job_record(row) for row in rows]

    # --- leases -------------------------------------------------------------------------------
    async def claim(
        self, job_id: int, owner: str, lease_s: float, *, dead_owner: str | None = None
    ) -> JobRecord | None:
        """Take the job's lease if it is unfinished and free (nobody's, `owner`'s, `dead_owner`'s
        or run out); the job, or None if it is final or another live process holds it."""
        now = self._clock()
        until = lease_expiry(owner, lease_s, now)
        async with self._transaction() as conn:
            if await conn.fetchval(_CLAIM_SQL, job_id, owner, until, now, dead_owner) is None:
                return None
            # a statement of its own, so it sees a settlement committed while the claim waited
            return job_record(await conn.fetchrow(f"{_JOB_SELECT} WHERE id = $1", job_id))

    async def renew(self, job_ids: Collection[int], owner: str, lease_s: float) -> set[int]:
        """Extend the leases `owner` still holds among `job_ids`; return those renewed."""
        until = lease_expiry(owner, lease_s, self._clock())
        rows = await self._pool.fetch(
            "UPDATE jobs SET lease_until = $3 WHERE id = ANY($1::bigint[]) AND lease_owner = $2 "
            "RETURNING id",
            list(job_ids),
            owner,
            until,
        )
        return {row["id"] for row in rows}

    async def release(self, job_id: int, owner: str) -> None:
        """Give up the job's lease if `owner` holds it."""
        await self._pool.execute(
            "UPDATE jobs SET lease_owner = NULL, lease_until = NULL "
            "WHERE id = $1 AND lease_owner = $2",
            job_id,
            owner,
        )

    # --- the local queue and timings ----------------------------------------------------------
    async def queue_snapshot(self, window_s: float = 60.0) -> QueueSnapshot:
        """The queued jobs (oldest first), the recent turns of their servers and members, the
        jobs at WaveSpeed and the submits of the last `window_s`, read at one moment."""
        now = self._clock()
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            rows = await conn.fetch(_QUEUED_SQL)
            entries = tuple(
                QueueEntry(row["id"], row["guild_id"], row["member_id"], row["queued_at"])
                for row in rows
            )
            guilds = sorted({entry.guild_id for entry in entries})
            turns = await conn.fetch(_TURNS_SQL, guilds, now - SERVED_MEMORY)
            at_wavespeed = await conn.fetchval(_AT_WAVESPEED_SQL)
            recent = await conn.fetchval(_RECENT_SUBMITS_SQL, now - timedelta(seconds=window_s))
        return snapshot_of(
            entries,
            [(row["guild_id"], row["member_id"], row["at"]) for row in turns],
            at_wavespeed,
            recent,
        )

    async def admit(self, job_id: int, owner: str, limits: QueueLimits) -> JobRecord | None:
        """Move the queued job `owner` follows to `submitting` if the account's limits leave
        room, logging the submit, in one transaction; None (changing nothing) if they do not,
        or if the job is no longer queued or followed by `owner`. Admissions of every process
        queue on one advisory lock, so two can never both take the last slot."""
        now = self._clock()
        async with self._transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADMISSION_LOCK)
            job = await self._locked_job(conn, job_id)
            if job.state is not JobState.QUEUED or job.lease_owner != owner:
                return None
            at_wavespeed = await conn.fetchval(_AT_WAVESPEED_SQL)
            window = timedelta(seconds=limits.window_s)
            recent = await conn.fetchval(_RECENT_SUBMITS_SQL, now - window)
            if at_wavespeed >= limits.max_concurrent or recent >= limits.max_per_minute:
                return None
            columns = move_columns(job, JobState.SUBMITTING, {}, now)
            assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(columns, start=2))
            row = await conn.fetchrow(
                f"UPDATE jobs SET {assignments} WHERE id = $1 RETURNING {_JOB_LIST}",
                job_id,
                *columns.values(),
            )
            await conn.execute(
                "INSERT INTO submits (job_id, guild_id, member_id, at) VALUES ($1, $2, $3, $4)",
                job_id,
                job.guild_id,
                job.member_id,
                now,
            )
            return job_record({**row, "settlement": job.settlement})

    async def record_timing(self, job_id: int, sample: TimingSample) -> None:
        """Keep a finished job's timings (once: a second record of the job changes nothing)."""
        await self._pool.execute(
            "INSERT INTO job_timings (job_id, shape, local_wait_s, queue_s, generation_s, "
            "recorded_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id) DO NOTHING",
            job_id,
            sample.shape,
            sample.local_wait_s,
            sample.queue_s,
            sample.generation_s,
            self._clock(),
        )

    async def recent_timings(self, per_shape: int) -> list[TimingSample]:
        """The latest `per_shape` timings of each shape, oldest first."""
        rows = await self._pool.fetch(_RECENT_TIMINGS_SQL, per_shape)
        return [timing_sample(row) for row in rows]

    # --- budgets ------------------------------------------------------------------------------
    async def member_balance(
        self, guild_id: int, member_id: int, *, roles: Collection[int] = ()
    ) -> Balance:
        """A member's budget in the current period, their allowance counting the tiers of the
        `roles` they hold."""
        return await self._balance(self._pool, guild_id, member_id, self._clock(), roles)

    async def server_balance(self, guild_id: int) -> Balance:
        """The server's budget in the current period (every member's jobs count against it)."""
        return await self._balance(self._pool, guild_id, SERVER_SCOPE_MEMBER_ID, self._clock())

    async def grant(
        self, guild_id: int, member_id: int, amount_micro: int, actor_id: int, note: str | None
    ) -> None:
        """Add (or with a negative amount, remove) money for this period. member_id 0 = server."""
        require_micro(amount_micro, "grant")
        require_scope(member_id)
        now = self._clock()
        period = self._period(now)
        async with self._transaction() as conn:
            await self._append(
                conn,
                guild_id=guild_id,
                member_id=member_id,
                kind="grant",
                amount_micro=amount_micro,
                period=period,
                now=now,
                actor_id=actor_id,
                note=note,
            )
            await conn.execute(_GRANT_SQL, guild_id, member_id, period, amount_micro)

    async def set_allowance(
        self, guild_id: int, member_id: int, amount_micro: int, actor_id: int
    ) -> None:
        """Set a per-period allowance (a `limit` ledger row; latest wins). member_id 0 = server."""
        require_micro(amount_micro, "allowance", minimum=0)
        require_scope(member_id)
        now = self._clock()
        await self._append(
            self._pool,
            guild_id=guild_id,
            member_id=member_id,
            kind="limit",
            amount_micro=amount_micro,
            period=self._period(now),
            now=now,
            actor_id=actor_id,
        )

    async def set_role_allowance(
        self, guild_id: int, role_id: int, amount_micro: int | None, actor_id: int
    ) -> None:
        """Set (or with None, clear) a role's tier: an append-only role_allowances row."""
        require_role(role_id)
        if amount_micro is not None:
            require_micro(amount_micro, "allowance", minimum=0)
        await self._pool.execute(
            _ROLE_TIER_SQL, guild_id, role_id, amount_micro, actor_id, self._clock()
        )

    async def role_tiers(self, guild_id: int) -> list[RoleTier]:
        """A server's current role tiers, largest first."""
        rows = await self._pool.fetch(_ROLE_TIERS_SQL, guild_id)
        return [
            RoleTier(row["role_id"], row["amount_micro"], row["actor_id"], row["created_at"])
            for row in rows
        ]

    async def usage(self, guild_id: int) -> list[MemberUsage]:
        """Spend (charges) and jobs per member in the current period, largest spend first."""
        rows = await self._pool.fetch(_USAGE_SQL, guild_id, self._period(self._clock()))
        return [MemberUsage(row["member_id"], row["spent_micro"], row["jobs"]) for row in rows]

    async def ledger(self, guild_id: int, period_key: str | None = None) -> list[LedgerEntry]:
        """Ledger rows of a server, oldest first; only one period when period_key is given."""
        rows = await self._pool.fetch(
            f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger "
            "WHERE guild_id = $1 AND ($2::text IS NULL OR period_key = $2) ORDER BY id",
            guild_id,
            period_key,
        )
        return [ledger_entry(row) for row in rows]

    async def audit(self) -> list[str]:
        """Every running total that differs from what the ledger adds up to (empty: clean)."""
        return [audit_line(row) for row in await self._pool.fetch(AUDIT_SQL)]

    # --- per-server settings (key/value text) --------------------------------------------------
    async def get_guild_setting(self, guild_id: int, key: str) -> str | None:
        """A server's setting, or None."""
        return await self._pool.fetchval(
            "SELECT value FROM guild_settings WHERE guild_id = $1 AND key = $2", guild_id, key
        )

    async def set_guild_setting(self, guild_id: int, key: str, value: str | None) -> None:
        """Set a server's setting; None deletes it."""
        if value is None:
            await self._pool.execute(
                "DELETE FROM guild_settings WHERE guild_id = $1 AND key = $2", guild_id, key
            )
        else:
            await self._pool.execute(
                """
                INSERT INTO guild_settings (guild_id, key, value) VALUES ($1, $2, $3)
                ON CONFLICT (guild_id, key) DO UPDATE SET value = excluded.value
                """,
                guild_id,
                key,
                value,
            )

    # --- bot-wide settings (key/value text) ----------------------------------------------------
    async def get_bot_setting(self, key: str) -> str | None:
        """A bot-wide setting, or None."""
        return await self._pool.fetchval("SELECT value FROM bot_settings WHERE key = $1", key)

    async def set_bot_setting(self, key: str, value: str | None) -> None:
        """Set a bot-wide setting; None deletes it."""
        if value is None:
            await self._pool.execute("DELETE FROM bot_settings WHERE key = $1", key)
        else:
            await self._pool.execute(
                """
                INSERT INTO bot_settings (key, value) VALUES ($1, $2)
                ON CONFLICT (key) DO UPDATE SET value = excluded.value
                """,
                key,
                value,
            )

    # --- health and metrics -------------------------------------------------------------------
    async def ping(self) -> None:
        """One trivial query on a pooled connection (a closed pool or a gone server raises)."""
        await self._pool.fetchval("SELECT 1")

    async def job_counts(self) -> dict[str, int]:
        """How many jobs are in each state (states without a job are left out)."""
        rows = await self._pool.fetch("SELECT state, count(*) AS jobs FROM jobs GROUP BY state")
        return {row["state"]: row["jobs"] for row in rows}

    async def spend_by_guild(self) -> dict[int, int]:
        """What each server was charged in the current period, in micro-dollars; read from the
        servers' running totals, which equal the period's charge rows (`audit` checks)."""
        rows = await self._pool.fetch(
            "SELECT guild_id, spent FROM balances "
            "WHERE member_id = $1 AND period_key = $2 AND spent <> 0",
            SERVER_SCOPE_MEMBER_ID,
            self._period(self._clock()),
        )
        return {row["guild_id"]: row["spent"] for row in rows}

    # --- /history -------------------------------------------------------------------------------
    async def history(
        self, guild_id: int, member_id: int, *, offset: int, limit: int
    ) -> list[JobRecord]:
        """One page of a member's jobs in a server, newest first."""
        rows = await self._pool.fetch(
            f"{_JOB_SELECT} WHERE guild_id = $1 AND member_id = $2 "
            "ORDER BY id DESC LIMIT $3 OFFSET $4",
            guild_id,
            member_id,
            limit,
            offset,
        )
        return [job_record(row) for row in rows]

    async def history_count(self, guild_id: int, member_id: int) -> int:
        """How many jobs a member has in a server (every state)."""
        count = await self._pool.fetchval(
            "SELECT count(*) FROM jobs WHERE guild_id = $1 AND member_id = $2",
            guild_id,
            member_id,
        )
        return int(count)

    # --- money alerts -------------------------------------------------------------------------
    async def claim_alert(self, guild_id: int, key: str) -> bool:
        """Write the alert marker if absent; True only for the writer (the primary key decides
        between concurrent inserts)."""
        claimed = await self._pool.fetchval(
            """
            INSERT INTO guild_settings (guild_id, key, value) VALUES ($1, $2, $3)
            ON CONFLICT (guild_id, key) DO NOTHING RETURNING true
            """,
            guild_id,
            key,
            self._clock().astimezone(UTC).isoformat(timespec="microseconds"),  # as SQLite's
        )
        return claimed is True

    async def guilds_with_setting(self, key: str) -> dict[int, str]:
        """Every server that has the setting `key`, with its value."""
        rows = await self._pool.fetch(
            "SELECT guild_id, value FROM guild_settings WHERE key = $1", key
        )
        return {row["guild_id"]: row["value"] for row in rows}
