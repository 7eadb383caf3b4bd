"""JobRunner end to end: the fake WaveSpeed API on loopback and a real SQLite file.

Every test checks both what the member is told (through a recording Delivery) and the money (the
job's ledger rows and the member's balance). Nothing of wanbot's own is mocked.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.domain.budget import BudgetExceeded, BudgetPeriod, BudgetPolicy, TooManyJobs
from bot.domain.media import MediaFile
from bot.domain.outcomes import (
    INTERRUPTED_MESSAGE,
    UNCONFIRMED_MESSAGE,
    FailureKind,
    JobFailure,
    failure_from_error,
)
from bot.domain.request import GenerationRequest
from bot.runner import JobRunner, Progress, Stage, Video
from bot.testing.fake_wavespeed import FakeWaveSpeed, sample_video
from bot.wavespeed import (
    AuthError,
    PollPolicy,
    SubmitUncertain,
    TaskFailed,
    Timeouts,
    WaveSpeedClient,
    WaveSpeedError,
)
from storage import SqliteStorage, open_storage
from storage.base import JobOwner, JobRecord, JobStatus
from tests.conftest import FAST_POLL, FAST_RETRY, FAST_TIMEOUTS, TEST_API_KEY
from tests.fakes.images import tiny_png

GUILD = 1001
CHANNEL = 2002
MEMBER = 3003
ADMIN = 9009
MAX_JOBS = 3
MESSAGE_ID = 777  # what the recording delivery says carries the video
POLICY = BudgetPolicy(
    member_allowance=5_000_000, server_allowance=50_000_000, period=BudgetPeriod.DAY
)
# 5 s, 720p, silent: $0.125. The image URL is not loopback, so the fake accepts it unfetched.
REQUEST = GenerationRequest(
    image="https://cdn.example/cat.png", prompt="the cat waves", enable_audio=False
)
PRICE = 125_000
# Polls every 20–50 ms and gives up after 0.4 s: for the poll-timeout cases.
SHORT_POLL = PollPolicy(first_delay_s=0.02, factor=1.5, max_interval_s=0.05, timeout_s=0.4)
SHORT_SUBMIT = dataclasses.replace(FAST_TIMEOUTS, submit_s=0.3)
FIXED_MESSAGES = {
    FailureKind.INTERRUPTED: INTERRUPTED_MESSAGE,
    FailureKind.UNCONFIRMED: UNCONFIRMED_MESSAGE,
}


def owner(member_id: int = MEMBER) -> JobOwner:
    return JobOwner(GUILD, CHANNEL, member_id)


def png_upload() -> MediaFile:
    return MediaFile("cat.png", tiny_png(16, 16), "image/png")


# --- the observer -------------------------------------------------------------------------------


class Recorder:
    """A Delivery that records what the member would see. `completed_error` makes completed()
    raise (like a Discord outage) after counting the attempt."""

    def __init__(self, completed_error: Exception | None = None) -> None:
        self.stages: list[Stage] = []
        self.videos: list[Video] = []
        self.failures: list[tuple[JobFailure, bool]] = []
        self.completed_attempts = 0
        self._completed_error = completed_error

    async def progress(self, job: JobRecord, progress: Progress) -> None:
        assert progress.elapsed_s >= 0
        self.stages.append(progress.stage)

    async def completed(self, job: JobRecord, video: Video) -> int | None:
        self.completed_attempts += 1
        if self._completed_error is not None:
            raise self._completed_error
        self.videos.append(video)
        return MESSAGE_ID

    async def failed(self, job: JobRecord, failure: JobFailure, refunded: bool) -> None:
        self.failures.append((failure, refunded))

    @property
    def distinct_stages(self) -> list[Stage]:
        """The stages with repeats collapsed (a progress report comes with every poll)."""
        return [s for i, s in enumerate(self.stages) if i == 0 or self.stages[i - 1] != s]

    def only_video(self) -> Video:
        assert self.failures == [], self.failures
        assert len(self.videos) == 1, self.videos
        return self.videos[0]

    def only_failure(self) -> tuple[JobFailure, bool]:
        assert self.videos == []
        assert len(self.failures) == 1, self.failures
        return self.failures[0]

    @property
    def told(self) -> int:
        return len(self.videos) + len(self.failures)


# --- the world: a fake API, a database file, and "processes" on them ------------------------------


@dataclass
class Process:
    """One run of the bot: its own store, client and runner on the shared database file."""

    storage: SqliteStorage
    client: WaveSpeedClient
    runner: JobRunner

    async def stop(self) -> None:
        """Stop like the bot does at shutdown: runner first, then the client and the store."""
        await self.runner.close()
        await self.client.close()
        await self.storage.close()

    async def run(
        self,
        recorder: Recorder | None = None,
        *,
        member_id: int = MEMBER,
        uploads: dict[str, MediaFile] | None = None,
    ) -> tuple[JobRecord, Recorder]:
        """Start a job, wait for its end, and return its final record and what it told."""
        recorder = recorder or Recorder()
        job = await self.runner.start(owner(member_id), REQUEST, recorder, uploads)
        await self.runner.wait(job.id)
        return await self.job(job.id), recorder

    async def job(self, job_id: int) -> JobRecord:
        job = await self.storage.get_job(job_id)
        assert job is not None
        return job

    async def resume_into(self, recorder: Recorder) -> int:
        """Resume every unfinished job into one recorder and wait until they have all ended."""
        ids = [job.id for job in await self.storage.unfinished_jobs()]
        count = await self.runner.resume(lambda job: recorder, include=every_job)
        for job_id in ids:
            await self.runner.wait(job_id)
        return count

    async def assert_money(self, job: JobRecord, *, charged: bool) -> None:
        """One reserve and one settlement of the exact price; the balance shows only a charge."""
        rows = [
            (e.kind, e.amount_micro) for e in await self.storage.ledger(GUILD) if e.job_id == job.id
        ]
        settlement = "charge" if charged else "refund"
        assert rows == [("reserve", job.price_micro), (settlement, job.price_micro)]
        assert job.settlement == settlement
        balance = await self.storage.member_balance(GUILD, job.member_id)
        assert balance.held == 0
        assert balance.spent == (job.price_micro if charged else 0)
        assert balance.available == POLICY.member_allowance - balance.spent


class World:
    """The fake WaveSpeed API and one SQLite file; boots processes and stops them at the end."""

    def __init__(self, fake: FakeWaveSpeed, db_path: Path) -> None:
        self.fake = fake
        self.db_path = db_path
        self._processes: list[Process] = []

    async def boot(
        self,
        *,
        poll: PollPolicy = FAST_POLL,
        timeouts: Timeouts = FAST_TIMEOUTS,
        max_jobs: int = MAX_JOBS,
    ) -> Process:
        storage = await open_storage(str(self.db_path), POLICY)
        client = WaveSpeedClient(
            TEST_API_KEY, self.fake.base_url, retry=FAST_RETRY, timeouts=timeouts
        )
        runner = JobRunner(storage, client, poll=poll, max_jobs_per_member=max_jobs)
        process = Process(storage, client, runner)
        self._processes.append(process)
        return process

    async def stop(self, process: Process) -> None:
        self._processes.remove(process)
        await process.stop()

    async def close(self) -> None:
        for process in reversed(self._processes):
            await process.stop()


@pytest.fixture
async def world(fake_wavespeed: FakeWaveSpeed, tmp_path: Path) -> AsyncIterator[World]:
    world = World(fake_wavespeed, tmp_path / "wanbot.db")
    yield world
    await world.close()


@pytest.fixture
async def bot(world: World) -> Process:
    """A process with the fast test timings."""
    return await world.boot()


async def eventually(condition: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    """Poll `condition` until it holds; fail after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not await condition():
            await asyncio.sleep(0.01)


