"""Both stores, SqliteStorage on real SQLite files and PostgresStorage on a real PostgreSQL server
(a schema of the test run's own: tests/storage_backends.py), held to one behaviour: reservations
under concurrency, the job lifecycle and the ledger rows its moves write, periods, allowances,
grants, usage, settings and the database's own safety nets. Then each backend's migrations
(SQLite's including an upgrade of a version-2 database with data), and PostgreSQL's connection
errors, which never show the password."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import traceback
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest

from bot.domain.budget import (
    SERVER_SCOPE_MEMBER_ID,
    BudgetExceeded,
    BudgetPeriod,
    BudgetPolicy,
    TooManyJobs,
)
from bot.domain.job import JobOwner, JobRecord
from bot.domain.lifecycle import (
    FINAL_STATES,
    IN_PROGRESS,
    TRANSITIONS,
    FailureKind,
    IllegalTransition,
    JobState,
    Settlement,
    settlement_on_entering,
)
from storage import (
    PostgresStorage,
    SqliteStorage,
    check_database_url,
    database_path,
    is_postgres_url,
    open_storage,
)
from storage.common import load_sql_migrations
from storage.migrate import load_migrations
from storage.postgres import MIGRATIONS_FOLDER, PostgresTarget
from tests.storage_backends import (
    CHECK_FAILED,
    INTEGRITY_ERRORS,
    NOT_UNIQUE,
    POLICY,
    START,
    Clock,
    execute_raw,
    fetch_postgres,
)

Store = SqliteStorage | PostgresStorage

GUILD = 1001
CHANNEL = 2002
MEMBER = 3003
OTHER = 3004
PRICE = 125_000  # 5 s, 720p, silent
PLENTY = 10**12
HOLD_UNTIL = START + timedelta(minutes=10)
SECRET = "hunter2-7c1f0e"  # a database password distinctive enough to search every message for


def owner(member_id: int = MEMBER, guild_id: int = GUILD) -> JobOwner:
    return JobOwner(guild_id, CHANNEL, member_id)


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "wanbot.db")


async def reserve(
    store: Store, member_id: int = MEMBER, price: int = PRICE, max_in_flight: int = 10
) -> JobRecord:
    return await store.reserve(owner(member_id), '{"prompt": "a cat"}', price, max_in_flight)


async def plenty(store: Store, member_id: int = MEMBER) -> None:
    """Lift the member's and the server's allowances, for tests that make many jobs."""
    await store.set_allowance(GUILD, member_id, PLENTY, actor_id=1)
    await store.set_allowance(GUILD, SERVER_SCOPE_MEMBER_ID, PLENTY, actor_id=1)


def raw(db_path: str) -> closing[sqlite3.Connection]:
    """A plain connection that bypasses SqliteStorage, for poking at the schema; closed after."""
    return closing(sqlite3.connect(db_path, isolation_level=None))


# --- moving jobs through the lifecycle ----------------------------------------------------------
def shortest_paths() -> dict[JobState, tuple[JobState, ...]]:
    """For every state, the moves of a shortest allowed way there from `reserved` (breadth
    first over TRANSITIONS, so the table itself decides how each state is reached)."""
    paths: dict[JobState, tuple[JobState, ...]] = {JobState.RESERVED: ()}
    queue = deque([JobState.RESERVED])
    while queue:
        state = queue.popleft()
        for target in sorted(TRANSITIONS[state]):
            if target not in paths:
                paths[target] = (*paths[state], target)
                queue.append(target)
    return paths


PATHS = shortest_paths()
MOVES = [(source, target) for source in JobState for target in JobState]
ALLOWED = [(source, target) for source, target in MOVES if target in TRANSITIONS[source]]
REFUSED = [(source, target) for source, target in MOVES if target not in TRANSITIONS[source]]


def move_id(move: tuple[JobState, JobState]) -> str:
    return f"{move[0]}->{move[1]}"


def needs(job_id: int, to: JobState) -> dict[str, object]:
    """The columns the schema requires with a move into `to` (its CHECKs), for job `job_id`."""
    match to:
        case JobState.UNCERTAIN:
            return {"hold_until": HOLD_UNTIL}
        case JobState.SUBMITTED:
            return {"prediction_id": f"pred-{job_id}"}  # unique per job
        case JobState.FAILED:
            return {"failure_kind": FailureKind.GENERATION_FAILED}
        case _:
            return {}


async def move(store: Store, job_id: int, to: JobState) -> JobRecord:
    """One move, with what it needs."""
    return await store.advance(job_id, to, **needs(job_id, to))


async def walk(store: Store, job: JobRecord, to: JobState) -> JobRecord:
    """Move a reserved job along a shortest allowed way to `to`."""
    assert job.state is JobState.RESERVED
    for state in PATHS[to]:
        job = await move(store, job.id, state)
    return job


async def job_in(store: Store, state: JobState, member_id: int = MEMBER) -> JobRecord:
    """A fresh job, in `state`."""
    return await walk(store, await reserve(store, member_id, max_in_flight=1000), state)


async def job_kinds(store: Store, job_id: int) -> list[str]:
    """The kinds of a job's ledger rows, oldest first."""
    return [row.kind for row in await store.ledger(GUILD) if row.job_id == job_id]


# --- the headline: concurrent reservations never overspend -------------------------------------
@asynccontextmanager
async def opened(
    database_url: str, policy: BudgetPolicy, clock: Clock, instances: int
) -> AsyncIterator[list[Store]]:
    """`instances` stores on one database (two: like the bot and `wanbot generate` side by side,
    each with its own connection or pool); closed after."""
    stores = [await open_storage(database_url, policy, clock=clock) for _ in range(instances)]
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()


@pytest.mark.parametrize("instances", [1, 2], ids=["one-store", "two-stores"])
@pytest.mark.parametrize("scope", ["member", "server"])
async def test_concurrent_reserves_never_overspend(
    database_url: str, clock: Clock, scope: str, instances: int
) -> None:
    tight = 37 * PRICE + PRICE - 1  # affords exactly 37, leaves PRICE - 1
    policy = BudgetPolicy(
        member_allowance=tight if scope == "member" else PLENTY,
        server_allowance=tight if scope == "server" else PLENTY,
        period=BudgetPeriod.DAY,
    )
    async with opened(database_url, policy, clock, instances) as stores:
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
        assert await store.audit() == []


