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
from bot.domain.job import JobOwner, JobRecord, Stage
from bot.domain.lifecycle import FailureKind, JobState
from bot.domain.media import MediaFile
from bot.domain.outcomes import FIXED_MESSAGES, JobFailure
from bot.domain.queue import QueueLimits
from bot.domain.request import GenerationRequest
from bot.failures import failure_from_error
from bot.runner import JobRunner, Posted, Progress, Reconciliation, Undeliverable, Video
from bot.testing.fake_wavespeed import FakeWaveSpeed, sample_video
from bot.wavespeed import (
    AuthError,
    PollPolicy,
    TaskFailed,
    Timeouts,
    WaveSpeedClient,
    WaveSpeedError,
)
from storage import SqliteStorage, open_storage
from tests.conftest import FAST_POLL, FAST_RETRY, FAST_TIMEOUTS, ROOMY_LIMITS, TEST_API_KEY
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
# Reconciliation at test speed: look every 50 ms, refund a task absent for 0.3 s, hold ≤ 1.5 s.
RECONCILIATION = Reconciliation(absent_after_s=0.3, hold_max_s=1.5, check_every_s=0.05, skew_s=2)
CHANNEL_ID = 2002


def owner(member_id: int = MEMBER) -> JobOwner:
    return JobOwner(GUILD, CHANNEL, member_id)


def png_upload() -> MediaFile:
    return MediaFile("cat.png", tiny_png(16, 16), "image/png")


# --- the observer -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """A video as post_video() got it, with its file's bytes read then (the runner deletes the
    file once the post is recorded); `data` is None for a video given as its link."""

    video: Video
    data: bytes | None

    @property
    def url(self) -> str:
        return self.video.url


class Recorder:
    """A Delivery that records what the member would see. `post_error` makes post_video()
    raise (after counting the attempt); `found` is what find_post() answers; `limit` is the
    destination's upload limit."""

    def __init__(
        self,
        post_error: Exception | None = None,
        found: Posted | None = None,
        limit: int = 10 * 1024 * 1024,
    ) -> None:
        self.stages: list[Stage] = []
        self.reports: list[Progress] = []
        self.videos: list[Seen] = []
        self.failures: list[JobFailure] = []
        self.undecided_ids: list[list[str]] = []
        self.post_attempts = 0
        self.lookups = 0
        self.finished = 0
        self._post_error = post_error
        self._found = found
        self.limit = limit
        self.files: list[Path] = []  # every file a video came in

    async def progress(self, job: JobRecord, progress: Progress) -> None:
        assert progress.elapsed_s >= 0
        self.stages.append(progress.stage)
        self.reports.append(progress)

    async def attach_limit(self, job: JobRecord) -> int:
        return self.limit

    async def post_video(self, job: JobRecord, video: Video) -> Posted:
        self.post_attempts += 1
        if video.path is not None:
            self.files.append(video.path)
            assert video.path.stat().st_size == video.size <= self.limit
        if self._post_error is not None:
            raise self._post_error
        data = None if video.path is None else video.path.read_bytes()
        self.videos.append(Seen(video, data))
        return Posted(CHANNEL_ID, MESSAGE_ID)

    async def find_post(self, job: JobRecord) -> Posted | None:
        self.lookups += 1
        return self._found

    async def delivered(self, job: JobRecord, video: Video) -> None:
        assert job.state is JobState.DELIVERED  # cosmetic steps come after the record
        self.finished += 1

    async def failed(self, job: JobRecord, failure: JobFailure) -> None:
        assert job.state is JobState.FAILED and job.settlement == "refund"  # refunded first
        self.failures.append(failure)

    async def undecided(self, job: JobRecord, candidate_ids: list[str]) -> None:
        self.undecided_ids.append(candidate_ids)

    @property
    def distinct_stages(self) -> list[Stage]:
        """The stages with repeats collapsed (a progress report comes with every poll)."""
        return [s for i, s in enumerate(self.stages) if i == 0 or self.stages[i - 1] != s]

    def only_video(self) -> Seen:
        assert self.failures == [], self.failures
        assert len(self.videos) == 1, self.videos
        return self.videos[0]

    def only_failure(self) -> JobFailure:
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
        job = await self.start(recorder, member_id=member_id, uploads=uploads)
        await self.runner.wait(job.id)
        return await self.job(job.id), recorder

    async def start(
        self,
        recorder: Recorder,
        *,
        member_id: int = MEMBER,
        uploads: dict[str, MediaFile] | None = None,
        guild_id: int = GUILD,
        request: GenerationRequest = REQUEST,
    ) -> JobRecord:
        """Reserve a job and set it running, like /video does."""
        job = await self.runner.reserve(JobOwner(guild_id, CHANNEL, member_id), request)
        self.runner.run(job, recorder, uploads)
        return job

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
        limits: QueueLimits = ROOMY_LIMITS,
    ) -> Process:
        storage = await open_storage(str(self.db_path), POLICY)
        client = WaveSpeedClient(
            TEST_API_KEY, self.fake.base_url, retry=FAST_RETRY, timeouts=timeouts
        )
        runner = JobRunner(
            storage,
            client,
            poll=poll,
            max_jobs_per_member=max_jobs,
            reconciliation=RECONCILIATION,
            download_pause_s=0.01,
            limits=limits,
            queue_tick_s=0.05,
        )
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
    seen = recorder.only_video()
    assert seen.data == sample_video() and is_mp4(seen.data)
    video = seen.video
    assert video.url == output_url(fake, job) and video.size == len(sample_video())
    assert video.nsfw is False and video.inference_ms is not None and video.inference_ms > 0

    assert job.state is JobState.DELIVERED and recorder.finished == 1
    assert (job.result_channel_id, job.result_message_id) == (CHANNEL_ID, MESSAGE_ID)
    assert job.price_micro == PRICE
    await bot.assert_money(job, charged=True)