def is_mp4(data: bytes | None) -> bool:
    return data is not None and data[4:8] == b"ftyp"


def output_url(fake: FakeWaveSpeed, job: JobRecord) -> str:
    """Where the fake serves a job's video."""
    return f"{fake.base_url}/outputs/{job.prediction_id}.mp4"


# --- the happy path and the budget ----------------------------------------------------------------


async def test_happy_path_uploads_submits_charges_and_delivers(bot: Process, world: World) -> None:
    """Reserve → upload → submit the uploaded URL → queued → generating → video, charged once."""
    fake = world.fake
    fake.next_task(queue_s=0.15, processing_s=0.15)
    png = png_upload()

    job, recorder = await bot.run(uploads={"image": png})

    (name,) = fake.uploads
    assert fake.uploads[name].data == png.data
    (body,) = fake.submissions
    assert body["image"] == f"{fake.base_url}/media/{name}"
    assert body["prompt"] == REQUEST.prompt and body["duration"] == 5
    assert GenerationRequest.model_validate_json(job.request_json).image == body["image"]

    assert recorder.distinct_stages == [
        Stage.UPLOADING,
        Stage.QUEUED,
        Stage.GENERATING,
        Stage.DOWNLOADING,
    ]
    video = recorder.only_video()
    assert video.data == sample_video() and is_mp4(video.data)
    assert video.url == output_url(fake, job)
    assert video.nsfw is False and video.inference_ms is not None and video.inference_ms > 0

    assert job.status is JobStatus.DELIVERED
    assert job.result_message_id == MESSAGE_ID
    assert job.price_micro == PRICE
    await bot.assert_money(job, charged=True)


