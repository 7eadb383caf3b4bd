"""Job leases: one process at a time follows each unfinished job.

First the stores, on both backends: claiming a free, expired, own or dead holder's lease, the
refusal while another live process holds one, renewals, releases, and claims racing for one
job. Then JobRunner "processes" (a store, client and runner each) on one database and the fake
WaveSpeed API: several resuming at once follow each job once; a process that dies leaves its job
to another's watch once its lease has run out; a process that stalls past its lease stops
following the job another took over. Each job is delivered once and charged once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from bot.domain.job import JobOwner, JobRecord
from bot.domain.lifecycle import FailureKind, JobState, LeaseLost
from bot.leases import is_dead, new_owner_id
from bot.runner import JobRunner
from bot.testing.fake_wavespeed import FakeWaveSpeed, LoggedRequest
from bot.wavespeed import PollPolicy, WaveSpeedClient
from storage import PostgresStorage, SqliteStorage, open_storage
from tests import test_jobs as jobs
from tests.conftest import FAST_POLL, FAST_RETRY, FAST_TIMEOUTS, ROOMY_LIMITS, TEST_API_KEY
from tests.storage_backends import POLICY, START, Clock

Store = SqliteStorage | PostgresStorage

LEASE_S = 30.0
SHORT_LEASE_S = 0.5  # the runner tests' processes: renewed every ~0.17 s, taken over after 0.5 s
A = "host-a/boot/1:101:aaaa"  # owner ids of processes elsewhere: never known to be dead
B = "host-b/boot/1:202:bbbb"
# One follower polls a task every 0.1 s; two following it at once would poll within moments.
STEADY_POLL = PollPolicy(first_delay_s=0.1, factor=1.0, max_interval_s=0.1, timeout_s=10.0)
ONE_FOLLOWER_GAP_S = 0.05


async def reserved(store: Store, *, lease_owner: str | None = None) -> JobRecord:
    """A job as a process leaves it after reserving it (leased to `lease_owner`, or free)."""
    return await store.reserve(
        JobOwner(1001, 2002, 3003), "{}", 1_000, 100, lease_owner=lease_owner, lease_s=LEASE_S
    )


# --- the stores ----------------------------------------------------------------------------------


async def test_a_free_job_is_claimed_and_then_refused_to_others(store: Store) -> None:
    job = await reserved(store)
    assert (job.lease_owner, job.lease_until) == (None, None)

    claimed = await store.claim(job.id, A, LEASE_S)

    assert claimed is not None and claimed.id == job.id
    assert (claimed.lease_owner, claimed.lease_until) == (A, START + timedelta(seconds=LEASE_S))
    assert await store.claim(job.id, B, LEASE_S) is None
    assert await store.get_job(job.id) == claimed


async def test_a_reservation_can_be_leased_at_once(store: Store) -> None:
    job = await reserved(store, lease_owner=A)

    assert (job.lease_owner, job.lease_until) == (A, START + timedelta(seconds=LEASE_S))
    assert await store.claim(job.id, B, LEASE_S) is None
    assert (await store.unfinished_jobs())[0].lease_owner == A


async def test_the_holder_claims_again_to_extend_its_lease(store: Store, clock: Clock) -> None:
    job = await reserved(store, lease_owner=A)
    clock.advance(seconds=10)

    claimed = await store.claim(job.id, A, LEASE_S)

    assert claimed is not None and claimed.lease_until == clock.now + timedelta(seconds=LEASE_S)


async def test_a_lease_that_ran_out_is_taken_over(store: Store, clock: Clock) -> None:
    """Still held at the very moment it ends; a moment later another process takes it, and the
    old holder's renewal no longer covers it."""
    job = await reserved(store, lease_owner=A)
    clock.advance(seconds=LEASE_S)
    assert await store.claim(job.id, B, LEASE_S) is None

    clock.advance(microseconds=1)
    taken = await store.claim(job.id, B, LEASE_S)

    assert taken is not None and taken.lease_owner == B
    assert await store.renew([job.id], A, LEASE_S) == set()
    assert await store.claim(job.id, A, LEASE_S) is None


async def test_a_holder_known_dead_is_taken_over_before_its_lease_ends(store: Store) -> None:
    job = await reserved(store, lease_owner=A)

    assert await store.claim(job.id, B, LEASE_S, dead_owner="host-a/boot/1:999:dead") is None
    taken = await store.claim(job.id, B, LEASE_S, dead_owner=A)

    assert taken is not None and taken.lease_owner == B


