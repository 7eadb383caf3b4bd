"""Moving a wanbot database from SQLite to PostgreSQL (`wanbot migrate-db`), verified.

The source file is opened read-only and read in one snapshot (a single read transaction), so the
copy and its checks see one state of it; were another process to commit to it meanwhile, the copy
is refused before it commits. The target must be empty: its migrations are applied, then every
table is copied in one transaction, keeping every id (ledger rows point at job ids) with binary
COPY fed in batches. Before committing, the copy is checked against the same snapshot: row counts
per table, every row field by field, and the running balances against the ledger. After the commit
the target's own `audit()` has the last word.

Columns are read from both databases at run time and every column they share by name is copied, so
a column added to both schemas is copied without a change here. A column only the source has is
refused if it holds anything (that would be lost); one only the target has takes its default.

Nothing here ever repeats a PostgreSQL URL: errors name host, port and database, and any text that
comes back from the server or the driver has the URL's secrets blotted out.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from bot.domain.budget import BudgetPeriod, BudgetPolicy
from storage import database_path, is_postgres_url
from storage.common import AUDIT_SQL, audit_line
from storage.migrate import load_migrations
from storage.postgres import Connection, PostgresStorage, PostgresTarget, migrate

BATCH_ROWS = 10_000
T = TypeVar("T")


@dataclass(frozen=True)
class Table:
    """A table moved as it is; `key` orders its rows alike in both databases."""

    name: str
    key: tuple[str, ...]
    label: str  # what its rows are, for a person


# In copy order: the ledger's rows point at jobs.
TABLES = (
    Table("jobs", ("id",), "jobs"),
    Table("ledger", ("id",), "ledger rows"),
    Table("submits", ("id",), "submits"),
    Table("job_timings", ("job_id",), "job timings"),
    Table("balances", ("guild_id", "member_id", "period_key"), "balances"),
    Table("role_allowances", ("id",), "role tier changes"),
    Table("guild_settings", ("guild_id", "key"), "server settings"),
    Table("bot_settings", ("key",), "bot settings"),
)
TABLE_NAMES = tuple(table.name for table in TABLES)

_AUDIT_LINES_SHOWN = 3

_TARGET_COLUMNS_SQL = """
SELECT column_name, data_type FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = $1
ORDER BY ordinal_position
"""
# Columns that draw their values from a sequence (an identity, or a serial).
_SEQUENCES_SQL = """
SELECT table_name, column_name, seq
FROM (SELECT table_name, column_name,
             pg_get_serial_sequence(quote_ident(table_name), column_name) AS seq
      FROM information_schema.columns
      WHERE table_schema = current_schema() AND table_name = ANY($1::text[])) AS columns
