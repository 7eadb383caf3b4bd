"""Persistence: jobs, the budget ledger and per-server settings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from bot.domain.budget import BudgetPolicy
from storage.base import Storage
from storage.sqlite import SqliteStorage

__all__ = ["SqliteStorage", "Storage", "database_path", "open_storage"]

_MEMORY = ":memory:"


def database_path(database_url: str) -> str:
    """The SQLite file named by `sqlite:///relative.db`, `sqlite:////abs.db`,
    `sqlite:///:memory:` or a bare path. Other schemes raise ValueError."""
    scheme, separator, rest = database_url.partition("://")
    if not separator:
        path = database_url
    elif scheme.lower() != "sqlite":
        # the URL is not echoed: another database's URL may hold a password
        raise ValueError(f"{scheme}:// is not supported: use sqlite:///path.db or a file path")
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
) -> SqliteStorage:
    """Open (creating folders and schema as needed) the store named by `database_url`."""
    path = database_path(database_url)
    if path != _MEMORY:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return await SqliteStorage.open(path, policy, clock=clock)