@pytest.mark.parametrize("scope", ["member", "server"])
async def test_budget_refusal_writes_and_sends_nothing(
    bot: Process, world: World, scope: str
) -> None:
    """BudgetExceeded comes out of reserve(); no job, no ledger row beyond the limit, no request."""
    await bot.storage.set_allowance(GUILD, MEMBER if scope == "member" else 0, PRICE - 1, ADMIN)

    with pytest.raises(BudgetExceeded) as refused:
        await bot.runner.reserve(owner(), REQUEST)

    assert refused.value.scope == scope
    assert [e.kind for e in await bot.storage.ledger(GUILD)] == ["limit"]
    assert await bot.storage.unfinished_jobs() == []
    assert world.fake.requests == []


async def test_too_many_jobs_per_member(world: World) -> None:
    """The (max+1)-th job in flight is refused; another member is not affected."""
    world.fake.queue_s = 0.3
    process = await world.boot(max_jobs=2)
    recorder = Recorder()
    jobs = [await process.start(recorder) for _ in range(2)]

    with pytest.raises(TooManyJobs):
        await process.runner.reserve(owner(), REQUEST)
    jobs.append(await process.start(recorder, member_id=MEMBER + 1))

    for job in jobs:
        await process.runner.wait(job.id)
    assert len(recorder.videos) == 3 and recorder.failures == []
    ledger = await process.storage.ledger(GUILD)
    assert sorted(e.kind for e in ledger) == ["charge"] * 3 + ["reserve"] * 3
    assert len(world.fake.submissions) == 3


# --- failures: what the member is told, and the money -------------------------------------------


@dataclass(frozen=True)
class FailureCase:
    """A way for a job to end without a video: always refunded, told once."""

    arrange: Callable[[FakeWaveSpeed], None]
    kind: FailureKind
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


def _unanswered_and_history_down(fake: FakeWaveSpeed) -> None:
    fake.fail_next("submit", 502, raw=True)
    fake.fail_next("history", 500, times=None)


