"""Running balances: kept in the same transaction as each ledger row, always equal to what the
ledger adds up to (`audit()`), never overspent under heavy concurrency, and rebuilt from the
ledger when an older database is upgraded."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.domain.budget import BudgetExceeded, BudgetPeriod, BudgetPolicy, TooManyJobs
from bot.domain.job import JobOwner
from bot.domain.lifecycle import JobState
from storage import open_storage
from storage.base import Storage
from storage.migrate import load_migrations
from storage.sqlite import SqliteStorage
from tests.storage_backends import execute_raw

ROOT = str(Path(__file__).resolve().parents[1])
PRICE = 125_000
POLICY = BudgetPolicy(
    member_allowance=1_000_000, server_allowance=6_000_000, period=BudgetPeriod.DAY
)
START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
FAILED = {"failure_kind": "generation_failed", "error_message": "no video"}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(database_url: str, clock: Clock) -> AsyncIterator[Storage]:
    """A store on each backend (see tests/storage_backends.py)."""
    opened = await open_storage(database_url, POLICY, clock=clock)
    try:
        yield opened
    finally:
        await opened.close()


async def deliver(store: Storage, job_id: int) -> None:
    for state in (
        JobState.QUEUED,
        JobState.SUBMITTING,
        JobState.SUBMITTED,
        JobState.READY,
        JobState.POSTING,
    ):
        changes = {"prediction_id": f"p{job_id}"} if state is JobState.SUBMITTED else {}
        await store.advance(job_id, state, **changes)
    await store.advance(job_id, JobState.DELIVERED, result_message_id=1)


async def test_every_kind_of_movement_keeps_the_totals_equal_to_the_ledger(
    store: Storage, clock: Clock
) -> None:
    owner, other = JobOwner(1, 2, 3), JobOwner(1, 2, 4)
    charged = await store.reserve(owner, "{}", PRICE, 10)
    refunded = await store.reserve(other, "{}", PRICE, 10)
    held = await store.reserve(owner, "{}", PRICE, 10)
    await deliver(store, charged.id)
    await store.advance(refunded.id, JobState.FAILED, **FAILED)
    await store.grant(1, 3, 500_000, actor_id=9, note="bonus")
    await store.grant(1, 0, -250_000, actor_id=9, note="server cut")
    await store.set_allowance(1, 4, 2_000_000, actor_id=9)
    clock.now += timedelta(days=1)  # a new period: the held job still settles in its own
    await deliver(store, held.id)
    await store.reserve(owner, "{}", PRICE, 10)

    assert await store.audit() == []
    member = await store.member_balance(1, 3)
    assert (member.spent, member.held, member.granted) == (0, PRICE, 0)  # today's period
    clock.now -= timedelta(days=1)
    member = await store.member_balance(1, 3)
    assert (member.spent, member.held, member.granted) == (2 * PRICE, 0, 500_000)
    server = await store.server_balance(1)
    assert (server.spent, server.held, server.granted) == (2 * PRICE, 0, -250_000)
    assert (await store.member_balance(1, 4)).allowance == 2_000_000


async def test_audit_names_a_total_that_drifted_from_the_ledger(
    store: Storage, database_url: str
) -> None:
    await store.reserve(JobOwner(1, 2, 3), "{}", PRICE, 10)
    await execute_raw(database_url, "UPDATE balances SET held = held + 1 WHERE member_id = 3")
    [line] = await store.audit()
    assert "member 3" in line and f"{PRICE + 1}" in line and f"{PRICE}" in line


async def test_the_member_budget_binds_first_then_the_servers(
    store: Storage,
) -> None:
    """The member budget binds first, then the server's, each by its own running total."""
    members = [JobOwner(1, 2, member) for member in range(3, 10)]
    results: Counter[str] = Counter()
    for owner in members:
        for _ in range(10):
            try:
                await store.reserve(owner, "{}", PRICE, 100)
                results["ok"] += 1
            except BudgetExceeded as refused:
                results[refused.scope] += 1
    # each member may hold 8 prices; the server 48: six members full, the seventh refused
    assert results == {"ok": 48, "member": 6 * 2, "server": 10}
    assert await store.audit() == []


async def test_ten_thousand_attempts_from_500_tasks_spend_exactly_what_the_budgets_allow(
    database_url: str,
) -> None:
    """50 members over 3 servers, 10,000 reservation attempts from 500 concurrent tasks on two
    stores (two connections or pools, as two processes would have): the successes are exactly
    what the budgets allow, no balance goes below zero, and the audit is clean."""
    async with (
        await open_storage(database_url, POLICY) as first,
        await open_storage(database_url, POLICY) as second,
    ):
        owners = [
            JobOwner(guild_id=1 + member % 3, channel_id=7, member_id=10 + member)
            for member in range(50)
        ]
        attempts = [random.Random(7).choice(owners) for _ in range(10_000)]
        queue: asyncio.Queue[JobOwner] = asyncio.Queue()
        for owner in attempts:
            queue.put_nowait(owner)
        granted: Counter[JobOwner] = Counter()

        async def worker(store: Storage) -> None:
            while not queue.empty():
                owner = queue.get_nowait()
                try:
                    await store.reserve(owner, "{}", PRICE, 10**6)
                    granted[owner] += 1
                except (BudgetExceeded, TooManyJobs):
                    pass

        await asyncio.gather(*(worker(first if n % 2 else second) for n in range(500)))

        asked = Counter(attempts)
        per_member = POLICY.member_allowance // PRICE
        per_server = POLICY.server_allowance // PRICE
        for guild in (1, 2, 3):
            mine = [o for o in owners if o.guild_id == guild]
            possible = sum(min(asked[o], per_member) for o in mine)
            assert sum(granted[o] for o in mine) == min(possible, per_server)
            assert (await first.server_balance(guild)).available >= 0
        for owner in owners:
            assert granted[owner] <= per_member
            assert (await first.member_balance(owner.guild_id, owner.member_id)).available >= 0
        assert await first.audit() == []


