"""Schema migrations: numbered SQL files in storage/migrations, applied in order.

The schema version lives in the database header (`PRAGMA user_version`). Each migration runs in
its own `BEGIN IMMEDIATE` transaction together with the version bump, and the version is read
again inside that transaction, so two processes opening a fresh database at once apply each
migration exactly once.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from storage.common import SqlMigration, load_sql_migrations


@dataclass(frozen=True)
class Migration(SqlMigration):
    """A SQLite migration file, which SQLite's driver runs one statement at a time."""

    def statements(self) -> list[str]:
        """Split the script into single statements (a trigger body's `;` does not end one)."""
        statements: list[str] = []
        pending = ""
        for piece in self.sql.split(";"):
            pending += piece + ";"
            if sqlite3.complete_statement(pending):
                statements.append(pending.strip())
                pending = ""
        # what follows the last `;` is blank or comments; anything else is a syntax error
        rest = pending.removesuffix(";")
        if rest.strip():
            statements.append(rest)
        return statements


def load_migrations() -> list[Migration]:
    """The packaged SQLite migrations, ordered by version (1, 2, 3, … without gaps)."""
    return [Migration(m.version, m.name, m.sql) for m in load_sql_migrations("migrations")]


def schema_version(db: sqlite3.Connection) -> int:
    """The number of the last migration applied to this database."""
    row = db.execute("PRAGMA user_version").fetchone()
    assert row is not None
    return int(row[0])


def migrate(db: sqlite3.Connection) -> int:
    """Apply the pending migrations (connection in autocommit mode); return the schema version."""
    migrations = load_migrations()
    latest = len(migrations)
    current = schema_version(db)
    if current > latest:
        raise RuntimeError(
            f"database schema version {current} is newer than this wanbot ({latest})"
        )
    for migration in migrations[current:]:
        db.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(db) < migration.version:  # another process may have won
                for statement in migration.statements():
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {migration.version}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return latest
