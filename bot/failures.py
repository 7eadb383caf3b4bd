"""What a WaveSpeed error means for a job: which failure the member is told of."""

from __future__ import annotations

import re

from bot import wavespeed as ws
from bot.domain.lifecycle import FailureKind
from bot.domain.outcomes import REJECTED_PREFIX, TEMPORARY_ADVICE, JobFailure, failure

INPUT_CODES = {1400, 1401, 1402}
# Task codes WaveSpeed's error-code page marks as temporary: internal error, unavailable, timeout.
TEMPORARY_CODES = frozenset({5000, 5003, 5004})


def is_temporary(error: ws.TaskFailed) -> bool:
    """Whether a failed task is worth submitting again as it is."""
    return error.code in TEMPORARY_CODES


def failure_from_error(error: ws.WaveSpeedError) -> JobFailure:
    """Classify a WaveSpeed error (other than an unanswered submit) into a job failure."""
    match error:
        case ws.TaskFailed(code=1200):
            return failure(FailureKind.MODERATION, 1200)
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
            return failure(FailureKind.OUT_OF_CREDIT)
        case ws.AuthError():
            return failure(FailureKind.BAD_API_KEY)
        case ws.PollTimeout():
            return failure(FailureKind.TIMED_OUT)
        case _:
            return failure(FailureKind.WAVESPEED_DOWN)


def _without_code(text: str, code: int | None) -> str:
    """A task's error text without the code it leads with ("5000: Internal error" → the rest)."""
    if code is None:
        return text.strip()
    return re.sub(rf"^\W*{code}\b\W*", "", text).strip()
