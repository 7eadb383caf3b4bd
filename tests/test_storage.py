"""SqliteStorage on real SQLite files: reservations under concurrency, settlement, periods,
allowances, grants, usage, the ledger, migrations and the database's own safety nets."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.domain.budget import (
    SERVER_SCOPE_MEMBER_ID,
    BudgetExceeded,
    BudgetPeriod,
    BudgetPolicy,
    TooManyJobs,
)
from storage import database_path, open_storage
from storage.base import JobOwner, JobRecord, JobStatus
from storage.migrate import load_migrations
from storage.sqlite import SqliteStorage

GUILD = 1001
CHANNEL = 2002
MEMBER = 3003
OTHER = 3004
PRICE = 125_000  # 5 s, 720p, silent
POLICY = BudgetPolicy(
    member_allowance=1_000_000, server_allowance=10_000_000, period=BudgetPeriod.DAY
)
PLENTY = 10**12


class Clock:
    """A settable clock, so tests can cross period boundaries."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def owner(member_id: int = MEMBER, guild_id: int = GUILD) -> JobOwner:
    return JobOwner(guild_id, CHANNEL, member_id)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "wanbot.db")


@pytest.fixture
async def store(db_path: str, clock: Clock) -> AsyncIterator[SqliteStorage]:
    storage = await open_storage(db_path, POLICY, clock=clock)
    yield storage
    await storage.close()


async def reserve(
    store: SqliteStorage, member_id: int = MEMBER, price: int = PRICE, max_in_flight: int = 10
) -> JobRecord:
    return await store.reserve(owner(member_id), '{"prompt": "a cat"}', price, max_in_flight)


def raw(db_path: str) -> sqlite3.Connection:
    """A plain connection that bypasses SqliteStorage, for poking at the schema."""
    return sqlite3.connect(db_path, isolation_level=None)


# --- the headline: concurrent reservations never overspend -------------------------------------
@pytest.mark.parametrize("instances", [1, 2], ids=["one-store", "two-stores"])
@pytest.mark.parametrize("scope", ["member", "server"])
async def test_concurrent_reserves_never_overspend(
    db_path: str, clock: Clock, scope: str, instances: int
) -> None:
    tight = 37 * PRICE + PRICE - 1  # affords exactly 37, leaves PRICE - 1
    policy = BudgetPolicy(
        member_allowance=tight if scope == "member" else PLENTY,
        server_allowance=tight if scope == "server" else PLENTY,
        period=BudgetPeriod.DAY,
    )
    stores = [await open_storage(db_path, policy, clock=clock) for _ in range(instances)]
    try:
        members = [MEMBER if scope == "member" else 5000 + i % 50 for i in range(200)]
        results = await asyncio.gather(
            *(
                stores[i % instances].reserve(owner(member), "{}", PRICE, 1000)
                for i, member in enumerate(members)
            ),
            return_exceptions=True,
        )
        jobs = [result for result in results if isinstance(result, JobRecord)]
        refusals = [result for result in results if isinstance(result, BudgetExceeded)]
        assert (len(jobs), len(refusals)) == (37, 163)
        assert {refusal.scope for refusal in refusals} == {scope}

        store = stores[-1]
        limited = (
            await store.member_balance(GUILD, MEMBER)
            if scope == "member"
            else await store.server_balance(GUILD)
        )
        assert (limited.held, limited.spent, limited.available) == (37 * PRICE, 0, PRICE - 1)
        assert (await store.server_balance(GUILD)).held == 37 * PRICE
        ledger = await store.ledger(GUILD)
        assert {entry.kind for entry in ledger} == {"reserve"}
        assert sum(entry.amount_micro for entry in ledger) == 37 * PRICE
        assert sorted(entry.job_id for entry in ledger) == sorted(job.id for job in jobs)
        assert len(await store.unfinished_jobs()) == 37
    finally:
        for store in stores:
            await store.close()