async def test_renew_extends_only_the_leases_still_held(store: Store, clock: Clock) -> None:
    mine = [await reserved(store, lease_owner=A) for _ in range(2)]
    theirs = await reserved(store, lease_owner=B)
    free = await reserved(store)
    clock.advance(seconds=20)

    renewed = await store.renew([job.id for job in [*mine, theirs, free]], A, LEASE_S)

    assert renewed == {job.id for job in mine}
    until = clock.now + timedelta(seconds=LEASE_S)
    for job in mine:
        assert (await store.get_job(job.id)).lease_until == until  # type: ignore[union-attr]
    assert (await store.get_job(theirs.id)).lease_until == START + timedelta(seconds=LEASE_S)  # type: ignore[union-attr]
    assert (await store.get_job(free.id)).lease_owner is None  # type: ignore[union-attr]
    assert await store.renew([], A, LEASE_S) == set()


async def test_release_frees_only_the_holders_lease(store: Store) -> None:
    job = await reserved(store, lease_owner=A)

    await store.release(job.id, B)
    assert (await store.get_job(job.id)).lease_owner == A  # type: ignore[union-attr]

    await store.release(job.id, A)
    released = await store.get_job(job.id)
    assert released is not None and (released.lease_owner, released.lease_until) == (None, None)
    assert await store.claim(job.id, B, LEASE_S) is not None


async def test_only_the_holder_moves_a_job_it_names_itself_for(store: Store, clock: Clock) -> None:
    """The lease fences the moves of a process that names itself: once B took the job over,
    A's moves are refused and change nothing, money included; B's go on. A move that names no
    holder (a member's Cancel, from whichever process) is not fenced."""
    job = await reserved(store, lease_owner=A)
    await store.advance(job.id, JobState.QUEUED, holder=A)
    clock.advance(seconds=LEASE_S + 1)
    assert await store.claim(job.id, B, LEASE_S) is not None
    ledger = await store.ledger(job.guild_id)

    for to, changes in [
        (JobState.SUBMITTING, {}),
        (JobState.FAILED, {"failure_kind": FailureKind.INTERRUPTED.value}),
    ]:
        with pytest.raises(LeaseLost):
            await store.advance(job.id, to, holder=A, **changes)
    left = await store.get_job(job.id)
    assert left is not None and (left.state, left.lease_owner) == (JobState.QUEUED, B)
    assert await store.ledger(job.guild_id) == ledger

    assert (await store.advance(job.id, JobState.SUBMITTING, holder=B)).state is (
        JobState.SUBMITTING
    )
    await store.release(job.id, B)
    with pytest.raises(LeaseLost):  # a released lease is no one's: naming a holder is refused
        await store.advance(job.id, JobState.SUBMITTED, holder=B, prediction_id="p-1")
    kind = FailureKind.NOT_SUBMITTED.value
    assert (await store.advance(job.id, JobState.FAILED, failure_kind=kind)).state is (
        JobState.FAILED
    )


@pytest.mark.parametrize("ending", [JobState.DELIVERED, JobState.CLOSED])
async def test_a_finished_job_is_never_claimed(store: Store, ending: JobState) -> None:
    job = await reserved(store)
    if ending is JobState.DELIVERED:
        for state in (
            JobState.QUEUED,
            JobState.SUBMITTING,
            JobState.SUBMITTED,
            JobState.READY,
            JobState.POSTING,
        ):
            await store.advance(job.id, state)
    else:
        kind = FailureKind.INTERRUPTED.value
        await store.advance(job.id, JobState.FAILED, failure_kind=kind)
    await store.advance(job.id, ending)

    assert await store.claim(job.id, A, LEASE_S) is None


async def test_a_failed_job_is_claimed_with_its_refund(store: Store) -> None:
    """A refunded job whose member was not told yet is unfinished: claimable, settlement shown."""
    job = await reserved(store)
    await store.advance(job.id, JobState.FAILED, failure_kind=FailureKind.INTERRUPTED.value)

    claimed = await store.claim(job.id, A, LEASE_S)

    assert claimed is not None and claimed.settlement == "refund"