@pytest.mark.parametrize("instances", [1, 2], ids=["one-store", "two-stores"])
async def test_concurrent_reserves_never_exceed_the_in_flight_limit(
    database_url: str, clock: Clock, instances: int
) -> None:
    """50 reservations of one member at once, with money for all but room for 3 in flight:
    exactly 3 are written."""
    async with opened(database_url, POLICY, clock, instances) as stores:
        await plenty(stores[0])
        results = await asyncio.gather(
            *(stores[i % instances].reserve(owner(), "{}", PRICE, 3) for i in range(50)),
            return_exceptions=True,
        )
        jobs = [result for result in results if isinstance(result, JobRecord)]
        refusals = [result for result in results if isinstance(result, TooManyJobs)]
        assert (len(jobs), len(refusals)) == (3, 47)
        assert (await stores[-1].member_balance(GUILD, MEMBER)).held == 3 * PRICE
        assert await stores[-1].audit() == []


@pytest.mark.parametrize("instances", [1, 2], ids=["one-store", "two-stores"])
async def test_racing_endings_settle_each_job_once(
    database_url: str, clock: Clock, instances: int
) -> None:
    """A delivery and a failure race for each of 20 posting jobs: one move wins, the other is
    refused, and each job gets the one ledger row of the ending that won."""
    async with opened(database_url, POLICY, clock, instances) as stores:
        await plenty(stores[0])
        jobs = [await job_in(stores[0], JobState.POSTING) for _ in range(20)]
        endings = (JobState.DELIVERED, JobState.FAILED)
        results = await asyncio.gather(
            *(
                move(stores[i % instances], job.id, ending)
                for job in jobs
                for i, ending in enumerate(endings)
            ),
            return_exceptions=True,
        )
        won = [result for result in results if isinstance(result, JobRecord)]
        lost = [result for result in results if isinstance(result, IllegalTransition)]
        assert (len(won), len(lost)) == (20, 20)

        store = stores[-1]
        settled = [row for row in await store.ledger(GUILD) if row.kind in ("charge", "refund")]
        assert Counter(row.job_id for row in settled) == Counter(job.id for job in jobs)
        kind_of = {row.job_id: row.kind for row in settled}
        for job in won:
            assert (
                kind_of[job.id]
                == {JobState.DELIVERED: "charge", JobState.FAILED: "refund"}[job.state]
            )
        delivered = sum(job.state is JobState.DELIVERED for job in won)
        balance = await store.member_balance(GUILD, MEMBER)
        assert (balance.spent, balance.held) == (delivered * PRICE, 0)
        assert await store.audit() == []


async def test_refusal_writes_nothing(store: Store) -> None:
    with pytest.raises(BudgetExceeded) as refused:
        await reserve(store, price=POLICY.member_allowance + 1)
    assert refused.value.scope == "member"
    assert refused.value.balance.available == POLICY.member_allowance
    assert await store.ledger(GUILD) == []
    assert await store.unfinished_jobs() == []


async def test_a_short_server_budget_is_reported_as_it_was(store: Store) -> None:
    """The member could pay but the server can't: the refusal names the server, with balances
    untouched by the refused attempt."""
    await store.set_allowance(GUILD, SERVER_SCOPE_MEMBER_ID, 100_000, actor_id=1)
    await store.set_allowance(GUILD, MEMBER, 150_000, actor_id=1)
    with pytest.raises(BudgetExceeded) as refused:
        await reserve(store, price=125_000)
    assert refused.value.scope == "server"
    assert (refused.value.balance.available, refused.value.balance.held) == (100_000, 0)
    assert (await store.member_balance(GUILD, MEMBER)).held == 0
    assert await store.audit() == []


async def test_in_flight_limit_is_per_member(store: Store) -> None:
    first = await reserve(store, max_in_flight=2)
    second = await reserve(store, max_in_flight=2)
    await move(store, first.id, JobState.QUEUED)
    with pytest.raises(TooManyJobs) as refused:
        await reserve(store, max_in_flight=2)
    assert refused.value.limit == 2
    assert len(await store.ledger(GUILD)) == 2
    await reserve(store, member_id=OTHER, max_in_flight=2)  # the limit is per member

    await move(store, second.id, JobState.FAILED)
    third = await reserve(store, max_in_flight=2)
    assert third.state is JobState.RESERVED


@pytest.mark.parametrize("state", list(JobState), ids=str)
async def test_in_flight_limit_counts_the_states_in_progress(store: Store, state: JobState) -> None:
    await job_in(store, state)
    if state in IN_PROGRESS:
        with pytest.raises(TooManyJobs):
            await reserve(store, max_in_flight=1)
    else:
        assert (await reserve(store, max_in_flight=1)).state is JobState.RESERVED


async def test_cancelled_calls_leave_no_half_transactions(store: Store) -> None:
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


async def test_cancelled_moves_keep_state_and_ledger_together(store: Store) -> None:
    """Cancel a delivery at every possible await: a job is delivered exactly when its charge row
    exists, and the store keeps working."""
    await plenty(store)
    jobs = []
    # a move takes a few event-loop turns (SQLite: one hop to the store's thread) to a few dozen
    # (PostgreSQL: a round trip per statement), so the cancellations are spread past that:
    # before, during and after it
    for steps in range(0, 60, 2):
        job = await job_in(store, JobState.POSTING)
        jobs.append(job.id)
        task = asyncio.create_task(store.advance(job.id, JobState.DELIVERED))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    states = {job.id: job.state for job in await store.recent_jobs(GUILD, MEMBER, limit=100)}
    assert set(states) == set(jobs)
    charged = {row.job_id for row in await store.ledger(GUILD) if row.kind == "charge"}
    assert {job_id for job_id, state in states.items() if state is JobState.DELIVERED} == charged
    assert set(states.values()) <= {JobState.POSTING, JobState.DELIVERED}
    assert (await job_in(store, JobState.DELIVERED)).settlement is Settlement.CHARGE