async def test_refusal_writes_nothing(store: SqliteStorage) -> None:
    with pytest.raises(BudgetExceeded) as refused:
        await reserve(store, price=POLICY.member_allowance + 1)
    assert refused.value.scope == "member"
    assert refused.value.balance.available == POLICY.member_allowance
    assert await store.ledger(GUILD) == []
    assert await store.unfinished_jobs() == []


async def test_in_flight_limit(store: SqliteStorage) -> None:
    first = await reserve(store, max_in_flight=2)
    second = await reserve(store, max_in_flight=2)
    await store.mark_submitting(first.id, "{}")
    await store.mark_submitted(second.id, "prediction-2")
    with pytest.raises(TooManyJobs) as refused:
        await reserve(store, max_in_flight=2)
    assert refused.value.limit == 2
    assert len(await store.ledger(GUILD)) == 2
    await reserve(store, member_id=OTHER, max_in_flight=2)  # the limit is per member

    assert await store.charge(second.id, output_url="u", has_nsfw=False, inference_ms=1)
    third = await reserve(store, max_in_flight=2)
    assert third.status is JobStatus.RESERVED


async def test_cancelled_calls_leave_no_half_transactions(store: SqliteStorage) -> None:
    """Cancel reserve() at every possible await: each job comes with its reserve row or not at
    all, and the connection is never left inside a transaction."""
    await store.set_allowance(GUILD, MEMBER, PLENTY, actor_id=1)
    for steps in range(40):
        task = asyncio.create_task(reserve(store, max_in_flight=100))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    job = await reserve(store, max_in_flight=100)
    jobs = await store.unfinished_jobs()
    reserves = [row for row in await store.ledger(GUILD) if row.kind == "reserve"]
    assert [row.job_id for row in reserves] == [job.id for job in jobs]
    assert jobs[-1] == job
    assert (await store.member_balance(GUILD, MEMBER)).held == len(jobs) * PRICE


# --- settlement -------------------------------------------------------------------------------
async def test_charge_settles_once(store: SqliteStorage) -> None:
    job = await reserve(store)
    assert await store.charge(job.id, output_url="https://v/1.mp4", has_nsfw=False, inference_ms=9)
    rows = await store.ledger(GUILD)
    assert not await store.charge(job.id, output_url="x", has_nsfw=True, inference_ms=1)
    assert not await store.refund(job.id, error_code=500, error_message="late failure")
    assert not await store.charge_unconfirmed(job.id, "late")
    assert await store.ledger(GUILD) == rows
    assert [row.kind for row in rows] == ["reserve", "charge"]
    charged = await store.get_job(job.id)
    assert charged is not None
    assert (charged.status, charged.settlement) == (JobStatus.COMPLETED, "charge")
    assert (charged.output_url, charged.has_nsfw, charged.error_message) == (
        "https://v/1.mp4",
        False,
        None,
    )
    balance = await store.member_balance(GUILD, MEMBER)
    assert (balance.spent, balance.held) == (PRICE, 0)
    assert balance.available == POLICY.member_allowance - PRICE


async def test_refund_restores_available_exactly(store: SqliteStorage) -> None:
    before = await store.member_balance(GUILD, MEMBER)
    server_before = await store.server_balance(GUILD)
    job = await reserve(store, price=187_500)
    assert (await store.member_balance(GUILD, MEMBER)).available == before.available - 187_500
    assert await store.refund(job.id, error_code=422, error_message="bad image")
    assert await store.member_balance(GUILD, MEMBER) == before
    assert await store.server_balance(GUILD) == server_before
    assert not await store.refund(job.id, error_code=None, error_message="again")
    assert not await store.charge(job.id, output_url=None, has_nsfw=False, inference_ms=None)
    assert [row.kind for row in await store.ledger(GUILD)] == ["reserve", "refund"]
    refunded = await store.get_job(job.id)
    assert refunded is not None
    assert (refunded.status, refunded.settlement) == (JobStatus.FAILED, "refund")
    assert (refunded.error_code, refunded.error_message) == (422, "bad image")
    assert refunded.finished_at is not None