FAILURES = {
    "401 on submit": FailureCase(
        lambda fake: fake.fail_next("submit", 401),
        FailureKind.BAD_API_KEY,
        message="API key was refused",
        tells_admins=True,
    ),
    "out of credit": FailureCase(
        _out_of_credit, FailureKind.OUT_OF_CREDIT, message="out of credit", tells_admins=True
    ),
    "5xx envelope on submit": FailureCase(
        lambda fake: fake.fail_next("submit", 503),
        FailureKind.WAVESPEED_DOWN,
        message="WaveSpeed is not answering",
    ),
    "raw 502 on submit, no task in the history": FailureCase(
        lambda fake: fake.fail_next("submit", 502, raw=True),
        FailureKind.NOT_SUBMITTED,
        message="never started",
    ),
    "raw 502 on submit, history unreadable until the hold expires": FailureCase(
        _unanswered_and_history_down,
        FailureKind.HOLD_EXPIRED,
        message="could not be confirmed in time",
        tells_admins=True,
    ),
    "task failed 1200": FailureCase(
        lambda fake: fake.next_task("failed", error_code=1200),
        FailureKind.MODERATION,
        message="content filter",
        tasks=1,
        code=1200,
        wavespeed_status="failed",
    ),
    "task failed 5000 twice (submitted once more)": FailureCase(
        lambda fake: [fake.next_task("failed", error_code=5000) for _ in range(2)],
        FailureKind.GENERATION_FAILED,
        message=(
            "The generation failed at WaveSpeed: Internal server error. "
            "This is usually temporary: try again in a minute."
        ),
        tasks=2,
        submits=2,
        code=5000,
        wavespeed_status="failed",
    ),
    "poll timeout while queued": FailureCase(
        lambda fake: fake.next_task(queue_s=5.0),
        FailureKind.TIMED_OUT,
        message="took too long",
        tasks=1,
        poll=SHORT_POLL,
        wavespeed_status="created",
    ),
    "poll timeout while processing": FailureCase(
        lambda fake: fake.next_task(queue_s=0.0, processing_s=5.0),
        FailureKind.TIMED_OUT,
        message="took too long",
        tasks=1,
        poll=SHORT_POLL,
        wavespeed_status="processing",
    ),
    "upload failing": FailureCase(
        lambda fake: fake.fail_next("upload", 500, times=None),
        FailureKind.WAVESPEED_DOWN,
        message="WaveSpeed is not answering",
        submits=0,
    ),
    "completed with no output": FailureCase(
        lambda fake: fake.next_task(empty_outputs=True),
        FailureKind.EMPTY_RESULT,
        message="sent no video",
        tasks=1,
        tells_admins=True,
        wavespeed_status="completed",
    ),
    "output link dead (404) on every try": FailureCase(
        lambda fake: fake.fail_next("output", 404, times=None),
        FailureKind.OUTPUT_UNREACHABLE,
        message="could not be downloaded",
        tasks=1,
        tells_admins=True,
        wavespeed_status="completed",
    ),
}


@pytest.mark.parametrize("case", FAILURES.values(), ids=FAILURES.keys())
async def test_failure_is_refunded_and_told_once(world: World, case: FailureCase) -> None:
    """Each fault ends the job closed: refunded once, its kind stored, the member told once."""
    process = await world.boot(poll=case.poll, timeouts=case.timeouts)
    case.arrange(world.fake)

    job, recorder = await process.run(uploads={"image": png_upload()})

    failure = recorder.only_failure()
    assert failure.kind is case.kind and job.failure_kind is case.kind
    assert case.message in failure.message
    assert failure.code == case.code
    assert failure.tells_admins is case.tells_admins
    assert recorder.post_attempts == 0
    assert job.state is JobState.CLOSED and job.result_message_id is None
    assert job.wavespeed_status == case.wavespeed_status
    await process.assert_money(job, charged=False)
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