# --- the lifecycle: every move of the table -----------------------------------------------------
def test_every_state_is_reachable_and_the_moves_partition() -> None:
    assert set(PATHS) == set(JobState)
    assert len(ALLOWED) == sum(len(targets) for targets in TRANSITIONS.values())
    assert len(ALLOWED) + len(REFUSED) == len(JobState) ** 2


@pytest.mark.parametrize(("source", "target"), ALLOWED, ids=move_id)
async def test_every_allowed_move_succeeds(
    store: Store, source: JobState, target: JobState
) -> None:
    job = await job_in(store, source)
    kinds = await job_kinds(store, job.id)
    moved = await move(store, job.id, target)
    assert moved.state is target
    assert await store.get_job(job.id) == moved
    settlement = settlement_on_entering(target)
    assert await job_kinds(store, job.id) == kinds + ([settlement.value] if settlement else [])


@pytest.mark.parametrize(("source", "target"), REFUSED, ids=move_id)
async def test_every_disallowed_move_is_refused_and_changes_nothing(
    store: Store, source: JobState, target: JobState
) -> None:
    job = await job_in(store, source)
    ledger = await store.ledger(GUILD)
    with pytest.raises(IllegalTransition) as refused:
        await move(store, job.id, target)
    assert (refused.value.job_id, refused.value.current, refused.value.target) == (
        job.id,
        source,
        target,
    )
    assert await store.get_job(job.id) == job
    assert await store.ledger(GUILD) == ledger


async def test_delivering_writes_one_charge(store: Store) -> None:
    job = await job_in(store, JobState.DELIVERED)
    rows = [row for row in await store.ledger(GUILD) if row.job_id == job.id]
    assert [(row.kind, row.amount_micro, row.period_key) for row in rows] == [
        ("reserve", PRICE, job.period_key),
        ("charge", PRICE, job.period_key),
    ]
    assert job.settlement is Settlement.CHARGE
    balance = await store.member_balance(GUILD, MEMBER)
    assert (balance.spent, balance.held) == (PRICE, 0)
    assert balance.available == POLICY.member_allowance - PRICE


async def test_failing_writes_one_refund_and_closing_none(store: Store) -> None:
    before = await store.member_balance(GUILD, MEMBER)
    server_before = await store.server_balance(GUILD)
    job = await reserve(store, price=187_500)
    assert (await store.member_balance(GUILD, MEMBER)).available == before.available - 187_500
    failed = await store.advance(
        job.id,
        JobState.FAILED,
        failure_kind=FailureKind.BAD_INPUT,
        error_code=422,
        error_message="bad image",
    )
    assert failed.settlement is Settlement.REFUND
    assert await store.member_balance(GUILD, MEMBER) == before
    assert await store.server_balance(GUILD) == server_before
    closed = await store.advance(job.id, JobState.CLOSED)
    assert (closed.state, closed.failure_kind, closed.settlement) == (
        JobState.CLOSED,
        FailureKind.BAD_INPUT,
        Settlement.REFUND,
    )
    rows = await store.ledger(GUILD)
    assert [(row.kind, row.amount_micro) for row in rows] == [
        ("reserve", 187_500),
        ("refund", 187_500),
    ]
    assert (closed.error_code, closed.error_message) == (422, "bad image")


async def test_an_uncertain_submit_stays_held_until_it_is_decided(store: Store) -> None:
    job = await job_in(store, JobState.UNCERTAIN)
    assert (job.hold_until, job.settlement) == (HOLD_UNTIL, None)
    assert (await store.member_balance(GUILD, MEMBER)).held == PRICE
    expired = await store.advance(job.id, JobState.FAILED, failure_kind=FailureKind.HOLD_EXPIRED)
    assert (expired.failure_kind, expired.settlement) == (
        FailureKind.HOLD_EXPIRED,
        Settlement.REFUND,
    )
    assert (await store.member_balance(GUILD, MEMBER)).held == 0


async def test_uncertain_requires_a_hold_deadline(store: Store) -> None:
    job = await job_in(store, JobState.SUBMITTING)
    with pytest.raises(INTEGRITY_ERRORS, match=CHECK_FAILED):
        await store.advance(job.id, JobState.UNCERTAIN)
    assert await store.get_job(job.id) == job


async def test_failing_requires_a_failure_kind_and_then_writes_no_refund(
    store: Store,
) -> None:
    job = await job_in(store, JobState.SUBMITTED)
    with pytest.raises(INTEGRITY_ERRORS, match=CHECK_FAILED):
        await store.advance(job.id, JobState.FAILED, error_message="no kind")
    assert await store.get_job(job.id) == job
    assert await job_kinds(store, job.id) == ["reserve"]  # the refund was rolled back with it


async def test_only_an_ended_job_has_a_failure_kind(store: Store) -> None:
    job = await reserve(store)
    with pytest.raises(INTEGRITY_ERRORS, match=CHECK_FAILED):
        await store.advance(job.id, JobState.QUEUED, failure_kind=FailureKind.BAD_INPUT)
    assert await store.get_job(job.id) == job


@pytest.mark.parametrize("kind", list(FailureKind), ids=str)
async def test_failure_kind_is_stored_and_read_back(store: Store, kind: FailureKind) -> None:
    job = await job_in(store, JobState.SUBMITTED)
    failed = await store.advance(job.id, JobState.FAILED, failure_kind=kind)
    assert failed.failure_kind is kind
    closed = await store.advance(job.id, JobState.CLOSED)
    assert closed.failure_kind is kind
    assert (await store.get_job(job.id)) == closed