@pytest.mark.parametrize(("owner", "lease_s"), [("", 30.0), (A, 0.0), (A, -1.0), (A, 1e400)])
async def test_a_lease_needs_an_owner_and_a_finite_length(
    store: Store, owner: str, lease_s: float
) -> None:
    job = await reserved(store)
    with pytest.raises(ValueError, match="lease"):
        await store.claim(job.id, owner, lease_s)
    with pytest.raises(ValueError, match="lease"):
        await store.reserve(JobOwner(1, 2, 3), "{}", 0, 10, lease_owner=owner, lease_s=lease_s)
    assert (await store.get_job(job.id)).lease_owner is None  # type: ignore[union-attr]


async def test_racing_claims_give_each_job_to_one_owner(database_url: str, clock: Clock) -> None:
    """Four stores (connections, pools) claim each of 10 free jobs at once, for four owners:
    each job goes to exactly one, and stays with it."""
    stores = [await open_storage(database_url, POLICY, clock=clock) for _ in range(4)]
    try:
        left = [await reserved(stores[0]) for _ in range(10)]
        owners = [f"host/boot/1:{n}:racer" for n in range(4)]
        results = await asyncio.gather(
            *(
                store.claim(job.id, owner, LEASE_S)
                for job in left
                for store, owner in zip(stores, owners, strict=True)
            )
        )
        winners = [result for result in results if result is not None]
        assert sorted(job.id for job in winners) == [job.id for job in left]
        for winner in winners:
            assert (await stores[0].get_job(winner.id)) == winner
    finally:
        for store in stores:
            await store.close()


# --- owner ids -----------------------------------------------------------------------------------


def test_owner_ids_are_unique_and_never_dead_while_this_process_runs() -> None:
    first, second = new_owner_id(), new_owner_id()
    assert first != second
    assert f":{os.getpid()}:" in first
    assert not is_dead(first)
    assert not is_dead(A)  # another machine: only its lease running out tells
    assert not is_dead("not an owner id")


@pytest.mark.skipif(not os.path.exists("/proc/self/ns/pid"), reason="needs Linux's /proc")
async def test_an_ended_process_on_this_machine_is_known_dead() -> None:
    child = await asyncio.create_subprocess_exec("true")
    await child.wait()
    place = new_owner_id().partition(":")[0]
    assert is_dead(f"{place}:{child.pid}:0000")


# --- runners in several processes ----------------------------------------------------------------


class Processes:
    """JobRunner "processes" (jobs.Process: a store, client and runner each) on one database and
    the fake, with short leases; every one still running is stopped at the end."""

    def __init__(self, fake: FakeWaveSpeed, database_url: str) -> None:
        self.fake = fake
        self.database_url = database_url
        self._running: list[jobs.Process] = []

    async def boot(self, poll: PollPolicy = FAST_POLL) -> jobs.Process:
        storage = await open_storage(self.database_url, jobs.POLICY)
        client = WaveSpeedClient(
            TEST_API_KEY, self.fake.base_url, retry=FAST_RETRY, timeouts=FAST_TIMEOUTS
        )
        runner = JobRunner(
            storage,
            client,
            poll=poll,
            max_jobs_per_member=jobs.MAX_JOBS,
            reconciliation=jobs.RECONCILIATION,
            download_pause_s=0.01,
            limits=ROOMY_LIMITS,
            queue_tick_s=0.05,
            lease_s=SHORT_LEASE_S,
        )
        process = jobs.Process(storage, client, runner)  # type: ignore[arg-type]
        self._running.append(process)
        return process

    async def stop(self, process: jobs.Process) -> None:
        self._running.remove(process)
        await process.stop()

    async def kill(self, process: jobs.Process, monkeypatch: pytest.MonkeyPatch) -> None:
        """Stop the process like a kill -9 would: it follows nothing more and renews nothing,
        but gives no lease up either."""

        async def keep(job_id: int, owner: str) -> None:
            """A dead process releases nothing."""

        monkeypatch.setattr(process.storage, "release", keep)
        await self.stop(process)

    async def close(self) -> None:
        for process in reversed(self._running):
            await process.stop()


@pytest.fixture
async def processes(fake_wavespeed: FakeWaveSpeed, database_url: str) -> AsyncIterator[Processes]:
    world = Processes(fake_wavespeed, database_url)
    yield world
    await world.close()