async def test_a_download_that_fails_twice_is_retried_and_delivered(
    bot: Process, world: World
) -> None:
    """Output fetches failing (404, then 500 past the client's own retries) are tried again after
    re-fetching the result: the video arrives, charged once."""
    world.fake.fail_next("output", 404)
    world.fake.fail_next("output", 500, times=FAST_RETRY.attempts)

    job, recorder = await bot.run()

    assert is_mp4(recorder.only_video().data)
    assert len(world.fake.calls("output")) == FAST_RETRY.attempts + 2
    assert job.state is JobState.DELIVERED
    await bot.assert_money(job, charged=True)


async def test_an_undeliverable_video_is_refunded_and_explained(bot: Process, world: World) -> None:
    """No route could carry the video: refunded, and the member (or the admins) told."""
    recorder = Recorder(post_error=Undeliverable("every route refused"))

    job, _ = await bot.run(recorder)

    assert recorder.post_attempts == 1 and recorder.finished == 0
    failure = recorder.only_failure()
    assert failure.kind is FailureKind.UNDELIVERABLE and failure.tells_admins
    assert job.state is JobState.CLOSED
    await bot.assert_money(job, charged=False)


async def test_an_unanswered_submit_whose_task_exists_is_adopted_and_delivered(
    world: World,
) -> None:
    """The submit's answer comes after the client gave up: the price is held, the task is found
    in WaveSpeed's history, adopted and delivered: one task, one submit, charged once."""
    process = await world.boot(timeouts=SHORT_SUBMIT)
    world.fake.slow_next("submit", 1.0)
    recorder = Recorder()

    job, _ = await process.run(recorder)

    assert is_mp4(recorder.only_video().data)
    assert Stage.CHECKING in recorder.distinct_stages
    (task_id,) = world.fake.tasks
    assert job.prediction_id == task_id and job.state is JobState.DELIVERED
    assert job.submit_ended_at is not None and job.hold_until is not None
    assert len(world.fake.calls("submit")) == 1 and world.fake.calls("history")
    await process.assert_money(job, charged=True)


async def test_an_unanswered_submit_matching_several_tasks_is_held_then_refunded(
    bot: Process, world: World
) -> None:
    """Two tasks nobody owns were created at the moment of an unanswered submit (say, on the
    website): the price stays held, the admins are told once, and the hold's deadline refunds."""
    world.fake.fail_next("submit", 502, raw=True)
    foreign = [world.fake.add_foreign_task() for _ in range(2)]
    recorder = Recorder()

    job, _ = await bot.run(recorder)

    [candidates] = recorder.undecided_ids  # told once, though looked at many times
    assert sorted(candidates) == sorted(foreign)
    assert recorder.only_failure().kind is FailureKind.HOLD_EXPIRED
    assert job.prediction_id is None and job.state is JobState.CLOSED
    assert job.finished_at is not None and job.hold_until is not None
    assert job.finished_at >= job.hold_until
    await bot.assert_money(job, charged=False)


async def test_a_task_another_job_owns_is_never_adopted(bot: Process, world: World) -> None:
    """A delivered job's task sits in the submit window of an unanswered one: not adopted."""
    first, _ = await bot.run()
    world.fake.fail_next("submit", 502, raw=True)

    second, recorder = await bot.run(member_id=MEMBER + 1)

    assert recorder.only_failure().kind is FailureKind.NOT_SUBMITTED
    assert second.prediction_id is None
    await bot.assert_money(first, charged=True)
    await bot.assert_money(second, charged=False)


# --- restarts ------------------------------------------------------------------------------------


async def test_restart_while_polling_resumes_and_delivers_once(world: World) -> None:
    """Stop the process once the task exists; a new process resumes polling, delivers once."""
    fake = world.fake
    fake.next_task(queue_s=0.2, processing_s=0.2)
    first = await world.boot()
    before = Recorder()
    job = await first.start(before)

    async def submitted() -> bool:
        return (await first.job(job.id)).state is JobState.SUBMITTED

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
    assert job.state is JobState.DELIVERED
    await second.assert_money(job, charged=True)
    assert await second.resume_into(Recorder()) == 0