async def test_charge_unconfirmed(store: SqliteStorage) -> None:
    job = await reserve(store)
    await store.mark_submitting(job.id, '{"final": true}')
    assert await store.charge_unconfirmed(job.id, "the submit may have reached WaveSpeed")
    assert not await store.refund(job.id, error_code=None, error_message="no")
    settled = await store.get_job(job.id)
    assert settled is not None
    assert (settled.status, settled.settlement) == (JobStatus.FAILED, "charge")
    assert settled.error_message == "the submit may have reached WaveSpeed"
    assert (await store.member_balance(GUILD, MEMBER)).spent == PRICE
    ledger = await store.ledger(GUILD)
    assert [(row.kind, row.note) for row in ledger] == [
        ("reserve", None),
        ("charge", "the submit may have reached WaveSpeed"),
    ]


async def test_unknown_job(store: SqliteStorage) -> None:
    assert await store.get_job(999) is None
    with pytest.raises(LookupError):
        await store.refund(999, error_code=None, error_message="?")
    with pytest.raises(LookupError):
        await store.mark_submitted(999, "p")


# --- periods, allowances, grants ---------------------------------------------------------------
async def test_settling_after_the_boundary_counts_in_the_reserve_period(
    store: SqliteStorage, clock: Clock
) -> None:
    clock.now = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)
    refunded = await reserve(store)
    charged = await reserve(store)
    clock.advance(hours=1)  # 26 November: a fresh allowance
    fresh = await store.member_balance(GUILD, MEMBER)
    assert (fresh.available, fresh.held, fresh.spent) == (POLICY.member_allowance, 0, 0)

    assert await store.refund(refunded.id, error_code=None, error_message="timeout")
    assert await store.charge(charged.id, output_url=None, has_nsfw=False, inference_ms=None)
    assert await store.member_balance(GUILD, MEMBER) == fresh  # no extra money today
    assert (await store.server_balance(GUILD)).available == POLICY.server_allowance
    assert await store.usage(GUILD) == []

    yesterday = await store.ledger(GUILD, "2026-11-25")
    assert [row.kind for row in yesterday] == ["reserve", "reserve", "refund", "charge"]
    assert await store.ledger(GUILD, "2026-11-26") == []
    assert fresh.resets_at == datetime(2026, 11, 27, tzinfo=UTC)


async def test_allowance_latest_wins_forever(store: SqliteStorage, clock: Clock) -> None:
    await store.set_allowance(GUILD, MEMBER, 500_000, actor_id=1)
    await store.set_allowance(GUILD, MEMBER, 2_000_000, actor_id=2)
    assert (await store.member_balance(GUILD, MEMBER)).allowance == 2_000_000
    assert (await store.member_balance(GUILD, OTHER)).allowance == POLICY.member_allowance
    assert (await store.server_balance(GUILD)).allowance == POLICY.server_allowance
    clock.advance(days=40)
    assert (await store.member_balance(GUILD, MEMBER)).allowance == 2_000_000

    await store.set_allowance(GUILD, MEMBER, 0, actor_id=2)
    with pytest.raises(BudgetExceeded):
        await reserve(store)
    with pytest.raises(ValueError):
        await store.set_allowance(GUILD, MEMBER, -1, actor_id=2)
    limits = [row for row in await store.ledger(GUILD) if row.kind == "limit"]
    assert [(row.amount_micro, row.actor_id) for row in limits] == [
        (500_000, 1),
        (2_000_000, 2),
        (0, 2),
    ]