def polls_by_task(fake: FakeWaveSpeed, since: float) -> dict[str, list[float]]:
    """When each task's result was asked for, from loop time `since` on, by prediction path."""
    polls: defaultdict[str, list[float]] = defaultdict(list)
    call: LoggedRequest
    for call in fake.calls("result"):
        if call.at >= since:
            polls[call.path].append(call.at)
    return polls


def assert_one_follower(fake: FakeWaveSpeed, since: float) -> None:
    """Every task was polled by one follower at a time: never twice within a moment."""
    for path, times in polls_by_task(fake, since).items():
        gaps = [later - earlier for earlier, later in pairwise(times)]
        assert min(gaps, default=1.0) >= ONE_FOLLOWER_GAP_S, (path, gaps)


async def submitted_jobs(processes: Processes, count: int) -> list[JobRecord]:
    """`count` jobs of different members that a process stopped in the middle of: their tasks
    accepted by WaveSpeed and still generating, their leases given up."""
    processes.fake.queue_s, processes.fake.processing_s = 0.2, 0.6
    first = await processes.boot()
    left = [await first.start(jobs.Recorder(), member_id=jobs.MEMBER + n) for n in range(count)]

    async def all_submitted() -> bool:
        states = {(await first.job(job.id)).state for job in left}
        return states == {JobState.SUBMITTED}

    await jobs.eventually(all_submitted)
    await processes.stop(first)
    return left


async def test_processes_resuming_at_once_follow_each_job_once(processes: Processes) -> None:
    """Three processes start together on a database with four unfinished jobs: each job is
    claimed, polled, delivered and charged by exactly one of them."""
    left = await submitted_jobs(processes, 4)
    started = [await processes.boot(poll=STEADY_POLL) for _ in range(3)]
    recorders = [jobs.Recorder() for _ in started]
    since = asyncio.get_running_loop().time()

    counts = await asyncio.gather(
        *(
            process.runner.resume(lambda job, r=recorder: r, include=jobs.every_job)
            for process, recorder in zip(started, recorders, strict=True)
        )
    )
    for process in started:
        await process.runner.wait_all()

    assert sum(counts) == len(left)
    assert [len(recorder.videos) for recorder in recorders] == counts
    assert all(recorder.failures == [] for recorder in recorders)
    assert_one_follower(processes.fake, since)
    assert len(processes.fake.submissions) == len(left)
    for job in left:
        done = await started[0].job(job.id)
        assert done.state is JobState.DELIVERED and done.lease_owner is None
        await started[0].assert_money(done, charged=True)