@pytest.mark.parametrize("scope", ["member", "server"])
async def test_budget_refusal_writes_and_sends_nothing(
    bot: Process, world: World, scope: str
) -> None:
    """BudgetExceeded comes out of start(); no job, no ledger row beyond the limit, no request."""
    await bot.storage.set_allowance(GUILD, MEMBER if scope == "member" else 0, PRICE - 1, ADMIN)

    with pytest.raises(BudgetExceeded) as refused:
        await bot.runner.start(owner(), REQUEST, Recorder())

    assert refused.value.scope == scope
    assert [e.kind for e in await bot.storage.ledger(GUILD)] == ["limit"]
    assert await bot.storage.unfinished_jobs() == []
    assert world.fake.requests == []


async def test_too_many_jobs_per_member(world: World) -> None:
    """The (max+1)-th job in flight is refused; another member is not affected."""
    world.fake.queue_s = 0.3
    process = await world.boot(max_jobs=2)
    recorder = Recorder()
    jobs = [await process.runner.start(owner(), REQUEST, recorder) for _ in range(2)]

    with pytest.raises(TooManyJobs):
        await process.runner.start(owner(), REQUEST, Recorder())
    jobs.append(await process.runner.start(owner(MEMBER + 1), REQUEST, recorder))

    for job in jobs:
        await process.runner.wait(job.id)
    assert len(recorder.videos) == 3 and recorder.failures == []
    ledger = await process.storage.ledger(GUILD)
    assert sorted(e.kind for e in ledger) == ["charge"] * 3 + ["reserve"] * 3
    assert len(world.fake.submissions) == 3


# --- failures: what the member is told, and the money -------------------------------------------


@dataclass(frozen=True)
class FailureCase:
    """A way for a job to fail, and how it must end."""

    arrange: Callable[[FakeWaveSpeed], None]
    kind: FailureKind
    refunded: bool
    message: str
    submits: int = 1  # submit requests the fake received: a submit is never blindly retried
    tasks: int = 0  # tasks the fake created
    code: int | None = None
    tells_admins: bool = False
    poll: PollPolicy = FAST_POLL
    timeouts: Timeouts = FAST_TIMEOUTS
    wavespeed_status: str | None = None


def _out_of_credit(fake: FakeWaveSpeed) -> None:
    fake.out_of_credit = True


