"""The local queue: fair order, the account's limits, 429s, restarts, and temporary failures.

Pure order rules first, then the store's admission on both backends (concurrent admissions
never pass the limits), then the runner against the fake WaveSpeed API on loopback.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.domain.job import JobOwner, Stage
from bot.domain.lifecycle import FailureKind, JobState
from bot.domain.queue import QueueEntry, QueueLimits, QueueSnapshot, fair_order, free_slots
from bot.domain.request import GenerationRequest
from bot.domain.timing import TimingSample
from bot.testing.fake_wavespeed import FakeWaveSpeed
from tests import test_jobs as jobs
from tests.storage_backends import Clock
from tests.test_storage import Store

T0 = datetime(2026, 12, 1, tzinfo=UTC)
BRONZE = QueueLimits(max_concurrent=2, max_per_minute=2)


def entry(job_id: int, guild: int, member: int) -> QueueEntry:
    return QueueEntry(job_id, guild, member, T0 + timedelta(seconds=job_id))


def snapshot(
    *entries: QueueEntry,
    guilds: dict[int, datetime] | None = None,
    members: dict[tuple[int, int], datetime] | None = None,
    at_wavespeed: int = 0,
    recent: int = 0,
) -> QueueSnapshot:
    return QueueSnapshot(entries, guilds or {}, members or {}, at_wavespeed, recent)


# --- the order ----------------------------------------------------------------------------------
def test_one_members_rerolls_take_turns_with_everyone_else() -> None:
    """Member 1 queued five re-rolls before members 2 and 3 asked: they still go second and
    third, not sixth and seventh."""
    queue = [entry(n, 10, 1) for n in range(1, 6)] + [entry(6, 10, 2), entry(7, 10, 3)]
    assert fair_order(snapshot(*queue)) == [1, 6, 7, 2, 3, 4, 5]


def test_servers_take_turns_then_their_members() -> None:
    queue = [
        entry(1, 10, 1),
        entry(2, 10, 1),
        entry(3, 10, 2),
        entry(4, 20, 5),
        entry(5, 20, 5),
        entry(6, 30, 7),
    ]
    # round 1: one job of each server; round 2: server 10's second member, server 20's next…
    assert fair_order(snapshot(*queue)) == [1, 4, 6, 3, 5, 2]


def test_the_server_served_last_goes_last_so_a_busy_one_cannot_starve_a_quiet_one() -> None:
    """Server 10 has had its turn a moment ago; server 20 never: 20 goes first, though 10's
    job is older. Admitting 20's job then puts 20 behind 10 in the next round."""
    queue = [entry(1, 10, 1), entry(2, 10, 1), entry(3, 20, 2)]
    recently = {10: T0}
    assert fair_order(snapshot(*queue, guilds=recently)) == [3, 1, 2]
    both = {10: T0, 20: T0 + timedelta(seconds=1)}
    assert fair_order(snapshot(*queue, guilds=both)) == [1, 3, 2]


def test_within_a_server_the_member_served_last_goes_last() -> None:
    queue = [entry(1, 10, 1), entry(2, 10, 2)]
    members = {(10, 1): T0}
    assert fair_order(snapshot(*queue, members=members)) == [2, 1]
    other_server = {(20, 2): T0}  # a turn in another server does not count here
    assert fair_order(snapshot(*queue, members={**members, **other_server})) == [2, 1]


def test_free_slots_take_the_tighter_limit() -> None:
    assert free_slots(snapshot(), BRONZE) == 2
    assert free_slots(snapshot(at_wavespeed=1), BRONZE) == 1
    assert free_slots(snapshot(recent=2), BRONZE) == 0
    assert free_slots(snapshot(at_wavespeed=5), BRONZE) == 0
    with pytest.raises(ValueError):
        QueueLimits(max_concurrent=0)


# --- the store: admissions --------------------------------------------------------------------
GUILD, CHANNEL = 1001, 2002


async def queued(store: Store, member_id: int = 3003, guild_id: int = GUILD) -> int:
    job = await store.reserve(
        JobOwner(guild_id, CHANNEL, member_id), "{}", 0, 1000, lease_owner="me", lease_s=60
    )
    await store.advance(job.id, JobState.QUEUED)
    return job.id