async def test_server_allowance_caps_every_member(store: SqliteStorage) -> None:
    await store.set_allowance(GUILD, SERVER_SCOPE_MEMBER_ID, 2 * PRICE, actor_id=1)
    await reserve(store, member_id=MEMBER)
    await reserve(store, member_id=OTHER)
    with pytest.raises(BudgetExceeded) as refused:
        await reserve(store, member_id=OTHER + 1)
    assert refused.value.scope == "server"
    assert (await store.member_balance(GUILD, OTHER + 1)).available == POLICY.member_allowance
    server = await store.server_balance(GUILD)
    assert (server.allowance, server.held, server.available) == (2 * PRICE, 2 * PRICE, 0)


async def test_grants(store: SqliteStorage, clock: Clock) -> None:
    await store.grant(GUILD, MEMBER, 300_000, actor_id=42, note="birthday")
    await store.grant(GUILD, MEMBER, -100_000, actor_id=42, note=None)
    member = await store.member_balance(GUILD, MEMBER)
    assert (member.granted, member.available) == (200_000, POLICY.member_allowance + 200_000)
    server = await store.server_balance(GUILD)
    assert server.granted == 0  # a member's grant is still inside the server's cap

    await store.grant(GUILD, SERVER_SCOPE_MEMBER_ID, 5_000_000, actor_id=42, note="event")
    assert (await store.server_balance(GUILD)).granted == 5_000_000
    assert (await store.member_balance(GUILD, OTHER)).granted == 0

    grants = [row for row in await store.ledger(GUILD) if row.kind == "grant"]
    assert [(row.member_id, row.amount_micro, row.actor_id, row.note) for row in grants] == [
        (MEMBER, 300_000, 42, "birthday"),
        (MEMBER, -100_000, 42, None),
        (SERVER_SCOPE_MEMBER_ID, 5_000_000, 42, "event"),
    ]
    clock.advance(days=1)  # grants last one period
    assert (await store.member_balance(GUILD, MEMBER)).granted == 0
    assert (await store.server_balance(GUILD)).granted == 0


async def test_server_grant_lifts_the_cap(store: SqliteStorage) -> None:
    await store.set_allowance(GUILD, SERVER_SCOPE_MEMBER_ID, PRICE - 1, actor_id=1)
    with pytest.raises(BudgetExceeded):
        await reserve(store)
    await store.grant(GUILD, SERVER_SCOPE_MEMBER_ID, 1, actor_id=1, note=None)
    await reserve(store)
    assert (await store.server_balance(GUILD)).available == 0