FAILURES = {
    "401 on submit": FailureCase(
        lambda fake: fake.fail_next("submit", 401),
        FailureKind.BAD_API_KEY,
        refunded=True,
        message="API key was refused",
        tells_admins=True,
    ),
    "out of credit": FailureCase(
        _out_of_credit,
        FailureKind.OUT_OF_CREDIT,
        refunded=True,
        message="out of credit",
        tells_admins=True,
    ),
    "5xx envelope on submit": FailureCase(
        lambda fake: fake.fail_next("submit", 503),
        FailureKind.WAVESPEED_DOWN,
        refunded=True,
        message="WaveSpeed is not answering",
    ),
    "raw 502 on submit": FailureCase(
        lambda fake: fake.fail_next("submit", 502, raw=True),
        FailureKind.UNCONFIRMED,
        refunded=False,
        message=UNCONFIRMED_MESSAGE,
    ),
    "submit answered after the client timeout": FailureCase(
        lambda fake: fake.slow_next("submit", 1.0),
        FailureKind.UNCONFIRMED,
        refunded=False,
        message=UNCONFIRMED_MESSAGE,
        tasks=1,
        timeouts=SHORT_SUBMIT,
    ),
    "task failed 1200": FailureCase(
        lambda fake: fake.next_task("failed", error_code=1200),
        FailureKind.MODERATION,
        refunded=True,
        message="content filter",
        tasks=1,
        code=1200,
        wavespeed_status="failed",
    ),
    "task failed 5000": FailureCase(
        lambda fake: fake.next_task("failed", error_code=5000),
        FailureKind.GENERATION_FAILED,
        refunded=True,
        message=(
            "The generation failed at WaveSpeed: Internal server error. "
            "This is usually temporary: try again in a minute."
        ),
        tasks=1,
        code=5000,
        wavespeed_status="failed",
    ),
    "poll timeout while queued": FailureCase(
        lambda fake: fake.next_task(queue_s=5.0),
        FailureKind.TIMED_OUT,
        refunded=True,
        message="took too long",
        tasks=1,
        poll=SHORT_POLL,
        wavespeed_status="created",
    ),
    "poll timeout while processing": FailureCase(
        lambda fake: fake.next_task(queue_s=0.0, processing_s=5.0),
        FailureKind.TIMED_OUT,
        refunded=False,
        message="took too long",
        tasks=1,
        poll=SHORT_POLL,
        wavespeed_status="processing",
    ),
    "upload failing": FailureCase(
        lambda fake: fake.fail_next("upload", 500, times=None),
        FailureKind.WAVESPEED_DOWN,
        refunded=True,
        message="WaveSpeed is not answering",
        submits=0,
    ),
}


@pytest.mark.parametrize("case", FAILURES.values(), ids=FAILURES.keys())
async def test_failure_is_settled_and_told_once(world: World, case: FailureCase) -> None:
    """Each fault ends the job delivered-as-failed, told once, refunded or charged as it must."""
    process = await world.boot(poll=case.poll, timeouts=case.timeouts)
    case.arrange(world.fake)

    job, recorder = await process.run(uploads={"image": png_upload()})

    failure, refunded = recorder.only_failure()
    assert failure.kind is case.kind
    assert case.message in failure.message
    assert failure.code == case.code
    assert failure.tells_admins is case.tells_admins
    assert refunded is case.refunded
    assert job.status is JobStatus.DELIVERED and job.result_message_id is None
    assert job.wavespeed_status == case.wavespeed_status
    await process.assert_money(job, charged=not case.refunded)
    assert len(world.fake.calls("submit")) == case.submits
    assert len(world.fake.tasks) == case.tasks


async def test_rate_limited_submit_waits_retry_after_then_succeeds(
    bot: Process, world: World
) -> None:
    """A 429 refusal is the one submit that may be repeated: after Retry-After, one task."""
    world.fake.fail_next("submit", 429, retry_after=0.2)

    job, recorder = await bot.run()

    assert is_mp4(recorder.only_video().data)
    first, second = world.fake.calls("submit")
    assert second.at - first.at >= 0.2
    assert len(world.fake.tasks) == 1
    await bot.assert_money(job, charged=True)


async def test_transient_poll_errors_are_ridden_through(bot: Process, world: World) -> None:
    """5xx on polls (more than one poll's retries) do not end the job."""
    world.fake.fail_next("result", 503, times=FAST_RETRY.attempts + 1)

    job, recorder = await bot.run()

    assert is_mp4(recorder.only_video().data)
    assert len(world.fake.calls("result")) > FAST_RETRY.attempts + 1
    await bot.assert_money(job, charged=True)


async def test_failed_download_delivers_the_link(bot: Process, world: World) -> None:
    """An output that cannot be fetched is delivered as its link, still charged exactly once."""
    world.fake.fail_next("output", 500, times=None)

    job, recorder = await bot.run()

    video = recorder.only_video()
    assert video.data is None
    assert video.url == job.output_url == output_url(world.fake, job)
    assert job.status is JobStatus.DELIVERED
    await bot.assert_money(job, charged=True)


# --- restarts ------------------------------------------------------------------------------------


