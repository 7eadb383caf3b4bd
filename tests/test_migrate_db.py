"""`wanbot migrate-db`: a SQLite database built through the real SqliteStorage (jobs in every
state, grants, allowances, settings; several servers and members; two budget periods) is moved
into a schema of its own on the test PostgreSQL server, then read back through both stores'
public API: every job, ledger row, balance and setting the same, the audit clean, and the target
working on (fresh ids, a migrated job settled once). Then every refusal: a target that holds rows,
a source whose audit is not clean, a source that changes during the copy, bad URLs (the password
never shown), and sources that are not wanbot databases. Both the Python function and the real
command (`python -m bot migrate-db`, in a subprocess)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sqlite3
import sys
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest

from bot.domain.budget import SERVER_SCOPE_MEMBER_ID, AllowanceSource, BudgetPeriod, BudgetPolicy
from bot.domain.job import JobOwner, JobRecord
from bot.domain.lifecycle import FailureKind, IllegalTransition, JobState, Settlement
from storage import PostgresStorage, SqliteStorage
from storage.migrate import load_migrations
from storage.transfer import TABLE_NAMES, TransferError, transfer_database
from tests.storage_backends import execute_raw, fetch_postgres, run_on_own_loop

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[1]
SECRET = "hunter2-migrate-4b9d"  # a password distinctive enough to search every output for
POLICY = BudgetPolicy(
    member_allowance=1_000_000, server_allowance=10_000_000, period=BudgetPeriod.MONTH
)
PLENTY = 10**12
NOVEMBER = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
DECEMBER = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
# Snowflake-sized ids: only a 64-bit column holds them.
GUILDS = (1_100_000_000_000_000_001, 1_100_000_000_000_000_002, 1_100_000_000_000_000_003)
MEMBERS = (900_000_000_000_000_001, 900_000_000_000_000_002, 900_000_000_000_000_003, 42)
CHANNEL = 1_200_000_000_000_000_777
# Role tiers: a role id is never a member id.
ROLES = (1_300_000_000_000_000_001, 1_300_000_000_000_000_002, 1_300_000_000_000_000_003)
JOBS_PER_PERIOD = 800
# Keys that PostgreSQL's linguistic collations and SQLite's byte order sort differently.
SETTING_KEYS = ("log_channel", "Locale", "_flag", "émoji", "z")
RUN_TIMEOUT_S = 60.0


class Clock:
    """Moves on by a little over a second at every reading, so no two rows share a moment."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1, microseconds=234_567)
        return self.now


# --- the source: a wanbot database with a bit of everything ----------------------------------
async def finish(store: SqliteStorage, job: JobRecord, n: int) -> None:
    """Take job number `n` to one of eight endings: delivered (3 in 8), failed then closed, failed,
    held uncertain, left reserved or submitted, and left posting."""
    match n % 8:
        case 0 | 1 | 2:
            await through_posting(store, job, n)
            await store.advance(job.id, JobState.DELIVERED, result_message_id=7_000_000 + n)
        case 3 | 4:
            kind = FailureKind.GENERATION_FAILED if n % 8 == 3 else FailureKind.MODERATION
            await store.advance(job.id, JobState.QUEUED)
            await store.advance(job.id, JobState.SUBMITTING)
            await store.advance(job.id, JobState.FAILED, failure_kind=kind, error_code=1200)
            if n % 8 == 3:
                await store.advance(job.id, JobState.CLOSED)
        case 5:
            await store.advance(job.id, JobState.QUEUED)
            await store.advance(job.id, JobState.SUBMITTING)
            hold = job.created_at + timedelta(hours=6)
            await store.advance(job.id, JobState.UNCERTAIN, hold_until=hold)
        case 6 if n % 16 == 6:
            await store.advance(job.id, JobState.QUEUED)
            await store.advance(job.id, JobState.SUBMITTING)
            await store.advance(job.id, JobState.SUBMITTED, prediction_id=f"task-{job.id}")
        case 6:
            pass  # left reserved
        case 7:
            await through_posting(store, job, n)


