"""What a member is told when a job fails, and whether the money came back. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot import wavespeed as ws


class FailureKind(StrEnum):
    """Why a job ended without a video."""

    MODERATION = "moderation"
    BAD_INPUT = "bad_input"
    WAVESPEED_DOWN = "wavespeed_down"
    OUT_OF_CREDIT = "out_of_credit"
    BAD_API_KEY = "bad_api_key"
    TIMED_OUT = "timed_out"
    UNCONFIRMED = "unconfirmed"
    GENERATION_FAILED = "generation_failed"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class JobFailure:
    """A failed job as the member sees it."""

    kind: FailureKind
    message: str
    code: int | None = None

    @property
    def tells_admins(self) -> bool:
        """Failures only a server admin can fix."""
        return self.kind in (FailureKind.OUT_OF_CREDIT, FailureKind.BAD_API_KEY)


INPUT_CODES = {1400, 1401, 1402}
RETRYABLE_TASK_CODES = {1403, 1405, 5000, 5003, 5004}

UNCONFIRMED_MESSAGE = (
    "WaveSpeed did not confirm the submission, so it was not sent again (that could bill twice). "
    "The price stays charged in case WaveSpeed ran it; a server admin can grant it back."
)
INTERRUPTED_MESSAGE = "The bot restarted before your request was sent to WaveSpeed."


def failure_from_error(error: ws.WaveSpeedError) -> JobFailure:
    """Classify a WaveSpeed error into what the member is told."""
    match error:
        case ws.TaskFailed(code=1200):
            return JobFailure(
                FailureKind.MODERATION,
                "WaveSpeed's content filter refused this image or prompt.",
                1200,
            )
        case ws.TaskFailed(code=code) if code in INPUT_CODES:
            detail = " (the image link could not be fetched)" if code == 1402 else ""
            return JobFailure(
                FailureKind.BAD_INPUT, f"WaveSpeed could not use the inputs{detail}.", code
            )
        case ws.TaskFailed(code=code):
            return JobFailure(
                FailureKind.GENERATION_FAILED,
                f"The generation failed at WaveSpeed: {error.message or 'no reason given'}.",
                code,
            )
        case ws.RejectedInput():
            return JobFailure(FailureKind.BAD_INPUT, f"WaveSpeed rejected the request: {error}")
        case ws.OutOfCredit():
            return JobFailure(
                FailureKind.OUT_OF_CREDIT,
                "The server's WaveSpeed account is out of credit; the admins have been told.",
            )
        case ws.AuthError():
            return JobFailure(
                FailureKind.BAD_API_KEY,
                "The bot's WaveSpeed API key was refused; the admins have been told.",
            )
        case ws.PollTimeout():
            return JobFailure(FailureKind.TIMED_OUT, "WaveSpeed took too long to finish the video.")
        case ws.SubmitUncertain():
            return JobFailure(FailureKind.UNCONFIRMED, UNCONFIRMED_MESSAGE)
        case _:
            return JobFailure(
                FailureKind.WAVESPEED_DOWN,
                "WaveSpeed is not answering right now. Please try again in a few minutes.",
            )


def keeps_charge(error: ws.WaveSpeedError) -> bool:
    """True when WaveSpeed may bill the task although we got no video.

    An unconfirmed submit may have created the task; a task that timed out while `processing`
    was running on WaveSpeed's GPUs. A task still queued (`created`) when it timed out is refunded.
    """
    if isinstance(error, ws.SubmitUncertain):
        return True
    return isinstance(error, ws.PollTimeout) and error.last_status == "processing"