async def test_admission_keeps_both_limits(store: Store) -> None:
    ids = [await queued(store, member_id=3003 + n) for n in range(4)]
    first = await store.admit(ids[0], "me", BRONZE)
    assert first is not None and first.state is JobState.SUBMITTING and first.attempts == 1
    assert await store.admit(ids[0], "me", BRONZE) is None  # no longer queued
    assert await store.admit(ids[1], "someone else", BRONZE) is None  # not theirs
    assert await store.admit(ids[1], "me", BRONZE) is not None
    assert await store.admit(ids[2], "me", BRONZE) is None  # two at WaveSpeed
    await store.advance(ids[0], JobState.SUBMITTED, prediction_id="p0")
    await store.advance(ids[0], JobState.READY)
    assert await store.admit(ids[2], "me", BRONZE) is None  # two submits this minute
    roomy = QueueLimits(max_concurrent=2, max_per_minute=3)
    assert await store.admit(ids[2], "me", roomy) is not None

    snap = await store.queue_snapshot()
    assert [e.job_id for e in snap.entries] == [ids[3]]
    assert (snap.at_wavespeed, snap.recent_submits) == (2, 3)
    assert set(snap.member_served_at) == {(GUILD, 3003), (GUILD, 3004), (GUILD, 3005)}
    assert set(snap.guild_served_at) == {GUILD}


async def test_the_submit_window_slides(store: Store, clock: Clock) -> None:
    ids = [await queued(store, member_id=3003 + n) for n in range(3)]
    limits = QueueLimits(max_concurrent=10, max_per_minute=2)
    for job_id in ids[:2]:
        assert await store.admit(job_id, "me", limits) is not None
    assert await store.admit(ids[2], "me", limits) is None
    clock.advance(seconds=61)
    assert await store.admit(ids[2], "me", limits) is not None


async def test_concurrent_admissions_never_pass_the_limits(store: Store) -> None:
    """Forty admissions at once, from "two processes" (two owners): exactly the limit goes."""
    ids = [await queued(store, member_id=3003 + n) for n in range(40)]
    limits = QueueLimits(max_concurrent=3, max_per_minute=1000)
    results = await asyncio.gather(*(store.admit(job_id, "me", limits) for job_id in ids))
    assert sum(result is not None for result in results) == 3
    assert (await store.queue_snapshot()).at_wavespeed == 3


async def test_a_requeued_job_keeps_its_place_and_its_old_task_stays_known(store: Store) -> None:
    first, second = await queued(store), await queued(store, member_id=4004)
    place = (await store.get_job(first)).queued_at  # type: ignore[union-attr]
    await store.admit(first, "me", BRONZE)
    await store.advance(first, JobState.SUBMITTED, prediction_id="task-1")
    back = await store.advance(first, JobState.QUEUED, retried_prediction_id="task-1")
    assert back.queued_at == place and back.prediction_id is None
    assert back.retried_prediction_id == "task-1" and back.attempts == 1
    assert [e.job_id for e in (await store.queue_snapshot()).entries] == [first, second]
    assert await store.known_predictions(["task-1", "task-2"]) == {"task-1"}
    again = await store.admit(first, "me", BRONZE)
    assert again is not None and again.attempts == 2


async def test_timings_are_kept_per_shape_newest_last(store: Store) -> None:
    ids = [await queued(store, member_id=3003 + n) for n in range(5)]
    for n, job_id in enumerate(ids):
        shape = "720p/5s/audio/single" if n % 2 == 0 else "1080p/10s/silent/single"
        await store.record_timing(job_id, TimingSample(shape, 0.5, n, 40.0 + n))
    await store.record_timing(ids[0], TimingSample("x", 9, 9, 9))  # once per job
    latest = await store.recent_timings(per_shape=2)
    assert [(s.shape, s.queue_s) for s in latest] == [
        ("1080p/10s/silent/single", 1),
        ("720p/5s/audio/single", 2),
        ("1080p/10s/silent/single", 3),
        ("720p/5s/audio/single", 4),
    ]


# --- the runner -------------------------------------------------------------------------------
@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[jobs.World]:
    async with FakeWaveSpeed(queue_s=0.05, processing_s=0.3) as fake:
        world = jobs.World(fake, tmp_path / "wanbot.db")
        yield world
        await world.close()


def request(prompt: str) -> GenerationRequest:
    return jobs.REQUEST.model_copy(update={"prompt": prompt})


async def test_a_burst_of_30_on_bronze_limits_is_paced_and_nobody_sees_a_failure(
    world: jobs.World,
) -> None:
    """Thirty members press /video at once on a Bronze-like account (2 tasks at once, a few
    submits per window; the window shortened to a second): every video arrives, WaveSpeed
    never has more than 2 tasks running nor refuses a submit."""
    world.fake.max_per_minute, world.fake.rate_window_s = 4, 1.0
    world.fake.processing_s = 0.1
    process = await world.boot(limits=QueueLimits(max_concurrent=2, max_per_minute=4, window_s=1.0))
    recorders = [jobs.Recorder() for _ in range(30)]
    started = [
        await process.start(recorder, member_id=5000 + n) for n, recorder in enumerate(recorders)
    ]
    for job in started:
        await process.runner.wait(job.id)

    assert all(len(r.videos) == 1 and r.failures == [] for r in recorders)
    assert world.fake.peak_unfinished <= 2
    assert len(world.fake.submissions) == 30  # no 429: each job submitted once
    assert Stage.WAITING in itertools.chain.from_iterable(r.stages for r in recorders)


