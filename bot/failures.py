"""What a WaveSpeed error means for a job: which failure the member is told of."""

from __future__ import annotations

import re

from bot import wavespeed as ws
from bot.domain.lifecycle import FailureKind
from bot.domain.outcomes import JobFailure, failure, worded_failure

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
            key = "failure.bad_input_link" if code == 1402 else "failure.bad_input"
            return worded_failure(FailureKind.BAD_INPUT, key, code)
        case ws.TaskFailed(code=code):
            reason = _without_code(error.message, code).rstrip(".")
            key = "failure.generation_failed" + ("" if reason else "_unexplained")
            key += "_temporary" if error.retryable else ""
            return worded_failure(FailureKind.GENERATION_FAILED, key, code, reason=reason)
        case ws.RejectedInput():
            return worded_failure(FailureKind.BAD_INPUT, "failure.rejected", detail=str(error))
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
