"""Persistence: jobs, the budget ledger and per-server settings, in SQLite (the default) or
PostgreSQL, chosen by the database URL's scheme."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from bot.domain.budget import BudgetPolicy
from storage.base import Storage
from storage.postgres import POSTGRES_SCHEMES, PostgresStorage, PostgresTarget
from storage.sqlite import SqliteStorage

__all__ = [
    "PostgresStorage",
    "SqliteStorage",
    "Storage",
    "check_database_url",
    "database_path",
    "is_postgres_url",
    "open_storage",
]

_MEMORY = ":memory:"


def is_postgres_url(database_url: str) -> bool:
    """Whether the URL names a PostgreSQL database (postgresql:// or postgres://)."""
    scheme, separator, _ = database_url.partition("://")
    return bool(separator) and scheme.lower() in POSTGRES_SCHEMES


def check_database_url(database_url: str) -> None:
    """Raise ValueError unless wanbot can open the URL: a SQLite URL or file path, or a
    PostgreSQL URL. The message never repeats the URL (it may hold a password)."""
    if is_postgres_url(database_url):
        PostgresTarget.parse(database_url)
    else:
        database_path(database_url)


def database_path(database_url: str) -> str:
    """The SQLite file named by `sqlite:///relative.db`, `sqlite:////abs.db`,
    `sqlite:///:memory:` or a bare path. Other schemes raise ValueError."""
    scheme, separator, rest = database_url.partition("://")
    if not separator:
        path = database_url
    elif scheme.lower() != "sqlite":
        # the URL is not echoed: another database's URL may hold a password
        raise ValueError(
            f"{scheme}:// is not supported: use sqlite:///path.db, a file path "
            "or postgresql://user@host:port/database"
        )
    elif not rest.startswith("/"):
        raise ValueError("malformed SQLite URL: use sqlite:///relative.db or sqlite:////abs.db")
    else:
        path = rest.removeprefix("/")
    if not path.strip():
        raise ValueError("no database file named")
    return path if path == _MEMORY else str(Path(path).expanduser())


async def open_storage(
    database_url: str,
    policy: BudgetPolicy,
    *,
    clock: Callable[[], datetime] | None = None,
) -> SqliteStorage | PostgresStorage:
    """Open the store named by `database_url`, applying pending migrations: PostgreSQL for a
    postgresql:// or postgres:// URL, else SQLite (creating the file's folders as needed)."""
    if is_postgres_url(database_url):
        return await PostgresStorage.open(database_url, policy, clock=clock)
    path = database_path(database_url)
    if path != _MEMORY:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return await SqliteStorage.open(path, policy, clock=clock)
