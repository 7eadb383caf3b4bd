"""JobRunner: reserve → upload → submit → poll → settle → deliver, and resume after a restart.

The runner knows nothing of Discord: it reports through a `Delivery`, which the /video cog, the
command-line `generate` and the tests each implement.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from bot import wavespeed as ws
from bot.domain.media import MediaFile
from bot.domain.outcomes import (
    INTERRUPTED_MESSAGE,
    UNCONFIRMED_MESSAGE,
    FailureKind,
    JobFailure,
    failure_from_error,
    failure_from_record,
    keeps_charge,
)
from bot.domain.request import GenerationRequest
from storage.base import JobOwner, JobRecord, JobStatus, Storage

log = logging.getLogger(__name__)

MAX_VIDEO_BYTES = 512 * 1024 * 1024


class Stage(StrEnum):
    """What a member sees while waiting."""

    UPLOADING = "uploading to WaveSpeed"
    QUEUED = "queued at WaveSpeed"
    GENERATING = "generating"
    DOWNLOADING = "downloading the video"


STAGE_OF_STATUS = {"created": Stage.QUEUED, "processing": Stage.GENERATING}


@dataclass(frozen=True)
class Progress:
    """A progress report: the stage and seconds since the job was reserved."""

    stage: Stage
    elapsed_s: float


@dataclass(frozen=True)
class Video:
    """A finished video. `data` is None when it could not be downloaded (deliver the link)."""

    url: str
    data: bytes | None
    nsfw: bool
    inference_ms: int | None
    elapsed_s: float


class Delivery(Protocol):
    """Where a job's progress and outcome go."""

    async def progress(self, job: JobRecord, progress: Progress) -> None: ...

    async def completed(self, job: JobRecord, video: Video) -> int | None:
        """Show the video; return the id of the message that carries it, if any."""
        ...

    async def failed(self, job: JobRecord, failure: JobFailure, refunded: bool) -> None: ...


DeliveryFactory = Callable[[JobRecord], Delivery]