WHERE seq IS NOT NULL
"""
# What either database, the target's driver or a copied value can raise during the move.
_DATABASE_ERRORS = (
    sqlite3.Error,
    OSError,  # a refused connection; TimeoutError too
    RuntimeError,  # the target's schema is newer than this wanbot
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    ArithmeticError,  # a value out of its column's range
    TypeError,  # a value of the wrong type for its column
    ValueError,
)
# audit() reads no allowance and no period: any policy will do.
_AUDIT_ONLY_POLICY = BudgetPolicy(member_allowance=0, server_allowance=0, period=BudgetPeriod.NONE)


class TransferError(Exception):
    """The move was refused or failed. The message is one line, holds no password, and unless it
    says otherwise nothing was committed to the target."""


@dataclass(frozen=True)
class TransferReport:
    """A move that was copied, verified and committed."""

    source: str  # the SQLite file
    target: str  # host:port/database
    rows: dict[str, int]  # rows copied (and verified) per table
    left_out: tuple[str, ...]  # "table.column" only one side has (the source's hold nothing)
    seconds: float

    def lines(self) -> list[str]:
        """The report for a person to read."""
        counts = ", ".join(f"{self.rows[table.name]:,} {table.label}" for table in TABLES)
        lines = [
            f"Copied {counts} from {self.source} to {self.target} in {self.seconds:.1f} s.",
            "Verified: row counts, every row field by field, every running balance against the "
            "ledger on both sides, and the target's audit.",
        ]
        if self.left_out:
            lines.append(f"Not copied (only one side has them): {', '.join(self.left_out)}.")
        return lines


@dataclass(frozen=True)
class _Plan:
    """How one table is copied: the columns both sides have, in the target's order, and how
    each source value becomes the target's."""

    table: Table
    columns: tuple[str, ...]
    converters: tuple[Callable[[Any], Any], ...]
    text_columns: frozenset[str]  # ordered by bytes on the target, as SQLite orders them

    def convert(self, row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(convert(value) for convert, value in zip(self.converters, row, strict=True))

    def source_select(self) -> str:
        order = _names(self.table.key)
        return f"SELECT {_names(self.columns)} FROM {_quote(self.table.name)} ORDER BY {order}"

    def target_select(self) -> str:
        order = ", ".join(
            f'{_quote(name)} COLLATE "C"' if name in self.text_columns else _quote(name)
            for name in self.table.key
        )
        return f"SELECT {_names(self.columns)} FROM {_quote(self.table.name)} ORDER BY {order}"

    def first_difference(self, source: list[tuple[Any, ...]], target: list[tuple[Any, ...]]) -> str:
        """Name the first row that differs (by its key in the source) and the columns where it
        does."""
        mine, theirs = next((a, b) for a, b in zip(source, target, strict=True) if a != b)
        values = dict(zip(self.columns, mine, strict=True))
        key = ", ".join(f"{name}={values[name]}" for name in self.table.key)
        columns = [
            name for name, one, other in zip(self.columns, mine, theirs, strict=True)
            if one != other
        ]  # fmt: skip
        return f"{self.table.name} row {key} differs in the target: {', '.join(columns)}"


def _quote(name: str) -> str:
    """An identifier quoted the same way for SQLite and PostgreSQL (names come from catalogs)."""
    return '"' + name.replace('"', '""') + '"'


def _names(columns: Sequence[str]) -> str:
    return ", ".join(_quote(name) for name in columns)


def _moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _flag(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def _same(value: object) -> object:
    return value


def _converter(target_type: str) -> Callable[[Any], Any]:
    """SQLite keeps moments as ISO-8601 text and booleans as 0/1; binary COPY wants the
    PostgreSQL column's own type. Other values (integers, text) are the same on both sides."""
    if target_type == "timestamp with time zone":
        return _moment
    if target_type == "boolean":
        return _flag
    return _same


# --- the source: one read-only snapshot of a SQLite file ---------------------------------------
def _open_snapshot(path: str) -> tuple[sqlite3.Connection, int]:
    """Open the file read-only and begin reading it: the snapshot starts with the first read.
    Also returns the file's data version, which moves when another connection commits."""
    if not Path(path).is_file():  # else SQLite would name a missing file "unable to open"
        raise TransferError("no SQLite file at the source path")
    uri = f"{Path(path).as_uri()}?mode=ro"
    db = sqlite3.connect(uri, uri=True, isolation_level=None)
    try:
        db.execute("BEGIN")
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        (version,) = db.execute("PRAGMA data_version").fetchone()
    except BaseException:
        db.close()
        raise
    return db, version


class _Snapshot:
    """The source database as it was when the snapshot began. Its connection belongs to one
    thread of its own, where every call runs."""

    def __init__(self, db: sqlite3.Connection, worker: ThreadPoolExecutor, version: int) -> None:
        self._db = db
        self._worker = worker
        self._version = version

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> Awaitable[T]:
        return asyncio.get_running_loop().run_in_executor(self._worker, work, self._db)

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return await self._call(lambda db: db.execute(sql, params).fetchall())

    async def fetch_named(self, sql: str) -> list[dict[str, Any]]:
        """The rows of a query as column name → value."""

        def run(db: sqlite3.Connection) -> list[dict[str, Any]]:
            cursor = db.execute(sql)
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor]

        return await self._call(run)

    async def count(self, table: str) -> int:
        (row,) = await self.fetch(f"SELECT count(*) FROM {_quote(table)}")
        return int(row[0])

    async def batches(
        self, plan: _Plan, batch_rows: int
    ) -> AsyncGenerator[list[tuple[Any, ...]], None]:
        """The table's rows in key order, as the target takes them, `batch_rows` at a time."""
        cursor = await self._call(lambda db: db.execute(plan.source_select()))

        def next_batch(_: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return [plan.convert(row) for row in cursor.fetchmany(batch_rows)]

        # the next batch is read while the caller works on this one
        pending = self._call(next_batch)
        while batch := await pending:
            pending = self._call(next_batch)
            yield batch

    async def unchanged(self) -> bool:
        """End the snapshot; whether no other connection committed to the file since it began."""

        def finish(db: sqlite3.Connection) -> int:
            db.execute("COMMIT")
            return int(db.execute("PRAGMA data_version").fetchone()[0])

        return await self._call(finish) == self._version

    async def close(self) -> None:
        await self._call(sqlite3.Connection.close)
        self._worker.shutdown()


@asynccontextmanager
async def _source(path: str) -> AsyncIterator[_Snapshot]:
    """A snapshot of the SQLite file at `path`, closed on the way out."""
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wanbot-transfer")
    try:
        db, version = await asyncio.get_running_loop().run_in_executor(worker, _open_snapshot, path)
    except BaseException as error:
        worker.shutdown()
        if isinstance(error, sqlite3.Error):
            raise TransferError(f"the source is not a readable SQLite database ({error})") from None
        raise
    snapshot = _Snapshot(db, worker, version)
    try:
        yield snapshot
    finally:
        await snapshot.close()


async def _check_source(source: _Snapshot) -> None:
    """Refuse a file that is not a wanbot database at this wanbot's schema version, or whose
    running balances do not add up to its ledger."""
    tables = {name for (name,) in await source.fetch("SELECT name FROM sqlite_master")}
    ((version,),) = await source.fetch("PRAGMA user_version")
    latest = len(load_migrations())
    if version == 0 or not {"jobs", "ledger"} <= tables:
        raise TransferError("the source is not a wanbot database (no jobs and ledger tables)")
    if version > latest:
        raise TransferError(
            f"the source's schema (version {version}) is newer than this wanbot's ({latest})"
        )
    if version < latest:
        raise TransferError(
            f"the source's schema is version {version}, this wanbot's is {latest}: open it once "
            "with this wanbot (e.g. `wanbot audit` with DATABASE_URL set to it) to upgrade it"
        )
    if missing := [name for name in TABLE_NAMES if name not in tables]:
        raise TransferError(f"the source is not a wanbot database (no {', '.join(missing)})")
    differences = [audit_line(row) for row in await source.fetch_named(AUDIT_SQL)]
    if differences:
        raise TransferError(f"the source's audit is not clean: {_summary(differences)}")


def _summary(differences: list[str]) -> str:
    """The first few audit differences on one line, and how many more there are."""
    shown = "; ".join(differences[:_AUDIT_LINES_SHOWN])
    more = len(differences) - _AUDIT_LINES_SHOWN
    return f"{len(differences)} balance(s) differ from the ledger: {shown}" + (
        f"; and {more} more" if more > 0 else ""
    )


# --- the target: an empty PostgreSQL database ------------------------------------------------
def _source_path(source_url: str) -> str:
    """The SQLite file the source URL names (never a PostgreSQL URL, never :memory:)."""
    if is_postgres_url(source_url):
        raise TransferError("the source must be a SQLite database (sqlite:///path.db or a path)")
    try:
        path = database_path(source_url)
    except ValueError as error:  # its message never repeats the URL
        raise TransferError(f"the source: {error}") from None
    if path == ":memory:":
        raise TransferError("the source must be a SQLite file, not an in-memory database")
    return str(Path(path).absolute())


def _target(target_url: str) -> PostgresTarget:
    """Where the target URL points (never a SQLite database)."""
    if not is_postgres_url(target_url):
        raise TransferError("the target must be a PostgreSQL URL (postgresql://user@host/db)")
    try:
        return PostgresTarget.parse(target_url)
    except ValueError as error:  # its message never repeats the URL
        raise TransferError(f"the target: {error}") from None


@contextmanager
def _failing_as(what: str, target: PostgresTarget) -> Iterator[None]:
    """Turn what writing the target can raise into a TransferError saying which step failed, with
    the URL's secrets blotted out. It is raised outside the handler: no chained original."""
    try:
        yield
        return
    except _DATABASE_ERRORS as error:
        reason = target.redact(f"{type(error).__name__}: {error}".splitlines()[0])
    raise TransferError(f"{what} failed: {reason}")


@asynccontextmanager
async def _target_connection(url: str, target: PostgresTarget) -> AsyncIterator[Connection]:
    """One connection to the target, with this wanbot's migrations applied."""
    with _failing_as(f"connecting to PostgreSQL at {target}", target):
        pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            with _failing_as(f"preparing the schema of {target}", target):
                await migrate(conn)
            yield conn
    finally:
        await pool.close()


async def _require_empty(conn: Connection) -> None:
    """Lock every table against other writers, then refuse a target that holds any row: rows
    are never merged."""
    await conn.execute(f"LOCK TABLE {_names(TABLE_NAMES)} IN EXCLUSIVE MODE")
    counts = {
        name: await conn.fetchval(f"SELECT count(*) FROM {_quote(name)}") for name in TABLE_NAMES
    }
    if held := [f"{name} {count:,}" for name, count in counts.items() if count]:
        raise TransferError(
            f"the target already holds rows ({', '.join(held)}): migrate-db only fills an empty "
            "database, it never merges"
        )


async def _plan(source: _Snapshot, conn: Connection, table: Table) -> tuple[_Plan, list[str]]:
    """The columns of `table` both databases have; and the columns only one has, refusing any
    the source has alone that holds a value (it would be lost)."""
    found = await source.fetch("SELECT name FROM pragma_table_info(?)", (table.name,))
    source_columns = [name for (name,) in found]
    target_types = {
        row["column_name"]: row["data_type"]
        for row in await conn.fetch(_TARGET_COLUMNS_SQL, table.name)
    }
    shared = tuple(name for name in target_types if name in source_columns)
    if missing := [name for name in table.key if name not in shared]:
        raise TransferError(f"{table.name}.{', '.join(missing)} is not in both databases")
    left_out = [name for name in target_types if name not in shared]
    for name in source_columns:
        if name not in shared:
            await _require_empty_column(source, table.name, name)
            left_out.append(name)
    plan = _Plan(
        table=table,
        columns=shared,
        converters=tuple(_converter(target_types[name]) for name in shared),
        text_columns=frozenset(name for name in shared if target_types[name] == "text"),
    )
    return plan, [f"{table.name}.{name}" for name in left_out]


async def _require_empty_column(source: _Snapshot, table: str, column: str) -> None:
    found = await source.fetch(
        f"SELECT 1 FROM {_quote(table)} WHERE {_quote(column)} IS NOT NULL LIMIT 1"
    )
    if found:
        raise TransferError(
            f"the target has no column {table}.{column}, which holds values in the source"
        )


async def _copy(source: _Snapshot, conn: Connection, plan: _Plan, batch_rows: int) -> None:
    """Binary COPY of the table, a batch at a time from the snapshot."""
    async with aclosing(source.batches(plan, batch_rows)) as batches:
        async for batch in batches:
            await conn.copy_records_to_table(plan.table.name, records=batch, columns=plan.columns)


async def _verify(source: _Snapshot, conn: Connection, plan: _Plan, batch_rows: int) -> int:
    """Check the copied table against the snapshot: the same number of rows, and in key order
    every row equal field by field. Returns the number of rows."""
    expected = await source.count(plan.table.name)
    count = await conn.fetchval(f"SELECT count(*) FROM {_quote(plan.table.name)}")
    if count != expected:
        raise TransferError(f"{plan.table.name}: {expected:,} rows in the source, {count} copied")
    copied = await conn.cursor(plan.target_select())
    async with aclosing(source.batches(plan, batch_rows)) as batches:
        # both sides hold `expected` rows: each source batch has as many target rows to match
        async for batch in batches:
            copies = [tuple(row) for row in await copied.fetch(len(batch))]
            if copies != batch:
                raise TransferError(plan.first_difference(batch, copies))
    return expected


async def _audit_copy(conn: Connection) -> None:
    """Refuse a copy whose running balances the target does not find in its own ledger."""
    differences = [audit_line(row) for row in await conn.fetch(AUDIT_SQL)]
    if differences:
        raise TransferError(f"the copy's audit is not clean: {_summary(differences)}")


async def _advance_sequences(conn: Connection) -> None:
    """Move every id sequence past the largest id copied, so new rows get fresh ids. (A sequence
    is not transactional: a copy rolled back after this leaves it ahead, which is harmless.)"""
    for row in await conn.fetch(_SEQUENCES_SQL, list(TABLE_NAMES)):
        column, table = _quote(row["column_name"]), _quote(row["table_name"])
        await conn.execute(
            f"SELECT setval($1::regclass, (SELECT COALESCE(MAX({column}), 0) + 1 FROM {table}), "
            "false)",
            row["seq"],
        )


async def _copy_verified(
    source: _Snapshot, conn: Connection, target: PostgresTarget, batch_rows: int
) -> tuple[dict[str, int], list[str]]:
    """Copy every table in one transaction, check the copy, and commit only if it holds."""
    rows: dict[str, int] = {}
    left_out: list[str] = []
    async with conn.transaction():
        await _require_empty(conn)
        plans = []
        for table in TABLES:
            plan, missing = await _plan(source, conn, table)
            plans.append(plan)
            left_out += missing
        for plan in plans:
            with _failing_as(f"copying {plan.table.name}", target):
                await _copy(source, conn, plan, batch_rows)
        for plan in plans:
            rows[plan.table.name] = await _verify(source, conn, plan, batch_rows)
        await _audit_copy(conn)
        if not await source.unchanged():
            raise TransferError(
                "the source changed during the copy: stop every wanbot using it, then run "
                "migrate-db again"
            )
        await _advance_sequences(conn)
    return rows, left_out


async def _audit_target(url: str, target: PostgresTarget) -> None:
    """The committed target, opened as the bot opens it, audited by the store itself."""
    with _failing_as(f"auditing {target}", target):
        storage = await PostgresStorage.open(url, _AUDIT_ONLY_POLICY, max_connections=1)
        try:
            differences = await storage.audit()
        finally:
            await storage.close()
    if differences:
        raise TransferError(
            f"the copy was committed but the target's audit is not clean: {_summary(differences)}"
        )


async def transfer_database(
    source_url: str, target_url: str, *, batch_rows: int = BATCH_ROWS
) -> TransferReport:
    """Copy the wanbot database at `source_url` (SQLite, left untouched) into the empty
    PostgreSQL database at `target_url`, verify the copy and commit it. Raises TransferError,
    committing nothing, when either is refused or any check fails."""
    started = time.monotonic()
    path = _source_path(source_url)
    target = _target(target_url)
    async with _source(path) as source:
        await _check_source(source)
        async with _target_connection(target_url, target) as conn:
            with _failing_as(f"writing {target}", target):
                rows, left_out = await _copy_verified(source, conn, target, batch_rows)
    await _audit_target(target_url, target)
    return TransferReport(
        source=path,
        target=str(target),
        rows=rows,
        left_out=tuple(left_out),
        seconds=time.monotonic() - started,
    )