async def test_restart_while_polling_resumes_and_delivers_once(world: World) -> None:
    """Stop the process once the task exists; a new process resumes polling, delivers once."""
    fake = world.fake
    fake.next_task(queue_s=0.2, processing_s=0.2)
    first = await world.boot()
    before = Recorder()
    job = await first.runner.start(owner(), REQUEST, before)

    async def submitted() -> bool:
        return (await first.job(job.id)).status is JobStatus.SUBMITTED

    await eventually(submitted)
    assert len(fake.tasks) == 1
    await world.stop(first)

    second = await world.boot()
    after = Recorder()
    assert await second.resume_into(after) == 1

    assert before.told == 0
    assert is_mp4(after.only_video().data)
    assert len(fake.submissions) == 1
    job = await second.job(job.id)
    assert job.status is JobStatus.DELIVERED
    await second.assert_money(job, charged=True)
    assert await second.resume_into(Recorder()) == 0


async def _reserved(process: Process) -> JobRecord:
    return await process.storage.reserve(owner(), REQUEST.model_dump_json(), PRICE, MAX_JOBS)


async def _submitting(process: Process) -> JobRecord:
    job = await _reserved(process)
    await process.storage.mark_submitting(job.id, job.request_json)
    return job


async def _completed(process: Process) -> JobRecord:
    """A job charged for a finished task at the fake, whose video was never delivered."""
    job = await _submitting(process)
    prediction = await process.client.submit(REQUEST.to_api_body())
    await process.storage.mark_submitted(job.id, prediction.id)
    result = await process.client.wait_for_result(prediction.id, FAST_POLL)
    await process.storage.charge(
        job.id,
        output_url=result.outputs[0],
        has_nsfw=result.nsfw,
        inference_ms=result.inference_ms,
    )
    return job


def _failed(
    error: WaveSpeedError, *, charged: bool = False
) -> Callable[[Process], Awaitable[JobRecord]]:
    """A job settled for `error` (as the runner would settle it) whose member was never told."""

    async def arrange(process: Process) -> JobRecord:
        job = await _submitting(process)
        failure = failure_from_error(error)
        if charged:
            await process.storage.charge_unconfirmed(job.id, failure.message)
        else:
            await process.storage.refund(
                job.id, error_code=failure.code, error_message=failure.message
            )
        return job

    return arrange


@dataclass(frozen=True)
class ResumeCase:
    """A state a previous process left a job in, and how resuming must end it."""

    arrange: Callable[[Process], Awaitable[JobRecord]]
    charged: bool
    failure: FailureKind | None = None  # None: a video
    submissions: int = 0
    break_results: bool = False  # every poll of the result fails after the restart


RESUMES = {
    "reserved": ResumeCase(_reserved, charged=False, failure=FailureKind.INTERRUPTED),
    "submitting": ResumeCase(_submitting, charged=True, failure=FailureKind.UNCONFIRMED),
    "completed, not delivered": ResumeCase(_completed, charged=True, submissions=1),
    "completed, result unreachable": ResumeCase(
        _completed, charged=True, submissions=1, break_results=True
    ),
    "failed (moderation), not told": ResumeCase(
        _failed(TaskFailed("p1", "failed", 1200, "Content flagged")),
        charged=False,
        failure=FailureKind.MODERATION,
    ),
    "failed (task 5000), not told": ResumeCase(
        _failed(TaskFailed("p1", "failed", 5000, "5000: Internal server error")),
        charged=False,
        failure=FailureKind.GENERATION_FAILED,
    ),
    "failed (bad API key), not told": ResumeCase(
        _failed(AuthError("401")), charged=False, failure=FailureKind.BAD_API_KEY
    ),
    "failed (unconfirmed), not told": ResumeCase(
        _failed(SubmitUncertain("no answer"), charged=True),
        charged=True,
        failure=FailureKind.UNCONFIRMED,
    ),
}


@pytest.mark.parametrize("case", RESUMES.values(), ids=RESUMES.keys())
async def test_resume_finishes_each_left_state_once(world: World, case: ResumeCase) -> None:
    """A job left in any unfinished state is ended and told exactly once, never settled twice."""
    left = await world.boot()
    job_id = (await case.arrange(left)).id
    await world.stop(left)
    if case.break_results:
        world.fake.fail_next("result", 500, times=None)

    process = await world.boot()
    recorder = Recorder()
    assert await process.resume_into(recorder) == 1
    assert await process.resume_into(recorder) == 0  # told once, not again

    job = await process.job(job_id)
    assert job.status is JobStatus.DELIVERED
    if case.failure is None:
        video = recorder.only_video()
        assert is_mp4(video.data) and video.url == output_url(world.fake, job)
        assert job.result_message_id == MESSAGE_ID
    else:
        failure, refunded = recorder.only_failure()
        assert failure.kind is case.failure
        assert failure.message == job.error_message
        assert failure.message == FIXED_MESSAGES.get(failure.kind, failure.message)
        assert failure.tells_admins is (failure.kind is FailureKind.BAD_API_KEY)
        assert refunded is not case.charged
    await process.assert_money(job, charged=case.charged)
    assert len(world.fake.submissions) == case.submissions