async def test_reposting_counts_post_attempts(store: Store) -> None:
    job = await job_in(store, JobState.READY)
    assert job.post_attempts == 0
    attempts = [(await store.advance(job.id, JobState.POSTING)).post_attempts for _ in range(3)]
    assert attempts == [1, 2, 3]
    delivered = await store.advance(job.id, JobState.DELIVERED, result_message_id=9)
    assert delivered.post_attempts == 3
    assert await job_kinds(store, job.id) == ["reserve", "charge"]  # re-posting charges nothing


async def test_a_prediction_belongs_to_one_job(store: Store) -> None:
    first = await job_in(store, JobState.SUBMITTING)
    second = await job_in(store, JobState.UNCERTAIN)
    await store.advance(first.id, JobState.SUBMITTED, prediction_id="pred-x")
    with pytest.raises(INTEGRITY_ERRORS, match=NOT_UNIQUE):
        await store.advance(second.id, JobState.SUBMITTED, prediction_id="pred-x")
    assert await store.get_job(second.id) == second
    assert await store.known_predictions(["pred-x", "pred-y"]) == {"pred-x"}
    assert await store.known_predictions([]) == set()
    adopted = await store.advance(second.id, JobState.SUBMITTED, prediction_id="pred-y")
    assert adopted.prediction_id == "pred-y"


async def test_a_move_sets_only_the_columns_it_may(store: Store) -> None:
    job = await reserve(store)
    for column in ("price_micro", "state", "post_attempts", "submitted_at", "nonsense"):
        with pytest.raises(ValueError, match=column):
            await store.advance(job.id, JobState.QUEUED, **{column: 0})
    assert await store.get_job(job.id) == job


async def test_unknown_job(store: Store) -> None:
    assert await store.get_job(999) is None
    with pytest.raises(LookupError):
        await store.advance(999, JobState.SUBMITTING)


# --- periods, allowances, grants ---------------------------------------------------------------
async def test_settling_after_the_boundary_counts_in_the_reserve_period(
    store: Store, clock: Clock
) -> None:
    clock.now = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)
    refunded = await reserve(store)
    charged = await walk(store, await reserve(store), JobState.POSTING)
    clock.advance(hours=1)  # 26 November: a fresh allowance
    fresh = await store.member_balance(GUILD, MEMBER)
    assert (fresh.available, fresh.held, fresh.spent) == (POLICY.member_allowance, 0, 0)

    await move(store, refunded.id, JobState.FAILED)
    await move(store, charged.id, JobState.DELIVERED)
    assert await store.member_balance(GUILD, MEMBER) == fresh  # no extra money today
    assert (await store.server_balance(GUILD)).available == POLICY.server_allowance
    assert await store.usage(GUILD) == []

    yesterday = await store.ledger(GUILD, "2026-11-25")
    assert [(row.kind, row.job_id) for row in yesterday] == [
        ("reserve", refunded.id),
        ("reserve", charged.id),
        ("refund", refunded.id),
        ("charge", charged.id),
    ]
    # the rows are written today, in yesterday's period
    assert [row.created_at.day for row in yesterday] == [25, 25, 26, 26]
    assert await store.ledger(GUILD, "2026-11-26") == []
    assert fresh.resets_at == datetime(2026, 11, 27, tzinfo=UTC)


async def test_allowance_latest_wins_forever(store: Store, clock: Clock) -> None:
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


async def test_server_allowance_caps_every_member(store: Store) -> None:
    await store.set_allowance(GUILD, SERVER_SCOPE_MEMBER_ID, 2 * PRICE, actor_id=1)
    await reserve(store, member_id=MEMBER)
    await reserve(store, member_id=OTHER)
    with pytest.raises(BudgetExceeded) as refused:
        await reserve(store, member_id=OTHER + 1)
    assert refused.value.scope == "server"
    assert (await store.member_balance(GUILD, OTHER + 1)).available == POLICY.member_allowance
    server = await store.server_balance(GUILD)
    assert (server.allowance, server.held, server.available) == (2 * PRICE, 2 * PRICE, 0)


async def test_grants(store: Store, clock: Clock) -> None:
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


async def test_server_grant_lifts_the_cap(store: Store) -> None:
    await store.set_allowance(GUILD, SERVER_SCOPE_MEMBER_ID, PRICE - 1, actor_id=1)
    with pytest.raises(BudgetExceeded):
        await reserve(store)
    await store.grant(GUILD, SERVER_SCOPE_MEMBER_ID, 1, actor_id=1, note=None)
    await reserve(store)
    assert (await store.server_balance(GUILD)).available == 0