async def through_posting(store: SqliteStorage, job: JobRecord, n: int) -> None:
    await store.advance(job.id, JobState.QUEUED)
    await store.advance(job.id, JobState.SUBMITTING)
    await store.advance(job.id, JobState.SUBMITTED, prediction_id=f"task-{job.id}")
    await store.set_wavespeed_status(job.id, "completed")
    await store.advance(
        job.id,
        JobState.READY,
        output_url=f"https://cdn.example/{job.id}.mp4",
        has_nsfw=n % 5 == 0,
        inference_ms=900 + n,
    )
    await store.advance(job.id, JobState.POSTING, result_channel_id=CHANNEL + n)


async def admin_rows(store: SqliteStorage, period: int) -> None:
    """Allowances, grants (one negative) and settings, in every server."""
    for guild in GUILDS:
        await store.set_allowance(guild, SERVER_SCOPE_MEMBER_ID, PLENTY, actor_id=1)
        await store.grant(guild, SERVER_SCOPE_MEMBER_ID, 5_000_000 * period, 1, "top-up ☕")
        for member in MEMBERS:
            await store.set_allowance(guild, member, PLENTY - member % 1000, actor_id=2)
            await store.grant(guild, member, 250_000 - 200_000 * period, actor_id=3, note=None)
        for key in SETTING_KEYS:
            await store.set_guild_setting(guild, key, f"{key} of {guild} in period {period}")
        # role tiers: set, raised, and one cleared in the second period
        for n, role in enumerate(ROLES):
            await store.set_role_allowance(guild, role, 1_000_000 * (n + period), actor_id=4)
        if period == 2:
            await store.set_role_allowance(guild, ROLES[0], None, actor_id=5)
    await store.set_guild_setting(GUILDS[0], "z", None)


async def jobs_of_a_period(store: SqliteStorage, first: int) -> None:
    for n in range(first, first + JOBS_PER_PERIOD):
        guild, member = GUILDS[n % len(GUILDS)], MEMBERS[n % len(MEMBERS)]
        request = f'{{"prompt": "a cat №{n} walks", "seed": {n}}}'
        job = await store.reserve(
            JobOwner(guild, CHANNEL, member), request, 125_000 * (1 + n % 4), 10**6
        )
        await finish(store, job, n)


async def build_source(path: Path) -> None:
    """Two months of use: November's jobs, some of them settled in December, then December's."""
    clock = Clock(NOVEMBER)
    store = await SqliteStorage.open(str(path), POLICY, clock=clock)
    try:
        await admin_rows(store, period=1)
        await jobs_of_a_period(store, 0)
        clock.now = DECEMBER
        for job in (await store.unfinished_jobs())[::4]:
            if job.state is JobState.POSTING:  # settled in its reservation's period: November
                await store.advance(job.id, JobState.DELIVERED)
        await admin_rows(store, period=2)
        await jobs_of_a_period(store, JOBS_PER_PERIOD)
        for job in (await store.unfinished_jobs())[::3]:  # followed by a live process
            assert await store.claim(job.id, "bot-process-1", lease_s=30.5) is not None
        await store.set_bot_setting("synced_command_digest", "d1g3st")
        await store.set_bot_setting("motd", "Привет, wanbot")
        assert await store.audit() == []
    finally:
        await store.close()


@pytest.fixture(scope="module")
def source_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source database, built once for the module."""
    path = tmp_path_factory.mktemp("source") / "wanbot.db"
    run_on_own_loop(lambda: build_source(path))
    return path


@pytest.fixture
def source(source_template: Path, tmp_path: Path) -> Path:
    """A copy of the source database of the test's own."""
    return Path(shutil.copy(source_template, tmp_path / "wanbot.db"))


def sqlite_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


def counts(path: Path) -> dict[str, int]:
    return {name: sqlite_rows(path, f"SELECT count(*) FROM {name}")[0][0] for name in TABLE_NAMES}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- comparing the two databases through the stores ------------------------------------------