async def test_delivery_error_leaves_job_completed_for_the_next_resume(
    bot: Process, world: World
) -> None:
    """completed() raising leaves the job charged, undelivered; resume delivers it, once."""
    broken = Recorder(completed_error=RuntimeError("Discord is down"))

    job, _ = await bot.run(broken)

    assert broken.completed_attempts == 1 and broken.told == 0
    assert job.status is JobStatus.COMPLETED
    await bot.assert_money(job, charged=True)

    recorder = Recorder()
    assert await bot.resume_into(recorder) == 1
    assert is_mp4(recorder.only_video().data)
    job = await bot.job(job.id)
    assert job.status is JobStatus.DELIVERED and job.result_message_id == MESSAGE_ID
    await bot.assert_money(job, charged=True)
    assert len(world.fake.submissions) == 1


# --- concurrency ---------------------------------------------------------------------------------


async def test_concurrent_jobs_settle_exactly_and_resume_does_not_double_follow(
    bot: Process, world: World
) -> None:
    """Jobs of several members run at once; a resume() meanwhile picks up none of them."""
    members = [MEMBER + n for n in range(5)]
    recorders = {member: Recorder() for member in members}
    jobs = [await bot.runner.start(owner(m), REQUEST, recorders[m]) for m in members]
    asked: list[int] = []

    def delivery_for(job: JobRecord) -> Recorder:
        asked.append(job.id)
        return Recorder()

    assert await bot.runner.resume(delivery_for, include=every_job) == 0
    assert asked == []
    await asyncio.gather(*(bot.runner.wait(job.id) for job in jobs))

    for job, member in zip(jobs, members, strict=True):
        assert is_mp4(recorders[member].only_video().data)
        await bot.assert_money(await bot.job(job.id), charged=True)
    assert len(world.fake.submissions) == len(members)
    server = await bot.storage.server_balance(GUILD)
    assert (server.spent, server.held) == (PRICE * len(members), 0)


async def restarted_with_submitted_jobs(
    world: World, count: int
) -> tuple[Process, list[JobRecord]]:
    """Start `count` jobs, stop that process once WaveSpeed accepted them all, boot a new one."""
    world.fake.queue_s = 0.2
    first = await world.boot()
    jobs = [await first.runner.start(owner(MEMBER + n), REQUEST, Recorder()) for n in range(count)]

    async def all_submitted() -> bool:
        statuses = [(await first.job(job.id)).status for job in jobs]
        return statuses == [JobStatus.SUBMITTED] * len(jobs)

    await eventually(all_submitted)
    await world.stop(first)
    return await world.boot(), jobs


def every_job(job: JobRecord) -> bool:
    """A resume filter that accepts every job."""
    return True


async def test_resume_takes_only_the_jobs_it_is_asked_to(world: World) -> None:
    """The bot and the CLI share a database: each resumes only its own jobs."""
    second, jobs = await restarted_with_submitted_jobs(world, 2)
    recorder = Recorder()
    mine = jobs[0].member_id
    assert (
        await second.runner.resume(lambda job: recorder, include=lambda j: j.member_id == mine) == 1
    )
    await second.runner.wait_all()
    assert len(recorder.videos) == 1
    assert (await second.job(jobs[1].id)).status == JobStatus.SUBMITTED


async def test_resume_twice_after_restart_follows_each_job_once(world: World) -> None:
    """Two resume() calls on a new process while resumed jobs still run: one delivery each."""
    second, jobs = await restarted_with_submitted_jobs(world, 3)
    recorder = Recorder()
    assert await second.runner.resume(lambda job: recorder, include=every_job) == len(jobs)
    assert await second.runner.resume(lambda job: recorder, include=every_job) == 0
    for job in jobs:
        await second.runner.wait(job.id)

    assert len(recorder.videos) == len(jobs) and recorder.failures == []
    assert len(world.fake.submissions) == len(jobs)
    for job in jobs:
        await second.assert_money(await second.job(job.id), charged=True)
