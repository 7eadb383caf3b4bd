"""Learned timing: shapes, quantiles, the poll schedule, ETAs; and polls that do not herd.

The schedule is pure, so it is walked here on a simulated clock; the runner's use of it (and of
the spread on resume) runs against the fake WaveSpeed API on loopback, and a resume at start-up
against the real bot with a slow fake gateway.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.domain.job import Stage
from bot.domain.lifecycle import JobState
from bot.domain.request import GenerationRequest
from bot.domain.timing import (
    MIN_SAMPLES,
    LearnedSchedule,
    ShapeEstimate,
    TimingBook,
    TimingSample,
    eta_s,
    shape_of,
)
from bot.testing.fake_wavespeed import FakeWaveSpeed
from cogs import texts
from tests import test_jobs as jobs
from tests.discord_world import make_world

SHAPE = "720p/5s/audio/single"


def book_of(generation_s: list[float], queue_s: float = 4.0) -> TimingBook:
    return TimingBook(TimingSample(SHAPE, 0.0, queue_s, g) for g in generation_s)


def walk(schedule: LearnedSchedule, starts_s: float, done_s: float) -> tuple[int, float]:
    """Poll a task (queued until `starts_s`, done at `done_s`) as the schedule says: how many
    polls it took, and how late the one that saw it done came."""
    now, status, polls = 0.0, None, 0
    while True:
        now += schedule.next_delay(now, status)
        polls += 1
        if now >= done_s:
            return polls, now - done_s
        status = "processing" if now >= starts_s else "created"


def test_the_shape_is_what_timing_depends_on() -> None:
    request = GenerationRequest(image="https://x/cat.png", prompt="p")
    assert shape_of(request) == "720p/5s/audio/single"
    silent = request.model_copy(update={"enable_audio": False, "resolution": "1080p"})
    assert shape_of(silent) == "1080p/5s/silent/single"
    own = request.model_copy(update={"audio": "https://x/a.mp3", "duration": 10})
    assert shape_of(own) == "720p/10s/custom-audio/single"


def test_a_shape_needs_a_few_jobs_and_keeps_the_latest_fifty() -> None:
    assert book_of([40.0] * (MIN_SAMPLES - 1)).estimate(SHAPE) is None
    book = book_of([float(n) for n in range(100)])
    estimate = book.estimate(SHAPE)
    assert estimate is not None and estimate.samples == 50
    assert estimate.generation_at(0.0) == 50.0 and estimate.generation_at(1.0) == 99.0
    assert estimate.generation_at(0.5) == pytest.approx(74.5)
    assert book.estimate("other") is None


def test_polls_are_few_before_the_window_dense_inside_it_and_back_off_after() -> None:
    rng = random.Random(7)
    generation = [40.0 * rng.lognormvariate(0, 0.1) for _ in range(30)]
    estimate = book_of(generation).estimate(SHAPE)
    assert estimate is not None
    lates, polls = [], []
    for trial in range(200):
        starts = rng.uniform(0.0, 10.0)
        done = starts + 40.0 * rng.lognormvariate(0, 0.1)
        count, late = walk(LearnedSchedule(estimate, jitter=random.Random(trial)), starts, done)
        polls.append(count)
        lates.append(late)
    lates.sort()
    assert lates[len(lates) // 2] <= 1.0  # noticed within a second, usually
    assert sum(polls) / len(polls) < 0.5 * 45  # a 1 s poller makes ~45 for these jobs
    # a task far slower than ever seen is still noticed, just later (polls back off to 5 s)
    count, late = walk(LearnedSchedule(estimate), 2.0, 200.0)
    assert late <= 5.6 and count < 60


def test_the_eta_counts_down_from_what_jobs_of_the_shape_took() -> None:
    estimate = ShapeEstimate(5, (2.0, 4.0, 4.0, 4.0, 6.0), (30.0, 38.0, 40.0, 42.0, 50.0))
    assert eta_s(None, 10.0, "created", None) is None
    assert eta_s(estimate, 0.0, "created", None) == 44.0  # the median queue, then generation
    assert eta_s(estimate, 10.0, "processing", 5.0) == 35.0
    assert eta_s(estimate, 99.0, "processing", 5.0) == 0.0
    assert texts.eta_text(35.0) == "about 35 s left"
    assert texts.eta_text(1.0) == "any moment now"
    assert texts.eta_text(100.0) == "about 1:40 left"
    assert texts.queue_place_text(0) == "yours is next"
    assert texts.queue_place_text(2) == "2 videos ahead of yours"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[jobs.World]:
    async with FakeWaveSpeed(queue_s=0.05, processing_s=0.3) as fake:
        world = jobs.World(fake, tmp_path / "wanbot.db")
        yield world
        await world.close()


async def test_timings_are_learned_and_then_an_eta_is_shown(world: jobs.World) -> None:
    process = await world.boot()
    for _ in range(MIN_SAMPLES):
        job, recorder = await process.run()
        assert recorder.failures == []
        assert all(p.eta_s is None for p in recorder.reports)  # nothing known yet
    timings = await process.storage.recent_timings(per_shape=50)
    assert len(timings) == MIN_SAMPLES
    assert {t.shape for t in timings} == {shape_of(jobs.REQUEST)}
    assert all(0.2 <= t.generation_s <= 1.0 for t in timings)  # the fake's 0.3 s, as reported

    again = await world.boot()  # a new process learns from the database
    job, recorder = await again.run()
    etas = [p.eta_s for p in recorder.reports if p.stage in (Stage.QUEUED, Stage.GENERATING)]
    assert etas and all(eta is not None for eta in etas)
    assert job.state is JobState.DELIVERED


async def test_jobs_resumed_together_spread_their_first_polls(world: jobs.World) -> None:
    """Two hundred jobs left generating by a process that stopped: the next one resumes them
    all, and their first polls are spread over about two seconds rather than sent at once."""
    world.fake.processing_s = 3.0
    first = await world.boot(max_jobs=1000)
    started = [await first.start(jobs.Recorder(), member_id=5000 + n % 10) for n in range(200)]

    async def all_submitted() -> bool:
        states = {(await first.job(job.id)).state for job in started}
        return states == {JobState.SUBMITTED}

    await jobs.eventually(all_submitted, timeout_s=20)
    await world.stop(first)
    since = asyncio.get_running_loop().time()
    second = await world.boot()
    assert await second.runner.resume(lambda job: jobs.Recorder(), include=jobs.every_job) == 200

    def first_polls() -> dict[str, float]:
        firsts: dict[str, float] = {}
        for call in world.fake.calls("result"):
            if call.at > since:
                firsts.setdefault(call.path, call.at - since)
        return firsts

    async def all_polled() -> bool:  # a loaded machine may take longer than the spread
        return len(first_polls()) == 200

    await jobs.eventually(all_polled, timeout_s=20)
    firsts = sorted(first_polls().values())
    most_in_a_tenth = max(sum(1 for t in firsts if s <= t < s + 0.1) for s in firsts)
    assert most_in_a_tenth <= 80  # not 200 at once (loose: a loaded machine clumps a little)
    assert firsts[-1] - firsts[0] >= 1.5
    await second.runner.close()


async def test_resume_does_not_wait_for_the_gateway(tmp_path: Path) -> None:
    """A job left generating is polled as soon as the bot starts, seconds before Discord's
    gateway is ready; its video is posted once it is."""
    async with make_world(tmp_path) as world:
        world.wavespeed.next_task(processing_s=1.0)
        async with world.bot():
            await world.video()
            while not world.wavespeed.submissions:
                await asyncio.sleep(0.02)
        world.discord.ready_delay_s = 2.0
        world.discord.ready_sent_at.clear()
        since = asyncio.get_running_loop().time()
        async with world.bot():
            polls = [r.at for r in world.wavespeed.calls("result") if r.at > since]
            assert polls and min(polls) < world.discord.ready_sent_at[0] - 1.0
            await world.discord.wait_for_message(
                lambda m: any(a.filename.endswith(".mp4") for a in m.attachments), timeout=10
            )