async def _reserved(process: Process) -> JobRecord:
    return await process.storage.reserve(owner(), REQUEST.model_dump_json(), PRICE, MAX_JOBS)


async def _submitting(process: Process) -> JobRecord:
    """A job whose submit was in flight when the process died, and never reached WaveSpeed."""
    job = await _reserved(process)
    await process.storage.advance(job.id, JobState.QUEUED)
    return await process.storage.advance(job.id, JobState.SUBMITTING)


async def _submitting_task_created(process: Process) -> JobRecord:
    """A job whose submit reached WaveSpeed, but the process died before reading the answer."""
    job = await _submitting(process)
    await process.client.submit(REQUEST.to_api_body())
    return job


async def _ready(process: Process) -> JobRecord:
    """A job whose task finished at the fake, its video never fetched nor posted."""
    job = await _submitting(process)
    prediction = await process.client.submit(REQUEST.to_api_body())
    await process.storage.advance(job.id, JobState.SUBMITTED, prediction_id=prediction.id)
    result = await process.client.wait_for_result(prediction.id, FAST_POLL)
    return await process.storage.advance(
        job.id,
        JobState.READY,
        output_url=result.outputs[0],
        has_nsfw=result.nsfw,
        inference_ms=result.inference_ms,
    )


async def _posting(process: Process) -> JobRecord:
    """A job that began posting its video when the process died."""
    job = await _ready(process)
    return await process.storage.advance(job.id, JobState.POSTING)


def _failed(error: WaveSpeedError) -> Callable[[Process], Awaitable[JobRecord]]:
    """A job refunded for `error` (as the runner would) whose member was never told."""

    async def arrange(process: Process) -> JobRecord:
        job = await _submitting(process)
        failure = failure_from_error(error)
        return await process.storage.advance(
            job.id,
            JobState.FAILED,
            failure_kind=failure.kind.value,
            error_code=failure.code,
            error_message=failure.message,
        )

    return arrange


@dataclass(frozen=True)
class ResumeCase:
    """A state a previous process left a job in, and how resuming must end it."""

    arrange: Callable[[Process], Awaitable[JobRecord]]
    failure: FailureKind | None = None  # None: a video (charged), else refunded
    submissions: int = 0
    break_results: bool = False  # every poll of the result fails after the restart
    found: Posted | None = None  # what the delivery finds of an earlier post
    posts: int = 1  # posts the resumed delivery makes for a video