class FixedClock:
    """Stands still wherever a test puts it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Pair:
    """The source and the target opened by their own stores, on one clock."""

    clock: FixedClock
    sqlite: SqliteStorage
    postgres: PostgresStorage


@asynccontextmanager
async def opened(source: Path, target_url: str) -> AsyncIterator[Pair]:
    clock = FixedClock(DECEMBER + timedelta(days=3))
    sqlite_store = await SqliteStorage.open(str(source), POLICY, clock=clock)
    try:
        postgres_store = await PostgresStorage.open(target_url, POLICY, clock=clock)
        try:
            yield Pair(clock, sqlite_store, postgres_store)
        finally:
            await postgres_store.close()
    finally:
        await sqlite_store.close()


async def assert_same_database(source: Path, target_url: str) -> None:
    """Everything the stores can say about the two databases is the same."""
    async with opened(source, target_url) as pair:
        jobs = 0
        for guild in GUILDS:
            assert await pair.postgres.ledger(guild) == await pair.sqlite.ledger(guild)
            for member in MEMBERS:
                mine = await pair.sqlite.recent_jobs(guild, member, limit=10**6)
                assert await pair.postgres.recent_jobs(guild, member, limit=10**6) == mine
                jobs += len(mine)
            for key in SETTING_KEYS:
                setting = await pair.sqlite.get_guild_setting(guild, key)
                assert await pair.postgres.get_guild_setting(guild, key) == setting
            tiers = await pair.sqlite.role_tiers(guild)
            assert len(tiers) == len(ROLES) - 1  # one was cleared
            assert await pair.postgres.role_tiers(guild) == tiers
        assert jobs == counts(source)["jobs"]
        assert await pair.postgres.unfinished_jobs() == await pair.sqlite.unfinished_jobs()
        for key in ("synced_command_digest", "motd"):
            assert await pair.postgres.get_bot_setting(key) == await pair.sqlite.get_bot_setting(
                key
            )
        for moment in (NOVEMBER, DECEMBER):
            pair.clock.now = moment
            await assert_same_balances(pair)
        assert await pair.sqlite.audit() == []
        assert await pair.postgres.audit() == []
    balances = "SELECT guild_id, member_id, period_key, granted, spent, held FROM balances"
    ordered = f"{balances} ORDER BY guild_id, member_id, period_key"
    assert await fetch_postgres(target_url, ordered) == sqlite_rows(source, ordered)


async def assert_same_balances(pair: Pair) -> None:
    for guild in GUILDS:
        assert await pair.postgres.server_balance(guild) == await pair.sqlite.server_balance(guild)
        for member in MEMBERS:
            mine = await pair.sqlite.member_balance(guild, member)
            assert await pair.postgres.member_balance(guild, member) == mine
            tiered = await pair.sqlite.member_balance(guild, member, roles=ROLES)
            assert await pair.postgres.member_balance(guild, member, roles=ROLES) == tiered
        # a member with no allowance of their own: the highest tier left
        fresh = await pair.sqlite.member_balance(guild, 77, roles=ROLES)
        assert (fresh.source, fresh.tier_role_id) == (AllowanceSource.TIER, ROLES[-1])
        assert await pair.postgres.member_balance(guild, 77, roles=ROLES) == fresh


async def target_tables(target_url: str) -> int:
    """How many tables the target's schema holds (0: never touched)."""
    sql = "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
    return int((await fetch_postgres(target_url, sql))[0][0])


async def target_rows(target_url: str) -> dict[str, int]:
    return {
        name: int((await fetch_postgres(target_url, f"SELECT count(*) FROM {name}"))[0][0])
        for name in TABLE_NAMES
    }


def with_password(url: str) -> tuple[str, str]:
    """The URL with a password in it (the test server trusts any), and that password."""
    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    netloc = f"{parts.username or 'postgres'}:{SECRET}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc)), SECRET


def shown(error: BaseException) -> str:
    """Everything a log line could show of an error: its message, repr and whole traceback."""
    return f"{error} {error!r} {''.join(traceback.format_exception(error))}"


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


