"""The two storage backends, for tests: which PostgreSQL server the tests use and how each run
keeps to a schema of its own, the errors either database raises when its schema refuses a write,
and a raw connection that bypasses the store.

Isolation on PostgreSQL: a test run creates schema `wanbot_test_<random hex>` and points every
connection at it with `?search_path=<schema>` in the URL (asyncpg sends query parameters it does
not know as server settings), so concurrent runs on one server never see each other's rows; the
run drops its schema when it ends. Between tests the run's tables are truncated.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit
from uuid import uuid4

import asyncpg
import pytest

from bot.domain.budget import BudgetPeriod, BudgetPolicy
from storage import database_path, is_postgres_url
from storage.postgres import PostgresTarget

T = TypeVar("T")

POSTGRES_URL = os.environ.get(
    "WANBOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
CONNECT_TIMEOUT_S = 5.0

# Each backend once: a test that takes `database_url` runs on both.
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

# The budgets and the starting time of the stores the `store` fixture opens.
POLICY = BudgetPolicy(
    member_allowance=1_000_000, server_allowance=10_000_000, period=BudgetPeriod.DAY
)
START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

# What a write the schema refuses raises: a constraint, or the ledger's append-only trigger.
INTEGRITY_ERRORS = (sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError)
CHECK_FAILED = "CHECK|check constraint"
NOT_UNIQUE = "UNIQUE|unique constraint"


class Clock:
    """A settable clock, so tests can cross period boundaries and let leases run out."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def in_ci() -> bool:
    """CI must run the PostgreSQL tests: there a missing server fails them instead."""
    return os.environ.get("CI", "").lower() == "true"


def run_on_own_loop(action: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on an event loop of its own, in a thread of its own: for
    session set-up and tear-down, which must not touch the loops the tests run on."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(lambda: asyncio.run(action())).result()


def new_schema_name() -> str:
    return f"wanbot_test_{uuid4().hex}"


def with_search_path(url: str, schema: str) -> str:
    """The URL with its connections' search_path set to `schema` (created and emptied there)."""
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, urlencode({"search_path": schema})]))
    return urlunsplit(parts._replace(query=query))


async def unreachable_reason(url: str) -> str | None:
    """Why no PostgreSQL server answers at `url` (password left out), or None if one does."""
    try:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        return PostgresTarget.parse(url).redact(f"{type(error).__name__}: {error}")
    await conn.close()
    return None


async def create_schema(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()


async def drop_schema(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def truncate_tables(url: str) -> None:
    """Empty every table of the URL's schema but the migration version, restarting identities.
    (TRUNCATE fires no DELETE trigger: the ledger's append-only rule does not stop it.)"""
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch(
            "SELECT quote_ident(tablename) AS name FROM pg_tables "
            "WHERE schemaname = current_schema() AND tablename <> 'schema_version'"
        )
        if tables:
            names = ", ".join(table["name"] for table in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


async def execute_raw(database_url: str, sql: str) -> None:
    """Run one statement on a plain connection that bypasses the store."""
    if is_postgres_url(database_url):
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()
    else:
        with closing(sqlite3.connect(database_path(database_url), isolation_level=None)) as db:
            db.execute("PRAGMA foreign_keys = ON")
            db.execute(sql)


async def fetch_postgres(url: str, sql: str) -> list[tuple[object, ...]]:
    """The rows of one query, on a plain PostgreSQL connection that bypasses the store."""
    conn = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()