async def test_invalid_amounts_write_nothing(store: Store) -> None:
    with pytest.raises(TypeError):
        await store.reserve(owner(), "{}", 0.125, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await reserve(store, price=-1)
    with pytest.raises(TypeError):
        await store.grant(GUILD, MEMBER, 1.5, actor_id=1, note=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await store.grant(GUILD, -5, 100, actor_id=1, note=None)
    assert await store.ledger(GUILD) == []


async def test_the_server_budget_is_not_a_member(store: Store) -> None:
    with pytest.raises(ValueError, match="server"):
        await reserve(store, member_id=SERVER_SCOPE_MEMBER_ID)
    assert await store.ledger(GUILD) == []


async def test_usage_and_ledger(store: Store, clock: Clock) -> None:
    for price in (PRICE, 250_000):
        await walk(store, await reserve(store, member_id=MEMBER, price=price), JobState.DELIVERED)
    await job_in(store, JobState.FAILED, member_id=MEMBER)
    big = await reserve(store, member_id=OTHER, price=750_000)
    await walk(store, big, JobState.DELIVERED)
    await job_in(store, JobState.POSTING, member_id=OTHER + 1)  # still held: counted, not spent
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
async def test_a_delivered_job_round_trips_every_field(store: Store, clock: Clock) -> None:
    """The long way (an unanswered submit, adopted; a post retried), each move stamped with the
    store's clock."""
    job = await reserve(store)
    clock.advance(seconds=1)
    await store.advance(job.id, JobState.QUEUED, request_json='{"image": "https://uploaded"}')
    await store.advance(job.id, JobState.SUBMITTING)
    clock.advance(seconds=1)
    await store.advance(job.id, JobState.UNCERTAIN, hold_until=START + timedelta(minutes=5))
    clock.advance(seconds=3)
    await store.advance(job.id, JobState.SUBMITTED, prediction_id="pred-abc")
    await store.set_wavespeed_status(job.id, "processing")
    clock.advance(seconds=30, microseconds=123)
    await store.advance(
        job.id,
        JobState.READY,
        output_url="https://cdn/video.mp4",
        has_nsfw=True,
        inference_ms=27_500,
        wavespeed_status="completed",
    )
    clock.advance(seconds=1)
    await store.advance(job.id, JobState.POSTING, result_channel_id=4004)
    await store.advance(job.id, JobState.POSTING)
    clock.advance(seconds=2)
    await store.advance(job.id, JobState.DELIVERED, result_message_id=888)

    done = START + timedelta(seconds=38, microseconds=123)
    expected = JobRecord(
        id=job.id,
        guild_id=GUILD,
        channel_id=CHANNEL,
        member_id=MEMBER,
        request_json='{"image": "https://uploaded"}',
        price_micro=PRICE,
        period_key="2026-11-25",
        state=JobState.DELIVERED,
        failure_kind=None,
        prediction_id="pred-abc",
        wavespeed_status="completed",
        output_url="https://cdn/video.mp4",
        has_nsfw=True,
        inference_ms=27_500,
        error_code=None,
        error_message=None,
        result_channel_id=4004,
        result_message_id=888,
        post_attempts=2,
        created_at=START,
        submit_started_at=START + timedelta(seconds=1),
        submit_ended_at=START + timedelta(seconds=2),
        hold_until=START + timedelta(minutes=5),
        submitted_at=START + timedelta(seconds=5),
        finished_at=done,
        delivered_at=done,
        queued_at=START + timedelta(seconds=1),
        attempts=1,
        settlement=Settlement.CHARGE,
    )
    stored = await store.get_job(job.id)
    assert stored == expected
    assert stored is not None and stored.owner == owner()
    moments = (stored.created_at, stored.submitted_at, stored.finished_at, stored.delivered_at)
    for moment in moments:
        assert moment is not None and moment.utcoffset() == timedelta(0)


async def test_a_failed_job_is_stamped_when_settled_and_when_told(
    store: Store, clock: Clock
) -> None:
    job = await job_in(store, JobState.SUBMITTED)
    clock.advance(seconds=10)
    failed = await store.advance(
        job.id,
        JobState.FAILED,
        failure_kind=FailureKind.MODERATION,
        error_code=1200,
        error_message="refused",
    )
    clock.advance(seconds=2)
    closed = await store.advance(job.id, JobState.CLOSED)
    assert (failed.finished_at, failed.delivered_at) == (START + timedelta(seconds=10), None)
    assert closed == replace(
        failed, state=JobState.CLOSED, delivered_at=START + timedelta(seconds=12)
    )


async def test_unfinished_and_recent_jobs(store: Store) -> None:
    await plenty(store)
    jobs = {state: await job_in(store, state) for state in JobState}
    unfinished = await store.unfinished_jobs()
    finished = {JobState.DELIVERED, JobState.CLOSED}
    assert [(job.id, job.state) for job in unfinished] == [
        (job.id, state) for state, job in jobs.items() if state not in finished
    ]

    recent = await store.recent_jobs(GUILD, MEMBER, limit=3)
    newest = sorted((job.id for job in jobs.values()), reverse=True)[:3]
    assert [job.id for job in recent] == newest
    assert await store.recent_jobs(GUILD, OTHER) == []


async def test_discord_ids_beyond_32_bits_round_trip(store: Store) -> None:
    """Discord ids (snowflakes) need 64 bits: every column that holds one keeps it whole."""
    big = JobOwner(guild_id=2**62 + 1, channel_id=2**62 + 2, member_id=2**62 + 3)
    await store.grant(big.guild_id, big.member_id, PRICE, actor_id=2**62 + 4, note=None)
    job = await walk(store, await store.reserve(big, "{}", PRICE, 5), JobState.POSTING)
    delivered = await store.advance(
        job.id, JobState.DELIVERED, result_channel_id=2**62 + 5, result_message_id=2**62 + 6
    )
    assert delivered.owner == big
    assert await store.get_job(job.id) == delivered
    assert [row.actor_id for row in await store.ledger(big.guild_id)] == [2**62 + 4, None, None]
    assert (await store.member_balance(big.guild_id, big.member_id)).spent == PRICE
    await store.set_guild_setting(big.guild_id, "log_channel", "1")
    assert await store.get_guild_setting(big.guild_id, "log_channel") == "1"


# --- settings -----------------------------------------------------------------------------------
async def test_guild_settings(store: Store) -> None:
    assert await store.get_guild_setting(GUILD, "log_channel") is None
    await store.set_guild_setting(GUILD, "log_channel", "123")
    await store.set_guild_setting(GUILD, "log_channel", "456")
    await store.set_guild_setting(GUILD + 1, "log_channel", "789")
    assert await store.get_guild_setting(GUILD, "log_channel") == "456"
    await store.set_guild_setting(GUILD, "log_channel", None)
    await store.set_guild_setting(GUILD, "never_set", None)
    assert await store.get_guild_setting(GUILD, "log_channel") is None
    assert await store.get_guild_setting(GUILD + 1, "log_channel") == "789"


async def test_bot_settings_round_trip_apart_from_guild_settings(store: Store) -> None:
    assert await store.get_bot_setting("digest") is None
    await store.set_bot_setting("digest", "abc")
    await store.set_bot_setting("digest", "def")
    assert await store.get_bot_setting("digest") == "def"

    # the same key under guild 0 (the CLI's guild) is another value entirely
    await store.set_guild_setting(0, "digest", "guild")
    assert await store.get_bot_setting("digest") == "def"
    await store.set_bot_setting("digest", None)
    await store.set_bot_setting("never_set", None)
    assert await store.get_bot_setting("digest") is None
    assert await store.get_guild_setting(0, "digest") == "guild"


# --- the database's own safety nets ------------------------------------------------------------
def ledger_insert(kind: str, amount: object, job_id: int | None) -> str:
    """A ledger row written by hand, in SQL both databases read alike ('now' is a timestamp to
    PostgreSQL, and text to SQLite)."""
    job = "NULL" if job_id is None else job_id
    return (
        "INSERT INTO ledger (guild_id, member_id, kind, amount_micro, period_key, job_id, "
        f"created_at) VALUES (1, 1, '{kind}', {amount}, 'p', {job}, 'now')"
    )


async def test_database_refuses_bad_ledger_rows(store: Store, database_url: str) -> None:
    job = await job_in(store, JobState.DELIVERED)
    statements = [
        ledger_insert("refund", PRICE, job.id),  # a second settlement
        ledger_insert("reserve", PRICE, job.id),  # a second reservation
        ledger_insert("reserve", -1, None),  # negative
        ledger_insert("bonus", 1, None),  # unknown kind
        ledger_insert("grant", 1, job.id),  # a grant tied to a job
        ledger_insert("reserve", 1, 999_999),  # no such job
        "UPDATE ledger SET amount_micro = 0",
        "DELETE FROM ledger",
        "DELETE FROM jobs",  # the ledger still points at them
        "UPDATE balances SET held = -1",
    ]
    if not is_postgres_url(database_url):
        # a STRICT table refuses a float; PostgreSQL's BIGINT has a type of its own
        statements.append(ledger_insert("grant", 0.5, None))
    for statement in statements:
        with pytest.raises(INTEGRITY_ERRORS):
            await execute_raw(database_url, statement)
    assert [row.kind for row in await store.ledger(GUILD)] == ["reserve", "charge"]
    assert await store.audit() == []


async def test_database_refuses_a_state_it_does_not_know(store: Store, database_url: str) -> None:
    job = await reserve(store)
    for statement in [
        "UPDATE jobs SET state = 'completed'",  # a version-2 status
        "UPDATE jobs SET post_attempts = -1",
    ]:
        with pytest.raises(INTEGRITY_ERRORS, match=CHECK_FAILED):
            await execute_raw(database_url, statement)
    assert await store.get_job(job.id) == job


async def test_audit_names_a_total_that_drifted_from_the_ledger(
    store: Store, database_url: str
) -> None:
    await reserve(store)
    assert await store.audit() == []
    await execute_raw(
        database_url, f"UPDATE balances SET held = held + 1 WHERE member_id = {MEMBER}"
    )
    [line] = await store.audit()
    assert f"member {MEMBER}" in line and "ledger says" in line


# --- SQLite: schema, migrations -----------------------------------------------------------------
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
    assert {"jobs", "ledger", "guild_settings", "bot_settings", "job_records"} <= names
    assert {"ledger_no_update", "ledger_no_delete", "jobs_by_prediction"} <= names
    assert {"role_allowances", "role_allowances_no_update", "role_allowances_no_delete"} <= names


@dataclass(frozen=True)
class OldJob:
    """A jobs row as wanbot wrote it at schema version 2, and what version 3 must make of it."""

    status: str
    settled: str | None  # its charge or refund row, if any
    state: JobState
    failure_kind: FailureKind | None = None
    error_code: int | None = None
    error_message: str | None = None
    result_message_id: int | None = None
    prediction_id: str | None = None


# The fixed texts the version-2 runner stored (bot/outcomes.py then): the migration reads the
# failure kind out of them once.
UNCONFIRMED_TEXT = (
    "WaveSpeed did not confirm the submission, so it was not sent again (that could bill twice). "
    "The price stays charged in case WaveSpeed ran it; a server admin can grant it back."
)
OLD_JOBS = (
    OldJob("reserved", None, JobState.RESERVED),
    OldJob("submitting", None, JobState.SUBMITTING),
    OldJob("submitted", None, JobState.SUBMITTED, prediction_id="pred-3"),
    # charged when WaveSpeed finished, not yet posted: the video is still to be delivered
    OldJob("completed", "charge", JobState.READY, prediction_id="pred-4"),
    OldJob(
        "delivered", "charge", JobState.DELIVERED, result_message_id=888, prediction_id="pred-5"
    ),
    # the command-line tool delivers a video without a message id
    OldJob("delivered", "charge", JobState.DELIVERED, prediction_id="pred-6"),
    OldJob(
        "failed",
        "refund",
        JobState.FAILED,
        FailureKind.INTERRUPTED,
        error_message="The bot restarted before your request was sent to WaveSpeed.",
    ),
    OldJob(
        "failed",
        "refund",
        JobState.FAILED,
        FailureKind.MODERATION,
        error_code=1200,
        error_message="WaveSpeed's content filter refused this image or prompt.",
    ),
    OldJob(
        "failed",
        "refund",
        JobState.FAILED,
        FailureKind.BAD_INPUT,
        error_code=1401,
        error_message="WaveSpeed could not use the inputs.",
    ),
    OldJob(
        "failed",
        "refund",
        JobState.FAILED,
        FailureKind.BAD_INPUT,
        error_message="WaveSpeed rejected the request: image too small",
    ),
    OldJob(
        "failed",
        "refund",
        JobState.FAILED,
        FailureKind.OUT_OF_CREDIT,
        error_message="The server's WaveSpeed account is out of credit; the admins have been told.",
    ),
    OldJob(
        "failed",
        "refund",
        JobState.FAILED,
        FailureKind.BAD_API_KEY,
        error_message="The bot's WaveSpeed API key was refused; the admins have been told.",
    ),
    OldJob(
        "failed",
        "refund",
        JobState.FAILED,
        FailureKind.WAVESPEED_DOWN,
        error_message="WaveSpeed is not answering right now. Please try again in a few minutes.",
    ),
    OldJob(
        "failed",
        "refund",
        JobState.FAILED,
        FailureKind.GENERATION_FAILED,
        error_code=5000,
        error_message="The generation failed at WaveSpeed: Internal error.",
    ),
    # the member was told: closed, whether refunded or (an unconfirmed submit) kept charged
    OldJob(
        "delivered",
        "refund",
        JobState.CLOSED,
        FailureKind.TIMED_OUT,
        error_message="WaveSpeed took too long to finish the video.",
    ),
    OldJob(
        "delivered",
        "charge",
        JobState.CLOSED,
        FailureKind.HOLD_EXPIRED,
        error_message=UNCONFIRMED_TEXT,
    ),
)
OLD_DIGEST = "5f1c0d"


def write_version_2_database(path: str) -> None:
    """A database as the version-2 wanbot left it: migrations 1 and 2 only, with a row for every
    status it wrote, their ledger rows, an allowance, and the command digest kept under guild 0."""
    with raw(path) as db:
        db.execute("PRAGMA foreign_keys = ON")
        for migration in load_migrations()[:2]:
            for statement in migration.statements():
                db.execute(statement)
        db.execute("PRAGMA user_version = 2")
        created = START.isoformat()
        for job_id, old in enumerate(OLD_JOBS, start=1):
            db.execute(
                "INSERT INTO jobs (id, guild_id, channel_id, member_id, request_json, price_micro,"
                " period_key, status, prediction_id, error_code, error_message, result_message_id,"
                " created_at) VALUES (?, ?, ?, ?, '{}', ?, '2026-11-25', ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    GUILD,
                    CHANNEL,
                    MEMBER,
                    PRICE,
                    old.status,
                    old.prediction_id,
                    old.error_code,
                    old.error_message,
                    old.result_message_id,
                    created,
                ),
            )
            for kind in ("reserve", old.settled):
                if kind is not None:
                    db.execute(
                        "INSERT INTO ledger (guild_id, member_id, kind, amount_micro, period_key,"
                        " job_id, created_at) VALUES (?, ?, ?, ?, '2026-11-25', ?, ?)",
                        (GUILD, MEMBER, kind, PRICE, job_id, created),
                    )
        db.execute(
            "INSERT INTO ledger (guild_id, member_id, kind, amount_micro, period_key, actor_id,"
            " created_at) VALUES (?, ?, 'limit', 2000000, '2026-11-25', 42, ?)",
            (GUILD, MEMBER, created),
        )
        db.execute(
            "INSERT INTO guild_settings (guild_id, key, value) VALUES"
            " (0, 'synced_command_digest', ?), (?, 'log_channel_id', '4004')",
            (OLD_DIGEST, GUILD),
        )


def ledger_rows(path: str) -> list[tuple[object, ...]]:
    with raw(path) as db:
        return db.execute("SELECT * FROM ledger ORDER BY id").fetchall()


async def test_version_2_database_is_upgraded_in_place(db_path: str, clock: Clock) -> None:
    write_version_2_database(db_path)
    ledger_before = ledger_rows(db_path)

    store = await SqliteStorage.open(db_path, POLICY, clock=clock)
    try:
        for job_id, old in enumerate(OLD_JOBS, start=1):
            job = await store.get_job(job_id)
            assert job is not None
            settlement = None if old.settled is None else Settlement(old.settled)
            assert (job.state, job.failure_kind, job.settlement) == (
                old.state,
                old.failure_kind,
                settlement,
            ), old
            assert (job.prediction_id, job.error_message, job.result_message_id) == (
                old.prediction_id,
                old.error_message,
                old.result_message_id,
            )
            started = None if old.status == "reserved" else START
            assert (job.submit_started_at, job.post_attempts) == (started, 0)
        assert ledger_rows(db_path) == ledger_before
        assert await store.get_bot_setting("synced_command_digest") == OLD_DIGEST
        assert await store.get_guild_setting(0, "synced_command_digest") is None
        assert await store.get_guild_setting(GUILD, "log_channel_id") == "4004"
        assert [job.id for job in await store.unfinished_jobs()] == [
            job_id for job_id, old in enumerate(OLD_JOBS, start=1) if old.state not in FINAL_STATES
        ]
    finally:
        await store.close()
    with raw(db_path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (len(load_migrations()),)
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        assert not {name for name in names if name.startswith("jobs_v")}  # no rebuild leftovers


async def test_upgraded_jobs_carry_on_without_settling_twice(db_path: str, clock: Clock) -> None:
    write_version_2_database(db_path)
    ready = 1 + [old.state for old in OLD_JOBS].index(JobState.READY)
    failed = 1 + [old.state for old in OLD_JOBS].index(JobState.FAILED)
    async with await SqliteStorage.open(db_path, POLICY, clock=clock) as store:
        # charged by version 2 before delivery: delivering now keeps that one charge
        await store.advance(ready, JobState.POSTING)
        delivered = await store.advance(ready, JobState.DELIVERED, result_message_id=1)
        assert delivered.settlement is Settlement.CHARGE
        assert await job_kinds(store, ready) == ["reserve", "charge"]
        closed = await store.advance(failed, JobState.CLOSED)
        assert (closed.failure_kind, await job_kinds(store, failed)) == (
            FailureKind.INTERRUPTED,
            ["reserve", "refund"],
        )
        fresh = await reserve(store)  # ids continue after the old rows
        assert fresh.id == len(OLD_JOBS) + 1


async def test_upgraded_ledger_keeps_its_safety_nets(db_path: str, clock: Clock) -> None:
    write_version_2_database(db_path)
    await (await SqliteStorage.open(db_path, POLICY, clock=clock)).close()
    charged = 1 + [old.status for old in OLD_JOBS].index("completed")
    insert = (
        "INSERT INTO ledger (guild_id, member_id, kind, amount_micro, period_key, job_id, "
        "created_at) VALUES (1, 1, ?, 1, 'p', ?, 'now')"
    )
    with raw(db_path) as db:
        db.execute("PRAGMA foreign_keys = ON")
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert [row[2] for row in db.execute("PRAGMA foreign_key_list(ledger)")] == ["jobs"]
        for statement, params in [
            (insert, ("reserve", 999)),  # no such job
            (insert, ("reserve", 1)),  # a second reservation
            (insert, ("refund", charged)),  # a second settlement
            ("UPDATE ledger SET amount_micro = 0", ()),
            ("DELETE FROM ledger", ()),
            ("DELETE FROM jobs WHERE id = 1", ()),  # the ledger still points at it
        ]:
            with pytest.raises(sqlite3.IntegrityError):
                db.execute(statement, params)


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


# --- database URLs and open_storage -------------------------------------------------------------
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


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///data/wanbot.db",
        "data/wanbot.db",
        "postgresql://db/wanbot",
        "postgres://wanbot:pw@db.example:6543/wanbot?sslmode=require&search_path=bot",
        "postgresql:///wanbot",
    ],
)
def test_check_database_url_accepts_sqlite_and_postgresql(url: str) -> None:
    check_database_url(url)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://wanbot:{SECRET}@db:port/wanbot",
        f"postgres://wanbot:{SECRET}@db/wanbot?{SECRET}",
        f"mysql://wanbot:{SECRET}@db/wanbot",
        "sqlite:///",
    ],
)
def test_check_database_url_refuses_without_repeating_the_url(url: str) -> None:
    with pytest.raises(ValueError) as refused:
        check_database_url(url)
    assert SECRET not in str(refused.value)


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


