"""What a member is told when a job fails, and whether the money came back. Pure: no I/O."""

from __future__ import annotations

import re
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

UNCONFIRMED_MESSAGE = (
    "WaveSpeed did not confirm the submission, so it was not sent again (that could bill twice). "
    "The price stays charged in case WaveSpeed ran it; a server admin can grant it back."
)
INTERRUPTED_MESSAGE = "The bot restarted before your request was sent to WaveSpeed."
MODERATION_MESSAGE = "WaveSpeed's content filter refused this image or prompt."
OUT_OF_CREDIT_MESSAGE = (
    "The server's WaveSpeed account is out of credit; the admins have been told."
)
BAD_API_KEY_MESSAGE = "The bot's WaveSpeed API key was refused; the admins have been told."
TIMED_OUT_MESSAGE = "WaveSpeed took too long to finish the video."
WAVESPEED_DOWN_MESSAGE = "WaveSpeed is not answering right now. Please try again in a few minutes."
REJECTED_PREFIX = "WaveSpeed rejected the request: "
TEMPORARY_ADVICE = "This is usually temporary: try again in a minute."

# The fixed messages name their kind, so a failure can be rebuilt from a stored job.
_KIND_OF_MESSAGE = {
    INTERRUPTED_MESSAGE: FailureKind.INTERRUPTED,
    UNCONFIRMED_MESSAGE: FailureKind.UNCONFIRMED,
    MODERATION_MESSAGE: FailureKind.MODERATION,
    OUT_OF_CREDIT_MESSAGE: FailureKind.OUT_OF_CREDIT,
    BAD_API_KEY_MESSAGE: FailureKind.BAD_API_KEY,
    TIMED_OUT_MESSAGE: FailureKind.TIMED_OUT,
    WAVESPEED_DOWN_MESSAGE: FailureKind.WAVESPEED_DOWN,
}


def failure_from_error(error: ws.WaveSpeedError) -> JobFailure:
    """Classify a WaveSpeed error into what the member is told."""
    match error:
        case ws.TaskFailed(code=1200):
            return JobFailure(FailureKind.MODERATION, MODERATION_MESSAGE, 1200)
        case ws.TaskFailed(code=code) if code in INPUT_CODES:
            detail = " (the image link could not be fetched)" if code == 1402 else ""
            return JobFailure(
                FailureKind.BAD_INPUT, f"WaveSpeed could not use the inputs{detail}.", code
            )
        case ws.TaskFailed(code=code):
            reason = _without_code(error.message, code).rstrip(".") or "no reason given"
            advice = f" {TEMPORARY_ADVICE}" if error.retryable else ""
            return JobFailure(
                FailureKind.GENERATION_FAILED,
                f"The generation failed at WaveSpeed: {reason}.{advice}",
                code,
            )
        case ws.RejectedInput():
            return JobFailure(FailureKind.BAD_INPUT, f"{REJECTED_PREFIX}{error}")
        case ws.OutOfCredit():
            return JobFailure(FailureKind.OUT_OF_CREDIT, OUT_OF_CREDIT_MESSAGE)
        case ws.AuthError():
            return JobFailure(FailureKind.BAD_API_KEY, BAD_API_KEY_MESSAGE)
        case ws.PollTimeout():
            return JobFailure(FailureKind.TIMED_OUT, TIMED_OUT_MESSAGE)
        case ws.SubmitUncertain():
            return JobFailure(FailureKind.UNCONFIRMED, UNCONFIRMED_MESSAGE)
        case _:
            return JobFailure(FailureKind.WAVESPEED_DOWN, WAVESPEED_DOWN_MESSAGE)


def failure_from_record(code: int | None, message: str) -> JobFailure:
    """Rebuild the failure of a settled job from its stored code and message (after a restart,
    when the member was not told yet), so its kind (and whether admins hear of it) survives."""
    kind = _KIND_OF_MESSAGE.get(message)
    if kind is None:
        if code == 1200:
            kind = FailureKind.MODERATION
        elif code in INPUT_CODES or message.startswith(REJECTED_PREFIX):
            kind = FailureKind.BAD_INPUT
        else:
            kind = FailureKind.GENERATION_FAILED
    return JobFailure(kind, message, code)


def _without_code(text: str, code: int | None) -> str:
    """A task's error text without the code it leads with ("5000: Internal error" → the rest)."""
    if code is None:
        return text.strip()
    return re.sub(rf"^\W*{code}\b\W*", "", text).strip()


def keeps_charge(error: ws.WaveSpeedError) -> bool:
    """True when WaveSpeed may bill the task although we got no video.

    An unconfirmed submit may have created the task; a task that timed out while `processing`
    was running on WaveSpeed's GPUs. A task still queued (`created`) when it timed out is refunded.
    """
    if isinstance(error, ws.SubmitUncertain):
        return True
    return isinstance(error, ws.PollTimeout) and error.last_status == "processing"
