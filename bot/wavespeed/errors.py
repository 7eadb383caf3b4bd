"""The WaveSpeedError hierarchy: every error the client raises, and what each one means."""

from __future__ import annotations

# How many times the job runner may resubmit after a task error code (0 = never). The codes are
# WaveSpeed's (wavespeed.ai/docs/error-codes, which says to try 5xxx ones again later).
# 1403/1405 "task execution failed": maybe once. 5000/5003/5004 internal/unavailable/timeout: yes.
TASK_CODE_RETRIES: dict[int, int] = {1403: 1, 1405: 1, 5000: 3, 5003: 3, 5004: 3}


class WaveSpeedError(Exception):
    """Base of every client error. `str(exc)` is a safe human message; it never holds the key."""

    default_retryable = False

    def __init__(
        self, message: str, *, retryable: bool | None = None, http_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = self.default_retryable if retryable is None else retryable
        self.http_status = http_status


class AuthError(WaveSpeedError):
    """401/403: the API key is missing, wrong or revoked."""


class OutOfCredit(WaveSpeedError):
    """The WaveSpeed account cannot pay for the task (402, or a 4xx about balance/credit)."""


class RateLimited(WaveSpeedError):
    """429 after every allowed retry; `retry_after` is the server's hint in seconds, if any."""

    default_retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, http_status=429)
        self.retry_after = retry_after


class TransientError(WaveSpeedError):
    """5xx, timeouts or connection errors after every allowed retry; trying later may work."""

    default_retryable = True


class RejectedInput(WaveSpeedError):
    """The API refused the request (400 validation error and other 4xx); `code` is the status."""

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message, http_status=code)
        self.code = code


class NotFound(RejectedInput):
    """404: the prediction (or model) does not exist, e.g. a task that has expired."""


class SubmitUncertain(WaveSpeedError):
    """The submit may have been accepted (and billed) although no answer said so. Never retried."""


class TaskFailed(WaveSpeedError):
    """The task ended without a video: status failed/cancelled/timeout/deleted.

    `code` is the numeric task error code (1200 moderation, 14xx input, 5xxx internal) when known;
    `max_retries` is how many resubmissions the code deserves (see TASK_CODE_RETRIES).
    """

    def __init__(
        self, prediction_id: str, status: str, code: int | None, message: str | None
    ) -> None:
        self.prediction_id = prediction_id
        self.status = status
        self.code = code
        self.message = message or ""
        self.max_retries = TASK_CODE_RETRIES.get(code, 0) if code is not None else 0
        label = f"code {code}" if code is not None else f"status {status}"
        detail = f": {self.message}" if self.message else ""
        super().__init__(
            f"The WaveSpeed task {status} ({label}){detail}", retryable=self.max_retries > 0
        )


class PollTimeout(WaveSpeedError):
    """The task was not final when the poll policy's timeout ran out; it may still finish."""

    def __init__(self, prediction_id: str, last_status: str | None, waited_s: float) -> None:
        self.prediction_id = prediction_id
        self.last_status = last_status
        super().__init__(
            f"The WaveSpeed task was still {last_status or 'unknown'} after {waited_s:.0f} s"
        )


class TooLarge(WaveSpeedError):
    """A download is bigger than the caller's `max_bytes`; `size` is what was known of it."""

    def __init__(self, size: int, max_bytes: int) -> None:
        self.size = size
        self.max_bytes = max_bytes
        super().__init__(f"The response is larger than {max_bytes} bytes")