# --- PostgreSQL: migrations and connection errors -----------------------------------------------
PG_MIGRATIONS = load_sql_migrations(MIGRATIONS_FOLDER)


async def pg_schema_version(url: str) -> int:
    [(version,)] = await fetch_postgres(url, "SELECT version FROM schema_version")
    return version


async def pg_names(url: str, catalog_query: str) -> set[str]:
    return {row[0] for row in await fetch_postgres(url, catalog_query)}


@pytest.mark.postgres
async def test_postgres_migrations_apply_once(fresh_postgres_url: str, clock: Clock) -> None:
    url = fresh_postgres_url
    assert [migration.version for migration in PG_MIGRATIONS] == list(
        range(1, len(PG_MIGRATIONS) + 1)
    )
    first = await open_storage(url, POLICY, clock=clock)
    await reserve(first)
    await first.close()
    second = await open_storage(url, POLICY, clock=clock)  # re-open: nothing re-applied
    assert len(await second.ledger(GUILD)) == 1
    await second.close()

    assert await pg_schema_version(url) == len(PG_MIGRATIONS)
    relations = await pg_names(
        url,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    assert relations == {
        "jobs",
        "ledger",
        "submits",
        "job_timings",
        "balances",
        "role_allowances",
        "guild_settings",
        "bot_settings",
        "schema_version",
        "job_records",
        "balances_from_ledger",
    }
    indexes = await pg_names(
        url, "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    )
    assert {"jobs_by_prediction", "ledger_one_reserve", "ledger_one_settlement"} <= indexes
    triggers = await pg_names(
        url,
        "SELECT tgname FROM pg_trigger JOIN pg_class ON pg_class.oid = tgrelid "
        "WHERE relnamespace = current_schema()::regnamespace AND NOT tgisinternal",
    )
    assert triggers == {
        "ledger_no_update",
        "ledger_no_delete",
        "role_allowances_no_update",
        "role_allowances_no_delete",
    }


@pytest.mark.postgres
async def test_postgres_fresh_database_opened_by_many_at_once(
    fresh_postgres_url: str, clock: Clock
) -> None:
    """Four pools migrate one empty schema at once: the advisory lock lets each migration run
    exactly once (a second run would fail on its CREATE TABLE)."""
    stores = await asyncio.gather(
        *(open_storage(fresh_postgres_url, POLICY, clock=clock) for _ in range(4))
    )
    for store in stores:
        assert await store.unfinished_jobs() == []
        await store.close()
    assert await pg_schema_version(fresh_postgres_url) == len(PG_MIGRATIONS)


@pytest.mark.postgres
async def test_postgres_newer_schema_is_refused(fresh_postgres_url: str) -> None:
    await (await open_storage(fresh_postgres_url, POLICY)).close()
    await execute_raw(fresh_postgres_url, "UPDATE schema_version SET version = 99")
    with pytest.raises(RuntimeError, match="newer"):
        await open_storage(fresh_postgres_url, POLICY)


def shown(error: BaseException) -> str:
    """Everything a log line could show of an error: its message, repr and whole traceback."""
    return f"{error} {error!r} {''.join(traceback.format_exception(error))}"


async def test_postgres_unreachable_server_error_hides_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"postgresql://wanbot:{SECRET}@127.0.0.1:1/wanbot"  # nothing listens on port 1
    with caplog.at_level(logging.DEBUG), pytest.raises(ConnectionError) as refused:
        await open_storage(url, POLICY)
    assert "127.0.0.1:1/wanbot" in str(refused.value)
    assert SECRET not in shown(refused.value)
    assert SECRET not in caplog.text


@pytest.mark.postgres
async def test_postgres_server_errors_and_repr_hide_the_password(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The test server trusts any password; a missing database is refused by the server."""
    parts = urlsplit(postgres_url)
    netloc = f"{parts.username}:{SECRET}@{parts.hostname}:{parts.port}"
    with_password = parts._replace(netloc=netloc)
    async with await open_storage(urlunsplit(with_password), POLICY) as store:
        assert SECRET not in f"{store} {store!r}"
    absent = urlunsplit(with_password._replace(path="/wanbot_no_such_database"))
    with caplog.at_level(logging.DEBUG), pytest.raises(ConnectionError) as refused:
        await open_storage(absent, POLICY)
    assert "wanbot_no_such_database" in str(refused.value)
    assert SECRET not in shown(refused.value)
    assert SECRET not in caplog.text


@pytest.mark.parametrize("password", [SECRET, "p%40ss%3Aword"], ids=["plain", "percent-encoded"])
def test_postgres_target_blots_out_the_password(password: str) -> None:
    target = PostgresTarget.parse(f"postgres://me:{password}@db.example:6543/wanbot")
    assert str(target) == "db.example:6543/wanbot"
    assert password not in repr(target)
    decoded = unquote(password)
    assert target.redact(f"{password} or {decoded}") == "*** or ***"