RESUMES = {
    "reserved": ResumeCase(_reserved, failure=FailureKind.INTERRUPTED),
    "submitting, never reached WaveSpeed": ResumeCase(
        _submitting, failure=FailureKind.NOT_SUBMITTED
    ),
    "submitting, task created": ResumeCase(_submitting_task_created, submissions=1),
    "ready, not posted": ResumeCase(_ready, submissions=1),
    "ready, result unreachable": ResumeCase(_ready, submissions=1, break_results=True),
    "posting, the post landed": ResumeCase(
        _posting, submissions=1, found=Posted(CHANNEL_ID, MESSAGE_ID), posts=0
    ),
    "posting, the post was lost": ResumeCase(_posting, submissions=1),
    "failed (moderation), not told": ResumeCase(
        _failed(TaskFailed("p1", "failed", 1200, "Content flagged")),
        failure=FailureKind.MODERATION,
    ),
    "failed (task 5000), not told": ResumeCase(
        _failed(TaskFailed("p1", "failed", 5000, "5000: Internal server error")),
        failure=FailureKind.GENERATION_FAILED,
    ),
    "failed (bad API key), not told": ResumeCase(
        _failed(AuthError("401")), failure=FailureKind.BAD_API_KEY
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
    recorder = Recorder(found=case.found)
    assert await process.resume_into(recorder) == 1
    assert await process.resume_into(recorder) == 0  # told once, not again

    job = await process.job(job_id)
    if case.failure is None:
        assert job.state is JobState.DELIVERED
        assert recorder.post_attempts == case.posts
        if case.posts:
            video = recorder.only_video()
            assert is_mp4(video.data)
        assert (job.result_channel_id, job.result_message_id) == (CHANNEL_ID, MESSAGE_ID)
    else:
        assert job.state is JobState.CLOSED
        failure = recorder.only_failure()
        assert failure.kind is case.failure is job.failure_kind
        assert failure.message == job.error_message
        assert failure.message == FIXED_MESSAGES.get(failure.kind, failure.message)
        assert failure.tells_admins is (failure.kind is FailureKind.BAD_API_KEY)
    await process.assert_money(job, charged=case.failure is None)
    assert len(world.fake.submissions) == case.submissions


async def test_a_post_that_raised_is_found_or_made_again_after_a_restart(
    bot: Process, world: World
) -> None:
    """post_video() crashing unexpectedly leaves the job posting, uncharged; the next resume
    looks for the post, does not find it, fetches the video again and posts it: charged once."""
    broken = Recorder(post_error=RuntimeError("the bot crashed mid-post"))

    job, _ = await bot.run(broken)

    assert broken.post_attempts == 1 and broken.told == 0
    assert job.state is JobState.POSTING and job.post_attempts == 1
    assert job.settlement is None

    recorder = Recorder()
    assert await bot.resume_into(recorder) == 1
    assert recorder.lookups == 1 and is_mp4(recorder.only_video().data)
    job = await bot.job(job.id)
    assert job.state is JobState.DELIVERED and job.post_attempts == 2
    await bot.assert_money(job, charged=True)
    assert len(world.fake.submissions) == 1


async def test_an_expired_output_link_is_renewed_from_the_result(world: World) -> None:
    """A job resumed after its output link expired downloads it through a fresh result."""
    world.fake.next_task(output_expires_s=0.2)
    left = await world.boot()
    job = await _ready(left)
    await world.stop(left)
    await asyncio.sleep(0.3)

    process = await world.boot()
    recorder = Recorder()
    await process.resume_into(recorder)

    assert is_mp4(recorder.only_video().data)
    assert recorder.only_video().url != job.output_url  # the renewed link
    await process.assert_money(await process.job(job.id), charged=True)


# --- concurrency ---------------------------------------------------------------------------------


async def test_concurrent_jobs_settle_exactly_and_resume_does_not_double_follow(
    bot: Process, world: World
) -> None:
    """Jobs of several members run at once; a resume() meanwhile picks up none of them."""
    members = [MEMBER + n for n in range(5)]
    recorders = {member: Recorder() for member in members}
    jobs = [await bot.start(recorders[m], member_id=m) for m in members]
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
    jobs = [await first.start(Recorder(), member_id=MEMBER + n) for n in range(count)]

    async def all_submitted() -> bool:
        states = [(await first.job(job.id)).state for job in jobs]
        return states == [JobState.SUBMITTED] * len(jobs)

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
    assert (await second.job(jobs[1].id)).state is JobState.SUBMITTED


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


async def test_a_resume_between_reserve_and_run_leaves_the_job_to_its_run(
    bot: Process, world: World
) -> None:
    """/video awaits Discord between reserve() and run(); the process's own watch may resume
    meanwhile. It must not take the just-reserved job for one a restart left (and refund it)."""
    recorder = Recorder()
    job = await bot.runner.reserve(owner(), REQUEST)

    assert await bot.runner.resume(lambda job: Recorder(), include=every_job) == 0
    bot.runner.run(job, recorder)
    await bot.runner.wait_all()

    assert is_mp4(recorder.only_video().data)
    await bot.assert_money(await bot.job(job.id), charged=True)
    assert len(world.fake.submissions) == 1
