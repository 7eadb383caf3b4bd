"""JobRunner: drives each job through the lifecycle (bot.domain.lifecycle) to a final state.

`reserve()` writes the job and holds its price; `run()` follows it in the background: upload,
wait in the local queue for a turn under the account's limits (bot.queueing), submit, reconcile
an unanswered submit, poll (learned per shape: bot.domain.timing) or hear a verified webhook,
fetch the video, post it, and settle. Each step
stores the state it reaches before the next one starts, so `resume()` after a restart carries
every job on from where it stood, and the money follows the state: charged only when the post of
the video is recorded, refunded on every other ending.

Several processes may share one database (bot shards, `wanbot generate` runs): each unfinished
job is followed by one of them at a time, the one holding its lease (bot.leases). A runner
takes the lease with the reservation or claims it when it resumes a job, renews every lease it
holds while it follows the jobs, and gives each up when the job ends or the runner closes. A
process that dies stops renewing: once its leases run out, another runner's `watch` takes its
jobs over. The lifecycle makes sure each is still charged once.

The runner knows nothing of Discord: it reports through a `Delivery`, which the /video cog, the
command-line `generate` and the tests each implement.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Callable, Collection, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from bot import metrics
from bot import wavespeed as ws
from bot.domain.job import STAGE_OF_STATUS, InteractionToken, JobOwner, JobRecord, Stage
from bot.domain.lifecycle import FailureKind, JobState, LeaseLost
from bot.domain.media import MediaFile
from bot.domain.outcomes import JobFailure, failure
from bot.domain.queue import QueueLimits
from bot.domain.request import GenerationRequest
from bot.domain.timing import (
    KEPT_SAMPLES,
    FixedSchedule,
    LearnedSchedule,
    PollSchedule,
    ShapeEstimate,
    TimingBook,
    TimingSample,
    eta_s,
    shape_of,
)
from bot.failures import failure_from_error, is_temporary
from bot.leases import is_dead, new_owner_id
from bot.queueing import Dispatcher
from bot.video_files import VideoFiles
from storage.base import Storage

log = logging.getLogger(__name__)

MAX_VIDEO_BYTES = 512 * 1024 * 1024  # the most a video may take on disk while it is posted
DEFAULT_LEASE_S = 30.0
BACKSTOP_POLL_S = 30.0  # with webhooks, polling only catches one that never came
RESUME_POLLS_PER_S = 100.0  # jobs resumed together spread their first polls at this rate…
MAX_RESUME_SPREAD_S = 5.0  # …over this long at most (a slower start would only delay videos)
RESUMED_AFTER = timedelta(seconds=5)  # a result awaited this long after the submit was resumed
RESUME_YIELD_EVERY = 100  # claims between turns for the event loop while resuming


@dataclass(frozen=True)
class Progress:
    """A progress report: the stage and seconds since the job was reserved."""

    stage: Stage
    elapsed_s: float
    ahead: int | None = None  # waiting in the local queue: jobs before this one
    eta_s: float | None = None  # learned from jobs of the same shape, when known


@dataclass(frozen=True)
class Video:
    """A generated video. `path`: the downloaded file, the runner's (it is deleted once the
    post is recorded or the job fails); None when the video is over what the destination
    accepts, and was not downloaded: deliver the link. `size` in bytes: the file's, or for a
    link what is known (the announced length, or the bytes seen up to the limit; 0: nothing)."""

    url: str
    path: Path | None
    size: int
    nsfw: bool
    inference_ms: int | None
    elapsed_s: float


@dataclass(frozen=True)
class Posted:
    """Where a video was posted: a Discord message, or None for both when saved to a file."""

    channel_id: int | None
    message_id: int | None


class Undeliverable(Exception):
    """No route (follow-up, channel message, direct message) could carry the video."""


class Delivery(Protocol):
    """Where a job's progress and outcome go."""

    async def progress(self, job: JobRecord, progress: Progress) -> None: ...

    async def attach_limit(self, job: JobRecord) -> int:
        """The largest video in bytes this job's destination accepts as a file; 0: links only.
        Asked before the download: a larger video is linked, and never downloaded."""
        ...

    async def post_video(self, job: JobRecord, video: Video) -> Posted:
        """Post the video to the member, idempotently; raise Undeliverable if nothing can."""
        ...

    async def find_post(self, job: JobRecord) -> Posted | None:
        """The post of this job's video that an attempt cut short by a restart made, if any."""
        ...

    async def delivered(self, job: JobRecord, video: Video) -> None:
        """Cosmetic steps once the delivery is recorded (a closing status, a private copy)."""
        ...

    async def failed(self, job: JobRecord, failure: JobFailure) -> None:
        """Tell the member (and, for some failures, the admins) why there is no video."""
        ...

    async def undecided(self, job: JobRecord, candidate_ids: list[str]) -> None:
        """Tell the admins that an unanswered submit can't be matched to one WaveSpeed task."""
        ...