async def test_a_429_puts_the_job_back_in_the_queue_and_the_member_never_sees_it(
    world: jobs.World,
) -> None:
    world.fake.fail_next("submit", 429, retry_after=0.3)
    process = await world.boot()
    job, recorder = await process.run()
    assert recorder.failures == [] and len(recorder.videos) == 1
    first, second = world.fake.calls("submit")
    assert second.at - first.at >= 0.3  # paused as asked
    assert job.attempts == 2 and len(world.fake.tasks) == 1
    await process.assert_money(job, charged=True)


async def test_positions_are_shown_and_move_up(world: jobs.World) -> None:
    world.fake.processing_s = 0.6
    process = await world.boot(limits=QueueLimits(max_concurrent=1, max_per_minute=100))
    recorders = [jobs.Recorder() for _ in range(3)]
    started = [
        await process.start(recorder, member_id=5000 + n) for n, recorder in enumerate(recorders)
    ]
    for job in started:
        await process.runner.wait(job.id)
    shown = [[p.ahead for p in r.reports if p.stage is Stage.WAITING] for r in recorders]
    # the last job was behind the others, moved up as each went, and was next at the end
    assert shown[2] == sorted(shown[2], reverse=True) and shown[2][0] >= 1 and shown[2][-1] == 0
    assert len(set(shown[2])) >= 2 and 0 in shown[1]
    assert all(len(r.videos) == 1 for r in recorders)


async def test_a_cancelled_job_is_refunded_and_never_reaches_wavespeed(world: jobs.World) -> None:
    world.fake.processing_s = 1.0
    process = await world.boot(limits=QueueLimits(max_concurrent=1, max_per_minute=100))
    running = await process.start(jobs.Recorder(), member_id=5000)
    waiting_recorder = jobs.Recorder()
    waiting = await process.start(waiting_recorder, member_id=5001, request=request("second"))

    async def is_queued() -> bool:
        return (await process.job(waiting.id)).state is JobState.QUEUED

    await jobs.eventually(is_queued)
    await process.storage.advance(
        waiting.id, JobState.FAILED, failure_kind=FailureKind.CANCELLED.value
    )  # what the Cancel button does (cogs/cancel.py)
    await process.runner.wait(waiting.id)
    await process.runner.wait(running.id)

    done = await process.job(waiting.id)
    assert done.state is JobState.CLOSED
    assert waiting_recorder.only_failure().kind is FailureKind.CANCELLED
    await process.assert_money(done, charged=False)
    assert [body["prompt"] for body in world.fake.submissions] == [jobs.REQUEST.prompt]


async def test_the_queue_survives_a_restart_in_order(world: jobs.World) -> None:
    world.fake.processing_s = 0.8
    first = await world.boot(limits=QueueLimits(max_concurrent=1, max_per_minute=100))
    prompts = [f"job {n}" for n in range(4)]
    for n, prompt in enumerate(prompts):
        await first.start(jobs.Recorder(), member_id=5000 + n, request=request(prompt))

    async def three_queued() -> bool:
        states = [job.state for job in await first.storage.unfinished_jobs()]
        return states.count(JobState.QUEUED) == 3

    await jobs.eventually(three_queued)
    await world.stop(first)  # like a restart: leases given up, states kept

    second = await world.boot(limits=QueueLimits(max_concurrent=1, max_per_minute=100))
    recorder = jobs.Recorder()
    assert await second.resume_into(recorder) == 4
    assert [body["prompt"] for body in world.fake.submissions] == prompts
    assert len(recorder.videos) == 4 and recorder.failures == []


async def test_a_task_failed_with_5003_is_submitted_once_more(world: jobs.World) -> None:
    world.fake.next_task("failed", error_code=5003)
    process = await world.boot()
    job, recorder = await process.run()
    assert recorder.failures == [] and len(recorder.videos) == 1
    assert Stage.RETRYING in recorder.stages
    assert len(world.fake.tasks) == 2 and job.attempts == 2
    assert job.retried_prediction_id is not None and job.retried_prediction_id != job.prediction_id
    await process.assert_money(job, charged=True)


async def test_a_moderation_failure_is_not_retried(world: jobs.World) -> None:
    world.fake.next_task("failed", error_code=1200)
    process = await world.boot()
    _, recorder = await process.run()
    assert recorder.only_failure().kind is FailureKind.MODERATION
    assert len(world.fake.tasks) == 1