async def migrate_db(*args: str) -> Run:
    """`python -m bot migrate-db …` in a subprocess, from the source tree."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "migrate-db", *args,
        env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


# --- a move, checked, and the target working on ------------------------------------------------
async def test_everything_is_moved_and_the_target_works_on(
    source: Path, fresh_postgres_url: str
) -> None:
    before = digest(source)
    max_job, max_entry = sqlite_rows(
        source, "SELECT max(id) FROM jobs UNION ALL SELECT max(id) FROM ledger"
    )

    report = await transfer_database(f"sqlite:///{source}", fresh_postgres_url)

    assert report.rows == counts(source)
    assert report.rows["jobs"] == 2 * JOBS_PER_PERIOD and report.rows["ledger"] > 2500
    # every change of a role tier is copied, the clearing rows too
    assert report.rows["role_allowances"] == len(GUILDS) * (2 * len(ROLES) + 1)
    assert report.left_out == ()  # the jobs' lease columns are on both sides
    assert sqlite_rows(source, "SELECT count(*) FROM jobs WHERE lease_owner IS NOT NULL") > [(0,)]
    assert report.source == str(source)
    assert digest(source) == before  # read only
    await assert_same_database(source, fresh_postgres_url)

    async with opened(source, fresh_postgres_url) as pair:
        store = pair.postgres
        new = await store.reserve(JobOwner(GUILDS[0], CHANNEL, MEMBERS[0]), "{}", 125_000, 10**6)
        assert new.id == max_job[0] + 1
        assert (await store.ledger(GUILDS[0]))[-1].id == max_entry[0] + 1

        posting = next(
            job for job in await store.unfinished_jobs() if job.state is JobState.POSTING
        )
        pair.clock.now = NOVEMBER  # its reservation's period
        held = await store.member_balance(posting.guild_id, posting.member_id)
        delivered = await store.advance(posting.id, JobState.DELIVERED)
        assert delivered.settlement is Settlement.CHARGE
        with pytest.raises(IllegalTransition):
            await store.advance(posting.id, JobState.DELIVERED)
        with pytest.raises(IllegalTransition):
            await store.advance(posting.id, JobState.FAILED, failure_kind=FailureKind.TIMED_OUT)
        rows = [row for row in await store.ledger(posting.guild_id) if row.job_id == posting.id]
        assert [row.kind for row in rows] == ["reserve", "charge"]
        after = await store.member_balance(posting.guild_id, posting.member_id)
        assert (held.held - after.held, after.spent - held.spent) == (posting.price_micro,) * 2
        assert await store.audit() == []


async def test_the_command_moves_it_and_never_shows_the_password(
    source: Path, fresh_postgres_url: str
) -> None:
    url, password = with_password(fresh_postgres_url)

    run = await migrate_db("--from", str(source), "--to", url)

    assert (run.code, run.err) == (0, ""), run.err
    assert f"Copied {2 * JOBS_PER_PERIOD:,} jobs" in run.out
    assert "Verified" in run.out
    assert password not in run.out
    await assert_same_database(source, fresh_postgres_url)


async def test_an_empty_wanbot_database_is_moved(tmp_path: Path, fresh_postgres_url: str) -> None:
    path = tmp_path / "empty.db"
    await (await SqliteStorage.open(str(path), POLICY)).close()

    report = await transfer_database(str(path), fresh_postgres_url)

    assert report.rows == dict.fromkeys(TABLE_NAMES, 0)
    async with await PostgresStorage.open(fresh_postgres_url, POLICY) as store:
        job = await store.reserve(JobOwner(GUILDS[0], CHANNEL, MEMBERS[0]), "{}", 0, 1)
        assert job.id == 1


async def test_columns_are_read_from_both_databases(source: Path, fresh_postgres_url: str) -> None:
    """A column both schemas have is copied though this code never names it; one only the
    source has is refused while it holds a value (it would be lost), and left out when empty."""
    await (await PostgresStorage.open(fresh_postgres_url, POLICY)).close()  # migrated, empty
    await execute_raw(fresh_postgres_url, "ALTER TABLE guild_settings ADD changed_at TIMESTAMPTZ")
    for sql in (
        "ALTER TABLE guild_settings ADD changed_at TEXT",
        "UPDATE guild_settings SET changed_at = '2026-12-02T10:00:00.5+00:00'",
        "ALTER TABLE bot_settings ADD only_here TEXT",
        "UPDATE bot_settings SET only_here = 'kept nowhere' WHERE key = 'motd'",
    ):
        await execute_raw(str(source), sql)

    with pytest.raises(TransferError, match=r"no column bot_settings\.only_here, which holds"):
        await transfer_database(str(source), fresh_postgres_url)
    await execute_raw(str(source), "UPDATE bot_settings SET only_here = NULL")
    report = await transfer_database(str(source), fresh_postgres_url)

    assert report.left_out == ("bot_settings.only_here",)
    changed = await fetch_postgres(
        fresh_postgres_url, "SELECT DISTINCT changed_at FROM guild_settings"
    )
    assert changed == [(datetime(2026, 12, 2, 10, 0, 0, 500_000, tzinfo=UTC),)]


# --- refusals ----------------------------------------------------------------------------------
async def test_a_target_that_holds_rows_is_refused(source: Path, fresh_postgres_url: str) -> None:
    async with await PostgresStorage.open(fresh_postgres_url, POLICY) as store:
        await store.reserve(JobOwner(GUILDS[0], CHANNEL, MEMBERS[0]), "{}", 0, 1)

    with pytest.raises(TransferError, match=r"already holds rows \(jobs 1, ledger 1, balances 2\)"):
        await transfer_database(str(source), fresh_postgres_url)

    assert await target_rows(fresh_postgres_url) == {
        "jobs": 1, "ledger": 1, "submits": 0, "job_timings": 0, "balances": 2,
        "role_allowances": 0, "guild_settings": 0, "bot_settings": 0,
    }  # fmt: skip


async def test_a_second_move_into_the_same_target_is_refused(
    source: Path, fresh_postgres_url: str
) -> None:
    await transfer_database(str(source), fresh_postgres_url)

    run = await migrate_db("--from", str(source), "--to", fresh_postgres_url)

    assert run.code == 1
    assert run.err.count("\n") == 1 and "it never merges" in run.err
    assert await target_rows(fresh_postgres_url) == counts(source)


async def test_a_source_whose_audit_is_not_clean_is_refused(
    source: Path, fresh_postgres_url: str
) -> None:
    await execute_raw(
        str(source),
        f"UPDATE balances SET spent = spent + 7 "
        f"WHERE guild_id = {GUILDS[1]} AND member_id = 0 AND period_key = '2026-11'",
    )

    with pytest.raises(TransferError) as refused:
        await transfer_database(str(source), fresh_postgres_url)

    assert str(refused.value).startswith(
        "the source's audit is not clean: 1 balance(s) differ from the ledger: "
        f"guild {GUILDS[1]}, the server, 2026-11: stored granted/spent/held"
    )
    assert await target_tables(fresh_postgres_url) == 0  # not even migrated


async def test_a_source_that_changes_during_the_copy_is_refused(
    source: Path, fresh_postgres_url: str
) -> None:
    """Another process commits to the source once the copy holds the target's tables: the copy
    is rolled back, however far it got."""
    schema = parse_qs(urlsplit(fresh_postgres_url).query)["search_path"][0]
    locked = (
        "SELECT count(*) FROM pg_locks JOIN pg_class ON pg_class.oid = pg_locks.relation "
        "JOIN pg_namespace ON pg_namespace.oid = pg_class.relnamespace "
        f"WHERE nspname = '{schema}' AND relname = 'jobs' AND mode = 'ExclusiveLock' AND granted"
    )
    copying = asyncio.create_task(transfer_database(str(source), fresh_postgres_url, batch_rows=50))
    while not (await fetch_postgres(fresh_postgres_url, locked))[0][0]:
        assert not copying.done()
        await asyncio.sleep(0.005)
    async with await SqliteStorage.open(str(source), POLICY) as bot:
        await bot.grant(GUILDS[0], MEMBERS[0], 1, actor_id=1, note="while copying")

    with pytest.raises(TransferError, match="the source changed during the copy"):
        await copying

    assert await target_rows(fresh_postgres_url) == dict.fromkeys(TABLE_NAMES, 0)


BAD_TARGETS = {
    "sqlite": ("sqlite:///elsewhere.db", "the target must be a PostgreSQL URL"),
    "bad-port": (f"postgresql://me:{SECRET}@127.0.0.1:port/wanbot", "malformed PostgreSQL URL"),
    "unreachable": (
        f"postgresql://me:{SECRET}@127.0.0.1:1/wanbot",  # nothing listens on port 1
        "connecting to PostgreSQL at 127.0.0.1:1/wanbot failed",
    ),
}
BAD_SOURCES = {
    "postgres": (f"postgresql://me:{SECRET}@127.0.0.1/wanbot", "the source must be a SQLite"),
    "mysql": (f"mysql://me:{SECRET}@db/wanbot", "mysql:// is not supported"),
    "relative-sqlite-url": ("sqlite://wanbot.db", "malformed SQLite URL"),
    "memory": ("sqlite:///:memory:", "not an in-memory database"),
}


@pytest.mark.parametrize("url, message", BAD_TARGETS.values(), ids=BAD_TARGETS.keys())
async def test_a_bad_target_url_is_refused_without_its_password(
    source: Path, url: str, message: str
) -> None:
    with pytest.raises(TransferError, match=message) as refused:
        await transfer_database(str(source), url)
    assert SECRET not in shown(refused.value)


@pytest.mark.parametrize("url, message", BAD_SOURCES.values(), ids=BAD_SOURCES.keys())
async def test_a_bad_source_url_is_refused_without_its_password(
    url: str, message: str, fresh_postgres_url: str
) -> None:
    with pytest.raises(TransferError, match=message) as refused:
        await transfer_database(url, fresh_postgres_url)
    assert SECRET not in shown(refused.value)
    assert await target_tables(fresh_postgres_url) == 0


async def test_a_missing_database_on_the_server_is_named_without_the_password(
    source: Path, fresh_postgres_url: str
) -> None:
    url, password = with_password(fresh_postgres_url)
    absent = urlunsplit(urlsplit(url)._replace(path="/wanbot_no_such_database"))
    with pytest.raises(TransferError, match="wanbot_no_such_database") as refused:
        await transfer_database(str(source), absent)
    assert password not in shown(refused.value)


async def test_the_command_says_why_in_one_line_without_the_password(source: Path) -> None:
    unreachable, why_target = BAD_TARGETS["unreachable"]
    postgres, why_source = BAD_SOURCES["postgres"]

    runs = await asyncio.gather(
        migrate_db("--from", str(source), "--to", unreachable),
        migrate_db("--from", postgres, "--to", unreachable),
    )

    for run, message in zip(runs, (why_target, why_source), strict=True):
        assert (run.code, run.out) == (1, "")
        assert run.err.startswith("wanbot migrate-db: ") and run.err.count("\n") == 1, run.err
        assert message in run.err
        assert SECRET not in run.err


def older_wanbot_database(path: Path) -> None:
    """A wanbot database one schema version behind this wanbot."""
    migrations = load_migrations()[:-1]
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        for migration in migrations:
            for statement in migration.statements():
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {len(migrations)}")


def some_other_database(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")


NOT_WANBOT = {
    "missing": (None, "no SQLite file at the source path"),
    "text-file": (lambda path: path.write_text("jobs,ledger\n" * 100), "not a readable SQLite"),
    "other-schema": (some_other_database, "not a wanbot database"),
    "older-wanbot": (older_wanbot_database, f"this wanbot's is {len(load_migrations())}: open it"),
}


@pytest.mark.parametrize("make, message", NOT_WANBOT.values(), ids=NOT_WANBOT.keys())
async def test_a_source_that_is_not_a_wanbot_database_is_refused(
    tmp_path: Path, make: object, message: str, fresh_postgres_url: str
) -> None:
    path = tmp_path / "other.db"
    if callable(make):
        make(path)
    before = path.read_bytes() if path.exists() else None

    with pytest.raises(TransferError, match=message):
        await transfer_database(f"sqlite:///{path}", fresh_postgres_url)

    assert (path.read_bytes() if path.exists() else None) == before  # nor created, nor changed
    assert await target_tables(fresh_postgres_url) == 0