DeliveryFactory = Callable[[JobRecord], Delivery]


@dataclass(frozen=True)
class Reconciliation:
    """How an unanswered submit is settled from WaveSpeed's prediction history."""

    absent_after_s: float = 300.0  # refund once the task has been missing this long
    hold_max_s: float = 21_600.0  # and never hold the price longer than this
    check_every_s: float = 30.0
    # WaveSpeed stamps created_at with its own clock: look this far either side of the submit
    skew_s: float = 60.0


class JobRunner:
    """Runs generation jobs in background tasks; one runner per process."""

    def __init__(
        self,
        storage: Storage,
        client: ws.WaveSpeedClient,
        *,
        poll: ws.PollPolicy,
        max_jobs_per_member: int,
        reconciliation: Reconciliation | None = None,
        download_attempts: int = 3,
        download_pause_s: float = 2.0,
        lease_s: float = DEFAULT_LEASE_S,
        limits: QueueLimits | None = None,
        webhook_url: str | None = None,
        queue_tick_s: float = 1.0,
        backstop_poll_s: float = BACKSTOP_POLL_S,
    ) -> None:
        self._storage = storage
        self._client = client
        self._poll = poll
        self._max_jobs = max_jobs_per_member
        self._reconciliation = reconciliation or Reconciliation()
        self._download_attempts = download_attempts
        self._download_pause_s = download_pause_s
        self._adopting = asyncio.Lock()  # two held jobs must never adopt the same task
        self._told_undecided: set[int] = set()  # per process: telling twice is harmless
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.owner_id = new_owner_id()  # the lease owner of every job this runner follows
        self._lease_s = lease_s
        self._renewing: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self._queue = Dispatcher(
            storage, self.owner_id, limits or QueueLimits(), tick_s=queue_tick_s
        )
        self._webhook_url = webhook_url
        self._backstop_poll_s = backstop_poll_s
        # prediction id → its result from a webhook, or None: "another process had it, poll now"
        self._pushed: dict[str, asyncio.Future[ws.Prediction | None]] = {}
        self._timings: TimingBook | None = None  # loaded from the database on first use

    async def reserve(
        self,
        owner: JobOwner,
        request: GenerationRequest,
        *,
        interaction: InteractionToken | None = None,
        roles: Collection[int] = (),
        locale: str | None = None,
    ) -> JobRecord:
        """Write the job, leased to this runner, and hold its price. Raises BudgetExceeded or
        TooManyJobs, writing nothing. `interaction`: the token the job was asked through, kept
        with it so that whichever process follows the job can answer through it. `roles`: the
        Discord role ids the member holds, whose tiers count for their allowance; kept with the
        job, with the member's Discord `locale`, for whichever process speaks to them."""
        return await self._storage.reserve(
            owner,
            request.model_dump_json(),
            request.price_micro,
            self._max_jobs,
            lease_owner=self.owner_id,
            lease_s=self._lease_s,
            interaction=interaction,
            roles=roles,
            locale=locale,
        )

    def run(
        self, job: JobRecord, delivery: Delivery, uploads: Mapping[str, MediaFile] | None = None
    ) -> None:
        """Follow a job this runner reserved, in the background. `uploads` maps "image"/"audio"
        to files that replace those fields' URLs once uploaded to WaveSpeed."""
        self._spawn(job.id, self._follow(job.id, delivery, fresh=True, uploads=uploads or {}))

    async def resume(
        self, delivery_for: DeliveryFactory, *, include: Callable[[JobRecord], bool]
    ) -> int:
        """Claim and carry on the unfinished jobs that `include` accepts and no live process
        (this runner included) follows yet; return how many. The bot and the CLI each resume
        only their own jobs.

        Calling it again while jobs run is harmless: a job is never followed twice, here or in
        another process sharing the database.
        """
        count = 0
        unfinished = await self._storage.unfinished_jobs()
        # Jobs resumed together would all poll at once: spread their starts over a few seconds.
        spread_s = min(len(unfinished) / RESUME_POLLS_PER_S, MAX_RESUME_SPREAD_S)
        for n, job in enumerate(unfinished, start=1):
            if n % RESUME_YIELD_EVERY == 0:
                # SQLite answers claims without suspending: let the loop serve others meanwhile
                await asyncio.sleep(0)
            # A job leased to this runner but not followed yet was just reserved: its run() is
            # about to start it (leases of ended tasks are released, so nothing else is left).
            mine = job.lease_owner == self.owner_id
            if job.id in self._tasks or mine or not include(job):
                continue
            claimed = await self._claim(job)
            # a resume running alongside (a watch) may have taken it while this one claimed
            if claimed is None or job.id in self._tasks:
                continue
            stagger_s = random.uniform(0.0, spread_s)
            work = self._follow(
                job.id, delivery_for(claimed), fresh=False, uploads={}, stagger_s=stagger_s
            )
            self._spawn(job.id, work)
            count += 1
        return count

    def watch(self, delivery_for: DeliveryFactory, *, include: Callable[[JobRecord], bool]) -> None:
        """Resume now, then again every half lease until `close()`, in the background: the
        jobs of a process that died are taken over once their leases run out."""
        if self._watching is not None:
            raise RuntimeError("this runner is already watching")
        self._watching = asyncio.create_task(
            self._watch(delivery_for, include), name="wanbot-watch"
        )

    async def wait_all(self) -> None:
        """Wait until every job this runner follows has ended."""
        while self._tasks:
            await asyncio.gather(*map(asyncio.shield, self._tasks.values()))

    async def wait(self, job_id: int) -> None:
        """Wait until a job's background work has ended."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.shield(task)

    async def result_arrived(self, prediction: ws.Prediction) -> None:
        """A task's final result came by a verified webhook: the job waiting on it here goes on
        at once. One followed by another process (several behind one URL, or a takeover) is
        announced to it through the store; where the store cannot, it finds it by polling."""
        waiting = self._pushed.get(prediction.id)
        if waiting is not None and not waiting.done():
            waiting.set_result(prediction)
        elif await self._storage.announce_result(prediction.id):
            log.info("webhook for task %s: no job here waits on it; told the others", prediction.id)
        else:
            log.info("webhook for task %s: no job here is waiting on it", prediction.id)

    def result_announced(self, prediction_id: str) -> None:
        """Another process took a verified webhook for this task (Storage.listen_for_results):
        the job waiting on it here polls its result now."""
        waiting = self._pushed.get(prediction_id)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    async def close(self) -> None:
        """Stop watching and following jobs without changing their state, giving up their
        leases: another process's `watch`, or the next start, carries them on."""
        # with the jobs' tasks stop the watch and the renewals: nothing is claimed or renewed after
        for background in (self._watching, self._renewing):
            if background is not None:
                background.cancel()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(
            *filter(None, (self._watching, self._renewing)), *tasks, return_exceptions=True
        )
        self._watching = self._renewing = None
        await self._queue.close()
        self._video_files.close()  # the downloads of jobs cut short go with their folder

    def _spawn(self, job_id: int, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(_logged(job_id, work), name=f"wanbot-job-{job_id}")
        self._tasks[job_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            # Only this task: a later resume may already follow the job in a new one.
            if self._tasks.get(job_id) is done:
                del self._tasks[job_id]

        task.add_done_callback(forget)
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.create_task(self._renew_leases(), name="wanbot-leases")

    # --- leases ---------------------------------------------------------------------------------

    async def _claim(self, job: JobRecord) -> JobRecord | None:
        """Take the job's lease if no live process holds it (see Storage.claim)."""
        holder = job.lease_owner
        dead = holder if holder is not None and is_dead(holder) else None
        return await self._storage.claim(job.id, self.owner_id, self._lease_s, dead_owner=dead)

    async def _follow(
        self,
        job_id: int,
        delivery: Delivery,
        *,
        fresh: bool,
        uploads: Mapping[str, MediaFile],
        stagger_s: float = 0.0,
    ) -> None:
        """Drive a job this runner holds the lease of, then give the lease up: the job ended,
        stopped on an error (the next resume tries it again), or is no longer followed here."""
        try:
            # A fresh job's lease came with its reservation, but nothing renewed it until now: a
            # caller slower than a lease to start it may have lost it to another process.
            if fresh and await self._storage.claim(job_id, self.owner_id, self._lease_s) is None:
                log.warning("job %s: another process took it over before it started", job_id)
                return
            await asyncio.sleep(stagger_s)
            await self._drive(job_id, delivery, fresh=fresh, uploads=uploads)
        except LeaseLost:
            log.warning("job %s: another process took it over; stopped following", job_id)
        finally:
            await self._storage.release(job_id, self.owner_id)

    async def _advance(self, job_id: int, to: JobState, **changes: object) -> JobRecord:
        """Move a job followed here; refused (LeaseLost, nothing changed) once another process
        holds its lease: one that woke from a freeze longer than its lease must not act on it."""
        return await self._storage.advance(job_id, to, holder=self.owner_id, **changes)

    async def _renew_leases(self) -> None:
        """While jobs are followed here, renew their leases every third of a lease (so one
        late renewal still leaves time for the next)."""
        while self._tasks:
            await asyncio.sleep(self._lease_s / 3)
            await self._renew()

    async def _renew(self) -> None:
        """Renew the lease of every job followed here. A job whose lease another process took
        over (it found this one's run out) is no longer followed here: its task is cancelled,
        its state left as it is, for the new holder to carry on."""
        following = dict(self._tasks)
        if not following:
            return
        try:
            renewed = await self._storage.renew(following, self.owner_id, self._lease_s)
        except Exception:
            log.exception("the job leases could not be renewed; trying again")
            return
        for job_id, task in following.items():
            if job_id not in renewed and not task.done():
                log.warning("job %s: another process took it over; stopped following", job_id)
                task.cancel()

    async def _watch(
        self, delivery_for: DeliveryFactory, include: Callable[[JobRecord], bool]
    ) -> None:
        """Resume, then wait half a lease, over and over: a lease that ran out is noticed within
        half a lease."""
        while True:
            try:
                count = await self.resume(delivery_for, include=include)
            except Exception:
                log.exception("unfinished jobs could not be looked for; looking again")
            else:
                if count:
                    log.info("following %d more unfinished job(s)", count)
            await asyncio.sleep(self._lease_s / 2)

    # --- the lifecycle, one state at a time ---------------------------------------------------

    async def _drive(
        self, job_id: int, delivery: Delivery, *, fresh: bool, uploads: Mapping[str, MediaFile]
    ) -> None:
        """Take the job one step at a time until it reaches a final state."""
        video: Video | None = None
        while True:
            job = await self._get(job_id)
            match job.state:
                case JobState.DELIVERED | JobState.CLOSED:
                    return
                case _ if job.lease_owner != self.owner_id:
                    # taken over while this process was frozen or cut off from the database:
                    # the next step (a submit, a post) is the new holder's to take
                    raise LeaseLost(job_id, self.owner_id, job.lease_owner)
                case JobState.RESERVED if fresh:
                    await self._queue_up(job, delivery, uploads)
                case JobState.RESERVED:  # the bot stopped while uploading: the media are gone
                    await self._fail(job, failure(FailureKind.INTERRUPTED))
                case JobState.QUEUED:
                    await self._take_turn(job, delivery)
                case JobState.SUBMITTING:  # the bot stopped while the submit was in flight
                    await self._hold(job)
                case JobState.UNCERTAIN:
                    await self._reconcile(job, delivery)
                case JobState.SUBMITTED:
                    await self._await_result(job, delivery)
                case JobState.READY:
                    video = await self._fetch_video(job, delivery)
                    if video is not None:
                        await self._advance(job.id, JobState.POSTING)
                case JobState.POSTING:
                    await self._post(job, delivery, video)
                case JobState.FAILED:
                    await self._tell_failure(job, delivery)

    async def _queue_up(
        self, job: JobRecord, delivery: Delivery, uploads: Mapping[str, MediaFile]
    ) -> None:
        """Upload the media, then join the local queue with the final request: from there on
        the job needs nothing held in memory, and survives a restart in its place."""
        await self._report(job, delivery, Stage.UPLOADING)
        request = GenerationRequest.model_validate_json(job.request_json)
        try:
            final = await self._upload(request, uploads)
        except ws.WaveSpeedError as error:
            await self._fail(job, failure_from_error(error))
            return
        await self._advance(job.id, JobState.QUEUED, request_json=final.model_dump_json())

    async def _take_turn(self, job: JobRecord, delivery: Delivery) -> None:
        """Wait for the job's turn in the local queue (showing its position), then submit it."""

        async def show(ahead: int) -> None:
            await _quietly(
                job, delivery.progress(job, Progress(Stage.WAITING, _elapsed(job), ahead=ahead))
            )

        admitted = await self._queue.turn(job.id, show)
        if admitted is not None:  # else it left the queue (cancelled): the next step tells
            await self._submit(admitted, delivery)

    async def _submit(self, job: JobRecord, delivery: Delivery) -> None:
        """Send the admitted job's task to WaveSpeed. A 429 puts it back in the queue, in its
        place, and slows the queue down: the member sees a wait, never a failure."""
        request = GenerationRequest.model_validate_json(job.request_json)
        try:
            prediction = await self._client.submit(
                request.to_api_body(), webhook_url=self._webhook_url
            )
        except ws.RateLimited as error:
            self._queue.rate_limited(error.retry_after)
            await self._requeue(job)
            return
        except ws.SubmitUncertain as error:
            log.warning("job %s: submit unanswered, holding while reconciling: %s", job.id, error)
            await self._hold(job)
            return
        except ws.WaveSpeedError as error:
            await self._fail(job, failure_from_error(error))
            return
        await self._advance(
            job.id,
            JobState.SUBMITTED,
            prediction_id=prediction.id,
            wavespeed_status=prediction.status,
        )

    async def _upload(
        self, request: GenerationRequest, uploads: Mapping[str, MediaFile]
    ) -> GenerationRequest:
        urls = {
            field: await self._client.upload(media.data, media.filename, media.content_type)
            for field, media in uploads.items()
        }
        return request.model_copy(update=urls) if urls else request

    async def _hold(self, job: JobRecord) -> None:
        hold_until = _now() + timedelta(seconds=self._reconciliation.hold_max_s)
        await self._advance(job.id, JobState.UNCERTAIN, hold_until=hold_until)

    async def _reconcile(self, job: JobRecord, delivery: Delivery) -> None:
        """One look at WaveSpeed's history for the task an unanswered submit may have made:
        adopt it if exactly one unknown task of the model was created in the submit's window,
        refund when none has shown up for `absent_after_s`, else wait and look again (telling
        the admins once if several match) until the hold's deadline refunds it."""
        assert job.submit_started_at is not None and job.hold_until is not None
        await self._report(job, delivery, Stage.CHECKING)
        rules = self._reconciliation
        skew = timedelta(seconds=rules.skew_s)
        # The task, if any, was created while the submit was in flight: no later than the client's
        # submit timeout, even when the bot only noticed after a restart.
        latest = job.submit_started_at + timedelta(seconds=self._client.timeouts.submit_s)
        ended = min(job.submit_ended_at or latest, latest)
        candidates = await self._unknown_tasks(job.submit_started_at - skew, ended + skew)
        now = _now()
        if candidates is not None:
            if len(candidates) == 1:
                await self._adopt(job, candidates[0])
                return
            if not candidates and now >= ended + timedelta(seconds=rules.absent_after_s):
                await self._fail(job, failure(FailureKind.NOT_SUBMITTED))
                return
            if len(candidates) > 1 and job.id not in self._told_undecided:
                self._told_undecided.add(job.id)
                await _quietly(job, delivery.undecided(job, [task.id for task in candidates]))
        if now >= job.hold_until:
            await self._fail(job, failure(FailureKind.HOLD_EXPIRED))
            return
        await asyncio.sleep(min(rules.check_every_s, (job.hold_until - now).total_seconds()))

    async def _unknown_tasks(self, since: datetime, until: datetime) -> list[ws.Prediction] | None:
        """Tasks of the model created in [since, until] that no job owns; None if unknown."""
        try:
            tasks = await self._client.find_tasks(since, until)
        except ws.WaveSpeedError as error:
            log.warning("prediction history unavailable, will look again: %s", error)
            return None
        known = await self._storage.known_predictions([task.id for task in tasks])
        return [task for task in tasks if task.id not in known]

    async def _adopt(self, job: JobRecord, task: ws.Prediction) -> None:
        async with self._adopting:
            if await self._storage.known_predictions([task.id]):
                return  # another held job took it meanwhile: look again next round
            log.info("job %s: adopting WaveSpeed task %s found in the history", job.id, task.id)
            await self._advance(
                job.id, JobState.SUBMITTED, prediction_id=task.id, wavespeed_status=task.status
            )

    async def _await_result(self, job: JobRecord, delivery: Delivery) -> None:
        """Poll the task to its end (or hear it by webhook): ready with an output, or failed.
        A task failed with a temporary code goes back to the queue, once."""
        assert job.prediction_id is not None
        last_status = job.wavespeed_status
        shape = shape_of(GenerationRequest.model_validate_json(job.request_json))
        estimate = (await self._timing_book()).estimate(shape)
        # A job resumed mid-way cannot tell when its task started: the learned window would be
        # placed from now and miss it, so it polls as without history.
        resumed = job.submitted_at is not None and _now() - job.submitted_at > RESUMED_AFTER
        schedule = self._schedule(None if resumed else estimate)
        loop = asyncio.get_running_loop()
        watched_from = loop.time()

        async def on_update(prediction: ws.Prediction) -> None:
            nonlocal last_status
            if prediction.status != last_status:
                last_status = prediction.status
                await self._storage.set_wavespeed_status(job.id, prediction.status)
            stage = STAGE_OF_STATUS.get(prediction.status)
            if stage is not None:
                started = getattr(schedule, "started_s", None)
                eta = eta_s(estimate, loop.time() - watched_from, prediction.status, started)
                progress = Progress(stage, _elapsed(job), eta_s=eta)
                await _quietly(job, delivery.progress(job, progress))

        # what the member sees until a poll says more (which may be a while, when the schedule
        # knows the task cannot be done yet): the stage WaveSpeed last reported, and an ETA
        first = STAGE_OF_STATUS.get(last_status or "created", Stage.QUEUED)
        eta = eta_s(estimate, 0.0, last_status, None)
        await _quietly(job, delivery.progress(job, Progress(first, _elapsed(job), eta_s=eta)))
        pushed = self._pushed.setdefault(job.prediction_id, loop.create_future())
        try:
            prediction = await self._client.wait_for_result(
                job.prediction_id, self._poll, on_update, schedule=schedule, pushed=pushed
            )
        except ws.TaskFailed as error:
            if is_temporary(error) and job.retried_prediction_id is None:  # once only
                log.info("job %s: %s; submitting it once more", job.id, error)
                await self._report(job, delivery, Stage.RETRYING)
                await self._requeue(job, retried_prediction_id=job.prediction_id)
                return
            await self._fail(job, failure_from_error(error))
            return
        except ws.WaveSpeedError as error:
            await self._fail(job, failure_from_error(error))
            return
        finally:
            self._pushed.pop(job.prediction_id, None)
        if not prediction.outputs:
            await self._fail(job, failure(FailureKind.EMPTY_RESULT))
            return
        await self._advance(
            job.id,
            JobState.READY,
            output_url=prediction.outputs[0],
            has_nsfw=prediction.nsfw,
            inference_ms=prediction.inference_ms,
        )
        self._queue.poke()  # a task left WaveSpeed: a queued job may go
        if not resumed:  # a job taken up mid-way did not see its task start: nothing to learn
            await self._learn(job, shape, loop.time() - watched_from, prediction, schedule)

    def _schedule(self, estimate: ShapeEstimate | None) -> PollSchedule:
        """How to poll: rarely with webhooks (a backstop), learned with history, else the
        policy's intervals; jittered, so that jobs started together do not poll together."""
        if self._webhook_url is not None:
            return FixedSchedule(_jittered(itertools.repeat(self._backstop_poll_s)))
        if estimate is not None:
            return LearnedSchedule(estimate)
        return FixedSchedule(_jittered(self._poll.intervals()))

    async def _timing_book(self) -> TimingBook:
        if self._timings is None:
            self._timings = TimingBook(await self._storage.recent_timings(KEPT_SAMPLES))
        return self._timings

    async def _learn(
        self,
        job: JobRecord,
        shape: str,
        watched_s: float,
        prediction: ws.Prediction,
        schedule: PollSchedule,
    ) -> None:
        """Keep the timings of a job followed here from its submit (not resumed mid-way): its
        generation time as WaveSpeed reports it (else as the polls saw it), the rest of the
        wait as its queue."""
        if job.queued_at is None or job.submit_started_at is None:
            return
        started = getattr(schedule, "started_s", None)
        if prediction.inference_ms is not None:
            generation_s = prediction.inference_ms / 1000
        elif started is not None:
            generation_s = watched_s - started
        else:
            return
        sample = TimingSample(
            shape,
            local_wait_s=(job.submit_started_at - job.queued_at).total_seconds(),
            queue_s=max(0.0, watched_s - generation_s),
            generation_s=max(0.0, generation_s),
        )
        (await self._timing_book()).add(sample)
        try:
            await self._storage.record_timing(job.id, sample)
        except Exception:
            log.exception("job %s: its timings could not be kept", job.id)

    async def _requeue(self, job: JobRecord, **changes: object) -> None:
        await self._advance(job.id, JobState.QUEUED, **changes)
        self._queue.poke()

    async def _fetch_video(self, job: JobRecord, delivery: Delivery) -> Video | None:
        """Stream the output to a file, unless it is over what the destination accepts: then
        only its link is delivered. Between attempts ask for the result again, since output
        links expire and a fresh result carries a fresh one. None (and refunded) if it never
        came. Even a video that will be linked is requested once (its headers, not its body),
        so a dead link is refunded rather than charged."""
        assert job.prediction_id is not None
        await self._report(job, delivery, Stage.DOWNLOADING)
        # a job from before the lifecycle may have no stored link: ask for the result first
        url = job.output_url or await self._renewed_link(job, "")
        if not url:
            await self._fail(job, failure(FailureKind.EMPTY_RESULT))
            return None
        try:
            accepted = await delivery.attach_limit(job)
        except Exception:  # the routes still link what is over their own limit
            log.exception("job %s: the destination's upload limit is unknown", job.id)
            accepted = MAX_VIDEO_BYTES
        limit = max(0, min(accepted, MAX_VIDEO_BYTES))
        path = self._video_files.path(job.id)

        def video(file: Path | None, size: int) -> Video:
            return Video(url, file, size, job.has_nsfw, job.inference_ms, _elapsed(job))

        for attempt in range(self._download_attempts):
            if attempt:
                await asyncio.sleep(self._download_pause_s * attempt)
                url = await self._renewed_link(job, url)
            try:
                async with self._video_files.downloading:  # a turn among the downloads
                    size = await self._client.download_to(url, path, max_bytes=limit)
            except ws.TooLarge as error:
                return video(None, error.size)  # it is there, only too large: link it
            except ws.WaveSpeedError as error:
                log.warning("job %s: download attempt %d failed: %s", job.id, attempt + 1, error)
                continue
            except OSError as error:  # the disk, not the video: the member still gets it
                log.error("job %s: the video could not be saved, linking it: %s", job.id, error)
                return video(None, 0)
            return video(path, size)
        await self._fail(job, failure(FailureKind.OUTPUT_UNREACHABLE))
        return None

    async def _renewed_link(self, job: JobRecord, url: str) -> str:
        assert job.prediction_id is not None
        try:
            prediction = await self._client.get_result(job.prediction_id)
        except ws.WaveSpeedError as error:
            log.warning("job %s: result re-fetch failed: %s", job.id, error)
            return url
        return prediction.outputs[0] if prediction.outputs else url

    @cached_property
    def _video_files(self) -> VideoFiles:
        """This runner's folder of downloaded videos (made on the first download)."""
        return VideoFiles()

    async def _post(self, job: JobRecord, delivery: Delivery, video: Video | None) -> None:
        """Post the video, record the post (which charges it), then the cosmetic steps.

        Without a video in hand the job was resumed after a restart, and the attempt it was
        making may have landed: look for that post first; otherwise fetch the video again and
        post it once more (counted as a new attempt).

        The video's file is deleted at the end whatever happens: posted and recorded, failed,
        or cut short (the next attempt downloads it again)."""
        try:
            if video is None:
                posted = await delivery.find_post(job)
                if posted is not None:
                    await self._record_post(job, posted)
                    return
                video = await self._fetch_video(job, delivery)
                if video is None:
                    return
                job = await self._advance(job.id, JobState.POSTING)
            try:
                posted = await delivery.post_video(job, video)
            except Undeliverable as error:
                log.error("job %s: the video could not be posted anywhere: %s", job.id, error)
                await self._fail(job, failure(FailureKind.UNDELIVERABLE))
                return
            job = await self._record_post(job, posted)
            await _quietly(job, delivery.delivered(job, video))
        finally:
            if video is not None and video.path is not None:
                # in a thread: deleting a large file takes milliseconds, and posts end together
                await asyncio.to_thread(self._video_files.discard, video.path)

    async def _record_post(self, job: JobRecord, posted: Posted) -> JobRecord:
        delivered = await self._advance(
            job.id,
            JobState.DELIVERED,
            result_channel_id=posted.channel_id,
            result_message_id=posted.message_id,
        )
        assert delivered.delivered_at is not None
        metrics.observe_delivery((delivered.delivered_at - delivered.created_at).total_seconds())
        return delivered

    async def _fail(self, job: JobRecord, failure: JobFailure) -> None:
        """Refund the job and remember why; the member is told in the next step."""
        await self._advance(
            job.id,
            JobState.FAILED,
            failure_kind=failure.kind.value,
            error_code=failure.code,
            error_message=failure.message,
        )
        self._queue.poke()  # it may have been at WaveSpeed: a queued job may go

    async def _tell_failure(self, job: JobRecord, delivery: Delivery) -> None:
        assert job.failure_kind is not None
        told = JobFailure(job.failure_kind, job.error_message or "", job.error_code)
        await _quietly(job, delivery.failed(job, told))
        await self._advance(job.id, JobState.CLOSED)

    async def _report(self, job: JobRecord, delivery: Delivery, stage: Stage) -> None:
        await _quietly(job, delivery.progress(job, Progress(stage, _elapsed(job))))

    async def _get(self, job_id: int) -> JobRecord:
        job = await self._storage.get_job(job_id)
        assert job is not None, f"job {job_id} vanished"
        return job


async def _quietly(job: JobRecord, work: Coroutine[Any, Any, None]) -> None:
    """Run a report to the member; its failure is logged and never stops the job."""
    try:
        await work
    except Exception:
        log.exception("job %s: a report to the member failed", job.id)


async def _logged(job_id: int, work: Coroutine[Any, Any, None]) -> None:
    """Run a job's work; an unexpected error is logged and the job left for the next resume."""
    try:
        await work
    except Exception:
        log.exception("job %s stopped unexpectedly; the next resume carries it on", job_id)


def _jittered(intervals: Iterator[float]) -> Iterator[float]:
    """The intervals, the first anywhere from half to one and a half of itself (jobs started
    together then poll apart, not in waves), the others 10 % longer or shorter at random."""
    yield next(intervals) * random.uniform(0.5, 1.5)
    for interval in intervals:
        yield interval * random.uniform(0.9, 1.1)


def _now() -> datetime:
    return datetime.now(UTC)


def _elapsed(job: JobRecord) -> float:
    return (_now() - job.created_at).total_seconds()