async def test_an_older_database_gets_its_totals_from_its_ledger(tmp_path: Path) -> None:
    """A schema-3 database with a period of jobs and grants: upgrading builds the totals."""
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        for migration in load_migrations()[:3]:
            for statement in migration.statements():
                db.execute(statement)
        db.execute("PRAGMA user_version = 3")
        created = START.isoformat()
        for job_id, member, state, settlement in [
            (1, 3, "delivered", "charge"),
            (2, 3, "closed", "refund"),
            (3, 4, "submitted", None),
        ]:
            db.execute(
                "INSERT INTO jobs (id, guild_id, channel_id, member_id, request_json, "
                "price_micro, period_key, state, failure_kind, created_at) "
                "VALUES (?, 1, 2, ?, '{}', ?, '2026-11-25', ?, ?, ?)",
                (
                    job_id,
                    member,
                    PRICE,
                    state,
                    "moderation" if state == "closed" else None,
                    created,
                ),
            )
            rows = [("reserve", job_id)] + ([(settlement, job_id)] if settlement else [])
            for kind, job in rows:
                db.execute(
                    "INSERT INTO ledger (guild_id, member_id, kind, amount_micro, period_key, "
                    "job_id, created_at) VALUES (1, ?, ?, ?, '2026-11-25', ?, ?)",
                    (member, kind, PRICE, job, created),
                )
        db.execute(
            "INSERT INTO ledger (guild_id, member_id, kind, amount_micro, period_key, actor_id, "
            "created_at) VALUES (1, 0, 'grant', 70000, '2026-11-25', 9, ?)",
            (created,),
        )

    clock = Clock()
    async with await SqliteStorage.open(str(path), POLICY, clock=clock) as store:
        assert await store.audit() == []
        server = await store.server_balance(1)
        assert (server.spent, server.held, server.granted) == (PRICE, PRICE, 70_000)
        member = await store.member_balance(1, 3)
        assert (member.spent, member.held) == (PRICE, 0)
        await store.advance(3, JobState.READY, output_url="https://x/v.mp4")
        await store.advance(3, JobState.FAILED, **FAILED)
        assert (await store.server_balance(1)).held == 0
        assert await store.audit() == []


CROWD_PROCESS = """
import asyncio, json, random, sys
from collections import Counter
from bot.domain.budget import BudgetExceeded, BudgetPeriod, BudgetPolicy
from bot.domain.job import JobOwner
from storage import open_storage

url, index, processes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
policy = BudgetPolicy(*map(int, sys.argv[4:6]), BudgetPeriod.DAY)
owners = [JobOwner(1 + m % 3, 7, 10 + m) for m in range(50)]
attempts = [random.Random(7).choice(owners) for _ in range(10_000)][index::processes]

async def main() -> None:
    granted = Counter()
    queue = asyncio.Queue()
    for owner in attempts:
        queue.put_nowait(owner)
    async with await open_storage(url, policy) as store:
        async def worker() -> None:
            while not queue.empty():
                owner = queue.get_nowait()
                try:
                    await store.reserve(owner, "{}", 125_000, 10**6)
                    granted[owner.member_id] += 1
                except BudgetExceeded:
                    pass
        await asyncio.gather(*(worker() for _ in range(500 // processes)))
    print(json.dumps(granted))

asyncio.run(main())
"""


@pytest.mark.postgres
async def test_three_processes_on_one_postgresql_never_overspend(postgres_url: str) -> None:
    """The same 10,000 attempts split over three real processes sharing one PostgreSQL."""
    budgets = [str(POLICY.member_allowance), str(POLICY.server_allowance)]
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CROWD_PROCESS,
            postgres_url,
            str(index),
            "3",
            *budgets,
            env={**os.environ, "PYTHONPATH": ROOT},
            stdout=asyncio.subprocess.PIPE,
        )
        for index in range(3)
    ]
    outputs = [await process.communicate() for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0]
    granted: Counter[int] = Counter()
    for out, _ in outputs:
        granted.update({int(member): count for member, count in json.loads(out).items()})

    owners = [JobOwner(1 + m % 3, 7, 10 + m) for m in range(50)]
    asked = Counter(random.Random(7).choice(owners) for _ in range(10_000))
    per_member = POLICY.member_allowance // PRICE
    per_server = POLICY.server_allowance // PRICE
    async with await open_storage(postgres_url, POLICY) as store:
        for guild in (1, 2, 3):
            mine = [o for o in owners if o.guild_id == guild]
            possible = sum(min(asked[o], per_member) for o in mine)
            assert sum(granted[o.member_id] for o in mine) == min(possible, per_server)
            assert (await store.server_balance(guild)).available >= 0
        assert all(count <= per_member for count in granted.values())
        assert await store.audit() == []


async def test_a_write_waits_off_the_loop_while_another_process_holds_the_lock(
    tmp_path: Path,
) -> None:
    """Another connection (as another process would) holds SQLite's write lock: a reservation
    waits for it on the store's thread, not on the event loop, and then goes through."""
    path = tmp_path / "shared.db"
    async with await SqliteStorage.open(str(path), POLICY) as store:
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        reserving = asyncio.create_task(store.reserve(JobOwner(1, 2, 3), "{}", PRICE, 10))
        ticks = 0
        while ticks < 20:  # the loop keeps running while the reservation waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert not reserving.done()
        other.execute("COMMIT")
        other.close()
        job = await asyncio.wait_for(reserving, 5)
        assert job.state is JobState.RESERVED
        assert await store.audit() == []