async def test_a_dead_process_job_is_taken_over_once_its_lease_runs_out(
    processes: Processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watching process leaves a live process's job alone; once that process dies, it takes
    the job over when the lease runs out (not before) and delivers it: one task, one charge."""
    processes.fake.next_task(queue_s=0.1, processing_s=2.0)
    doomed, heir = await processes.boot(), await processes.boot(poll=STEADY_POLL)
    before, after = jobs.Recorder(), jobs.Recorder()
    heir.runner.watch(lambda job: after, include=jobs.every_job)
    job = await doomed.start(before)

    async def submitted() -> bool:
        return (await doomed.job(job.id)).state is JobState.SUBMITTED

    await jobs.eventually(submitted)
    await asyncio.sleep(3 * SHORT_LEASE_S)  # the watch looked several times, and let it be
    held = await heir.job(job.id)
    assert held.lease_owner == doomed.runner.owner_id and after.stages == []

    await processes.kill(doomed, monkeypatch)
    last = await heir.job(job.id)
    assert last.lease_owner == doomed.runner.owner_id and last.lease_until is not None
    died = asyncio.get_running_loop().time()
    lease_ends = died + (last.lease_until - datetime.now(UTC)).total_seconds()
    assert await heir.runner.resume(lambda job: after, include=jobs.every_job) == 0

    async def delivered() -> bool:
        return (await heir.job(job.id)).state is JobState.DELIVERED

    await jobs.eventually(delivered, timeout_s=10)
    await heir.runner.wait_all()
    assert before.told == 0 and jobs.is_mp4(after.only_video().data)
    (polls,) = polls_by_task(processes.fake, died).values()
    assert polls[0] >= lease_ends
    assert_one_follower(processes.fake, died)
    assert len(processes.fake.submissions) == 1
    done = await heir.job(job.id)
    assert done.lease_owner is None
    await heir.assert_money(done, charged=True)


async def stall_mid_job(
    processes: Processes, monkeypatch: pytest.MonkeyPatch, before: jobs.Recorder
) -> tuple[jobs.Process, jobs.Process, JobRecord, Callable[..., Awaitable[set[int]]]]:
    """A process follows a job whose task is generating (for 2 s) when its lease renewals stop
    reaching the database, though it believes they do. Returns it, a second process (to take
    the job over), the job, and the stalled store's real `renew` (to put back)."""
    processes.fake.next_task(queue_s=0.1, processing_s=2.0)
    stalled, heir = await processes.boot(), await processes.boot()
    job = await stalled.start(before)

    async def submitted() -> bool:
        return (await stalled.job(job.id)).state is JobState.SUBMITTED

    await jobs.eventually(submitted)
    renew = stalled.storage.renew

    async def lost(job_ids: object, owner: str, lease_s: float) -> set[int]:
        """A renewal that never reaches the database, though the process believes it did."""
        return {job.id}

    monkeypatch.setattr(stalled.storage, "renew", lost)
    return stalled, heir, job, renew


async def delivered_by(process: jobs.Process, job: JobRecord) -> None:
    async def delivered() -> bool:
        return (await process.job(job.id)).state is JobState.DELIVERED

    await jobs.eventually(delivered, timeout_s=10)


async def test_a_process_whose_lease_was_taken_over_stops_following_the_job(
    processes: Processes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A process stalls past its lease (its renewals don't reach the database); another takes
    the job over. The stalled one's next renewal finds that out and it lets the job go,
    leaving its state as it is: the new holder delivers it, charged once."""
    before, after = jobs.Recorder(), jobs.Recorder()
    stalled, heir, job, renew = await stall_mid_job(processes, monkeypatch, before)
    heir.runner.watch(lambda job: after, include=jobs.every_job)

    async def taken_over() -> bool:
        return (await heir.job(job.id)).lease_owner == heir.runner.owner_id

    await jobs.eventually(taken_over)
    with caplog.at_level(logging.WARNING, logger="bot.runner"):
        monkeypatch.setattr(stalled.storage, "renew", renew)
        await delivered_by(heir, job)
    assert f"job {job.id}: another process took it over" in caplog.text
    assert before.told == 0 and jobs.is_mp4(after.only_video().data)
    assert len(processes.fake.submissions) == 1
    await heir.assert_money(await heir.job(job.id), charged=True)


async def test_a_process_that_never_learns_it_lost_the_lease_cannot_act_on_the_job(
    processes: Processes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Worse than a stall: every renewal of the stalled process seems to succeed, so it goes
    on following the job after another took it over (as a process frozen past its lease would,
    waking between two steps). Its moves are fenced by the lease: the first one it tries is
    refused and it lets the job go; only the new holder posts, once, charged once."""
    before, after = jobs.Recorder(), jobs.Recorder()
    stalled, heir, job, _ = await stall_mid_job(processes, monkeypatch, before)
    with caplog.at_level(logging.WARNING, logger="bot.runner"):
        heir.runner.watch(lambda job: after, include=jobs.every_job)
        await delivered_by(heir, job)
        await stalled.runner.wait(job.id)  # it stopped following on its own
    assert f"job {job.id}: another process took it over" in caplog.text
    assert before.post_attempts == 0 and jobs.is_mp4(after.only_video().data)
    assert len(processes.fake.submissions) == 1
    await heir.assert_money(await heir.job(job.id), charged=True)


async def test_a_job_taken_over_before_it_started_is_left_to_its_new_holder(
    processes: Processes,
) -> None:
    """More than a lease passed between reserving a job and starting it, and another process
    claimed it meanwhile: it is not started here, so it is never followed twice."""
    slow, other = await processes.boot(), await processes.boot()
    job = await slow.runner.reserve(jobs.owner(), jobs.REQUEST)
    await asyncio.sleep(SHORT_LEASE_S * 1.2)
    assert await other.storage.claim(job.id, other.runner.owner_id, LEASE_S) is not None
    recorder = jobs.Recorder()

    slow.runner.run(job, recorder)
    await slow.runner.wait(job.id)

    assert recorder.stages == [] and processes.fake.requests == []
    left = await slow.job(job.id)
    assert (left.state, left.lease_owner) == (JobState.RESERVED, other.runner.owner_id)