async def test_invalid_amounts_write_nothing(store: SqliteStorage) -> None:
    with pytest.raises(TypeError):
        await store.reserve(owner(), "{}", 0.125, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await reserve(store, price=-1)
    with pytest.raises(TypeError):
        await store.grant(GUILD, MEMBER, 1.5, actor_id=1, note=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await store.grant(GUILD, -5, 100, actor_id=1, note=None)
    assert await store.ledger(GUILD) == []


async def test_usage_and_ledger(store: SqliteStorage, clock: Clock) -> None:
    for price in (PRICE, 250_000):
        job = await reserve(store, member_id=MEMBER, price=price)
        await store.charge(job.id, output_url=None, has_nsfw=False, inference_ms=None)
    refunded = await reserve(store, member_id=MEMBER)
    await store.refund(refunded.id, error_code=None, error_message="failed")
    big = await reserve(store, member_id=OTHER, price=750_000)
    await store.charge(big.id, output_url=None, has_nsfw=False, inference_ms=None)
    await reserve(store, member_id=OTHER + 1)  # still held: counted, nothing spent yet
    await store.reserve(owner(MEMBER, guild_id=GUILD + 1), "{}", PRICE, 5)  # another server

    usage = await store.usage(GUILD)
    assert [(row.member_id, row.spent_micro, row.jobs) for row in usage] == [
        (OTHER, 750_000, 1),
        (MEMBER, 375_000, 3),
        (OTHER + 1, 0, 1),
    ]
    today = await store.ledger(GUILD, "2026-11-25")
    assert today == await store.ledger(GUILD)
    assert {row.guild_id for row in today} == {GUILD}
    assert [row.kind for row in today].count("charge") == 3

    clock.advance(days=1)
    await store.grant(GUILD, MEMBER, 1, actor_id=1, note=None)
    assert await store.usage(GUILD) == []
    assert len(await store.ledger(GUILD)) == len(today) + 1
    assert [row.kind for row in await store.ledger(GUILD, "2026-11-26")] == ["grant"]


# --- jobs -------------------------------------------------------------------------------------
async def test_job_record_round_trips_every_field(store: SqliteStorage, clock: Clock) -> None:
    created = clock.now
    job = await reserve(store)
    await store.mark_submitting(job.id, '{"image": "https://uploaded"}')
    clock.advance(seconds=2)
    await store.mark_submitted(job.id, "pred-abc")
    await store.set_wavespeed_status(job.id, "processing")
    clock.advance(seconds=30, microseconds=123)
    await store.charge(
        job.id, output_url="https://cdn/video.mp4", has_nsfw=True, inference_ms=27_500
    )
    clock.advance(seconds=3)
    await store.mark_delivered(job.id, 888)

    expected = JobRecord(
        id=job.id,
        guild_id=GUILD,
        channel_id=CHANNEL,
        member_id=MEMBER,
        request_json='{"image": "https://uploaded"}',
        price_micro=PRICE,
        period_key="2026-11-25",
        status=JobStatus.DELIVERED,
        prediction_id="pred-abc",
        wavespeed_status="processing",
        output_url="https://cdn/video.mp4",
        has_nsfw=True,
        inference_ms=27_500,
        error_code=None,
        error_message=None,
        result_message_id=888,
        created_at=created,
        submitted_at=created + timedelta(seconds=2),
        finished_at=created + timedelta(seconds=32, microseconds=123),
        delivered_at=created + timedelta(seconds=35, microseconds=123),
        settlement="charge",
    )
    stored = await store.get_job(job.id)
    assert stored == expected
    assert stored is not None and stored.owner == owner()
    for moment in (stored.created_at, stored.submitted_at, stored.finished_at, stored.delivered_at):
        assert moment is not None and moment.utcoffset() == timedelta(0)


async def test_unfinished_jobs_and_transitions(store: SqliteStorage) -> None:
    reserved = await reserve(store)
    submitting = await reserve(store)
    await store.mark_submitting(submitting.id, "{}")
    submitted = await reserve(store)
    await store.mark_submitted(submitted.id, "p3")
    completed = await reserve(store)
    await store.charge(completed.id, output_url="u", has_nsfw=False, inference_ms=1)
    failed = await reserve(store)
    await store.refund(failed.id, error_code=None, error_message="x")
    delivered = await reserve(store)
    await store.refund(delivered.id, error_code=None, error_message="x")
    await store.mark_delivered(delivered.id, None)

    unfinished = await store.unfinished_jobs()
    assert [(job.id, job.status) for job in unfinished] == [
        (reserved.id, JobStatus.RESERVED),
        (submitting.id, JobStatus.SUBMITTING),
        (submitted.id, JobStatus.SUBMITTED),
        (completed.id, JobStatus.COMPLETED),
        (failed.id, JobStatus.FAILED),
    ]
    # an unsettled job cannot be marked delivered (its money would stay held forever)
    with pytest.raises(ValueError, match="submitted"):
        await store.mark_delivered(submitted.id, 1)
    with pytest.raises(ValueError):
        await store.mark_submitted(delivered.id, "late")
    assert await store.unfinished_jobs() == unfinished

    recent = await store.recent_jobs(GUILD, MEMBER, limit=3)
    assert [job.id for job in recent] == [delivered.id, failed.id, completed.id]
    assert await store.recent_jobs(GUILD, OTHER) == []


async def test_guild_settings(store: SqliteStorage) -> None:
    assert await store.get_guild_setting(GUILD, "log_channel") is None
    await store.set_guild_setting(GUILD, "log_channel", "123")
    await store.set_guild_setting(GUILD, "log_channel", "456")
    await store.set_guild_setting(GUILD + 1, "log_channel", "789")
    assert await store.get_guild_setting(GUILD, "log_channel") == "456"
    await store.set_guild_setting(GUILD, "log_channel", None)
    await store.set_guild_setting(GUILD, "never_set", None)
    assert await store.get_guild_setting(GUILD, "log_channel") is None
    assert await store.get_guild_setting(GUILD + 1, "log_channel") == "789"


# --- schema, migrations, database-level safety nets ---------------------------------------------
async def test_migrations_apply_once(db_path: str, clock: Clock) -> None:
    latest = len(load_migrations())
    assert [migration.version for migration in load_migrations()] == list(range(1, latest + 1))
    first = await open_storage(db_path, POLICY, clock=clock)
    await reserve(first)
    await first.close()
    second = await open_storage(db_path, POLICY, clock=clock)  # re-open: nothing re-applied
    assert len(await second.ledger(GUILD)) == 1
    await second.close()

    with raw(db_path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (latest,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert {"jobs", "ledger", "guild_settings", "job_records", "ledger_no_update"} <= names


async def test_fresh_database_opened_by_two_processes_at_once(db_path: str, clock: Clock) -> None:
    stores = await asyncio.gather(*(open_storage(db_path, POLICY, clock=clock) for _ in range(2)))
    for store in stores:
        assert await store.unfinished_jobs() == []
        await store.close()


async def test_newer_schema_is_refused(db_path: str) -> None:
    with raw(db_path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="newer"):
        await open_storage(db_path, POLICY)


async def test_database_refuses_bad_ledger_rows(store: SqliteStorage, db_path: str) -> None:
    job = await reserve(store)
    await store.charge(job.id, output_url=None, has_nsfw=False, inference_ms=None)
    insert = (
        "INSERT INTO ledger (guild_id, member_id, kind, amount_micro, period_key, job_id, "
        "created_at) VALUES (1, 1, ?, ?, 'p', ?, 'now')"
    )
    db = raw(db_path)
    try:
        for statement, params in [
            (insert, ("refund", PRICE, job.id)),  # a second settlement
            (insert, ("reserve", PRICE, job.id)),  # a second reservation
            (insert, ("reserve", -1, None)),  # negative
            (insert, ("bonus", 1, None)),  # unknown kind
            (insert, ("grant", 1, job.id)),  # a grant tied to a job
            (insert, ("charge", 0.5, job.id)),  # not an integer
            ("UPDATE ledger SET amount_micro = 0", ()),
            ("DELETE FROM ledger", ()),
        ]:
            with pytest.raises(sqlite3.IntegrityError):
                db.execute(statement, params)
    finally:
        db.close()
    assert [row.kind for row in await store.ledger(GUILD)] == ["reserve", "charge"]


# --- open_storage -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///data/wanbot.db", "data/wanbot.db"),
        ("sqlite:////var/lib/wanbot.db", "/var/lib/wanbot.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("data/wanbot.db", "data/wanbot.db"),
        ("/srv/wanbot.db", "/srv/wanbot.db"),
    ],
)
def test_database_path(url: str, path: str) -> None:
    assert database_path(url) == path


@pytest.mark.parametrize(
    "url", ["postgresql://db/wanbot", "sqlite://host/wanbot.db", "sqlite:///", ""]
)
def test_database_path_refuses(url: str) -> None:
    with pytest.raises(ValueError):
        database_path(url)


async def test_open_storage_creates_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for url in (
        "sqlite:///rel/dir/a.db",
        f"sqlite:///{tmp_path}/abs/dir/b.db",
        "sqlite:///:memory:",
    ):
        store = await open_storage(url, POLICY)
        await reserve(store)
        await store.close()
    assert (tmp_path / "rel/dir/a.db").is_file()
    assert (tmp_path / "abs/dir/b.db").is_file()