class JobRunner:
    """Runs generation jobs in background tasks; one runner per process."""

    def __init__(
        self,
        storage: Storage,
        client: ws.WaveSpeedClient,
        *,
        poll: ws.PollPolicy,
        max_jobs_per_member: int,
    ) -> None:
        self._storage = storage
        self._client = client
        self._poll = poll
        self._max_jobs = max_jobs_per_member
        self._tasks: dict[int, asyncio.Task[None]] = {}

    async def start(
        self,
        owner: JobOwner,
        request: GenerationRequest,
        delivery: Delivery,
        uploads: Mapping[str, MediaFile] | None = None,
    ) -> JobRecord:
        """Reserve the price, then upload, submit and follow the job in the background.

        Raises BudgetExceeded or TooManyJobs before anything is written or sent. `uploads` maps
        "image"/"audio" to files that replace those fields' URLs once uploaded to WaveSpeed.
        """
        job = await self._storage.reserve(
            owner, request.model_dump_json(), request.price_micro, self._max_jobs
        )
        self._spawn(job.id, self._submit_and_follow(job, request, delivery, uploads or {}))
        return job

    async def resume(
        self, delivery_for: DeliveryFactory, *, include: Callable[[JobRecord], bool]
    ) -> int:
        """Pick up the unfinished jobs that `include` accepts and this runner is not already
        following; return how many. The bot and the CLI each resume only their own jobs.

        Calling it again while jobs run is harmless: a job is never followed twice.
        """
        jobs = [
            job
            for job in await self._storage.unfinished_jobs()
            if include(job) and job.id not in self._tasks
        ]
        for job in jobs:
            self._spawn(job.id, self._resume_one(job.id, delivery_for(job)))
        return len(jobs)

    async def wait_all(self) -> None:
        """Wait until every job this runner follows has ended."""
        while self._tasks:
            await asyncio.gather(*map(asyncio.shield, self._tasks.values()))

    async def wait(self, job_id: int) -> None:
        """Wait until a job's background work has ended (delivered or failed)."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        """Stop following jobs without changing their state; `resume` picks them up later."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, job_id: int, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(_logged(job_id, work), name=f"wanbot-job-{job_id}")
        self._tasks[job_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            # Only this task: a later resume may already follow the job in a new one.
            if self._tasks.get(job_id) is done:
                del self._tasks[job_id]

        task.add_done_callback(forget)

    async def _resume_one(self, job_id: int, delivery: Delivery) -> None:
        # Read the job again: the list `resume` worked from may predate the end of a task that
        # was following it (which then delivered it, or left it for this resume to finish).
        job = await self._storage.get_job(job_id)
        if job is None:
            return
        match job.status:
            case JobStatus.RESERVED:
                await self._fail(
                    job, delivery, JobFailure(FailureKind.INTERRUPTED, INTERRUPTED_MESSAGE)
                )
            case JobStatus.SUBMITTING:
                failure = JobFailure(FailureKind.UNCONFIRMED, UNCONFIRMED_MESSAGE)
                await self._fail(job, delivery, failure, keep_charge=True)
            case JobStatus.SUBMITTED | JobStatus.COMPLETED:
                await self._guard(job, delivery, self._follow(job, delivery))
            case JobStatus.FAILED:
                failure = failure_from_record(job.error_code, job.error_message or "")
                await self._tell_failure(job, delivery, failure)

    async def _submit_and_follow(
        self,
        job: JobRecord,
        request: GenerationRequest,
        delivery: Delivery,
        uploads: Mapping[str, MediaFile],
    ) -> None:
        async def submit_then_follow() -> None:
            await self._report(job, delivery, Stage.UPLOADING)
            final = await self._upload(request, uploads)
            await self._storage.mark_submitting(job.id, final.model_dump_json())
            prediction = await self._client.submit(final.to_api_body())
            await self._storage.mark_submitted(job.id, prediction.id)
            await self._follow(await self._reload(job), delivery)

        await self._guard(job, delivery, submit_then_follow())

    async def _guard(
        self, job: JobRecord, delivery: Delivery, work: Coroutine[Any, Any, None]
    ) -> None:
        """Run a job's work; turn a WaveSpeed error into a settled, reported failure."""
        try:
            await work
        except ws.WaveSpeedError as error:
            log.warning("job %s failed: %s", job.id, error)
            failure = failure_from_error(error)
            await self._fail(await self._reload(job), delivery, failure, keeps_charge(error))

    async def _upload(
        self, request: GenerationRequest, uploads: Mapping[str, MediaFile]
    ) -> GenerationRequest:
        urls = {
            field: await self._client.upload(media.data, media.filename, media.content_type)
            for field, media in uploads.items()
        }
        return request.model_copy(update=urls) if urls else request

    async def _follow(self, job: JobRecord, delivery: Delivery) -> None:
        """Poll a submitted job to the end, charge it, download and deliver the video."""
        assert job.prediction_id is not None

        last_status = job.wavespeed_status

        async def on_update(prediction: ws.Prediction) -> None:
            nonlocal last_status
            if prediction.status != last_status:
                last_status = prediction.status
                await self._storage.set_wavespeed_status(job.id, prediction.status)
            stage = STAGE_OF_STATUS.get(prediction.status)
            if stage is not None:
                await self._report(job, delivery, stage)

        if job.status is JobStatus.COMPLETED:
            prediction = await self._completed_result(job)
        else:
            prediction = await self._client.wait_for_result(
                job.prediction_id, self._poll, on_update=on_update
            )
            await self._storage.charge(
                job.id,
                output_url=prediction.outputs[0] if prediction.outputs else None,
                has_nsfw=prediction.nsfw,
                inference_ms=prediction.inference_ms,
            )
        job = await self._reload(job)
        await self._report(job, delivery, Stage.DOWNLOADING)
        video = await self._download(job, prediction)
        message_id = await delivery.completed(job, video)
        await self._storage.mark_delivered(job.id, message_id)

    async def _completed_result(self, job: JobRecord) -> ws.Prediction:
        """The result of a job charged before a restart: fetched again (its link may have been
        renewed), else rebuilt from the stored output URL. The member paid for this video."""
        assert job.prediction_id is not None
        try:
            return await self._client.get_result(job.prediction_id)
        except ws.WaveSpeedError as error:
            if job.output_url is None:
                raise
            log.warning("job %s: result fetch failed, using the stored link: %s", job.id, error)
            return ws.Prediction(id=job.prediction_id, status="completed", outputs=[job.output_url])

    async def _download(self, job: JobRecord, prediction: ws.Prediction) -> Video:
        url = prediction.outputs[0] if prediction.outputs else job.output_url or ""
        try:
            data: bytes | None = await self._client.download(url, max_bytes=MAX_VIDEO_BYTES)
        except ws.WaveSpeedError as error:
            log.warning("job %s: video download failed, delivering the link: %s", job.id, error)
            data = None
        return Video(
            url=url,
            data=data,
            nsfw=prediction.nsfw or job.has_nsfw,
            inference_ms=prediction.inference_ms or job.inference_ms,
            elapsed_s=_elapsed(job),
        )

    async def _fail(
        self, job: JobRecord, delivery: Delivery, failure: JobFailure, keep_charge: bool = False
    ) -> None:
        if keep_charge:
            await self._storage.charge_unconfirmed(job.id, failure.message)
        else:
            await self._storage.refund(
                job.id, error_code=failure.code, error_message=failure.message
            )
        await self._tell_failure(await self._reload(job), delivery, failure)

    async def _tell_failure(self, job: JobRecord, delivery: Delivery, failure: JobFailure) -> None:
        await delivery.failed(job, failure, refunded=job.settlement == "refund")
        await self._storage.mark_delivered(job.id, None)

    async def _report(self, job: JobRecord, delivery: Delivery, stage: Stage) -> None:
        try:
            await delivery.progress(job, Progress(stage, _elapsed(job)))
        except Exception:  # a failed progress edit must never stop the job
            log.exception("job %s: progress report failed", job.id)

    async def _reload(self, job: JobRecord) -> JobRecord:
        fresh = await self._storage.get_job(job.id)
        assert fresh is not None, f"job {job.id} vanished"
        return fresh


async def _logged(job_id: int, work: Coroutine[Any, Any, None]) -> None:
    """Run a job's work; an unexpected error is logged and the job left for the next resume."""
    try:
        await work
    except Exception:
        log.exception("job %s stopped unexpectedly; it will be resumed at the next start", job_id)


def _elapsed(job: JobRecord) -> float:
    return (datetime.now(UTC) - job.created_at).total_seconds()
