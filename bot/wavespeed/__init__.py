"""WaveSpeedAI client for Wan 2.6 Image-to-Video Flash: submit, poll, upload, download, history.

The API is the one WaveSpeed's public docs describe (wavespeed.ai/docs). Modules: `errors` (the
WaveSpeedError hierarchy), `models` (Prediction, timestamps and task error codes), `policies`
(retries, polling, timeouts) and `client` (WaveSpeedClient and its request machinery). Import
from `bot.wavespeed` itself.
"""

from __future__ import annotations

from bot.wavespeed.client import (
    CLIENT_NAME,
    DEFAULT_BASE_URL,
    HISTORY_MAX_PAGE_SIZE,
    HISTORY_RETENTION,
    MODEL_ID,
    RETRYABLE_HTTP,
    WaveSpeedClient,
)
from bot.wavespeed.errors import (
    TASK_CODE_RETRIES,
    AuthError,
    NotFound,
    OutOfCredit,
    PollTimeout,
    RateLimited,
    RejectedInput,
    SubmitUncertain,
    TaskFailed,
    TooLarge,
    TransientError,
    WaveSpeedError,
)
from bot.wavespeed.models import (
    FINAL_STATUSES,
    KNOWN_STATUSES,
    Prediction,
    parse_task_code,
    parse_timestamp,
)
from bot.wavespeed.policies import PollPolicy, RetryPolicy, Timeouts, parse_retry_after

__all__ = [
    "CLIENT_NAME",
    "DEFAULT_BASE_URL",
    "FINAL_STATUSES",
    "HISTORY_MAX_PAGE_SIZE",
    "HISTORY_RETENTION",
    "KNOWN_STATUSES",
    "MODEL_ID",
    "RETRYABLE_HTTP",
    "TASK_CODE_RETRIES",
    "AuthError",
    "NotFound",
    "OutOfCredit",
    "PollPolicy",
    "PollTimeout",
    "Prediction",
    "RateLimited",
    "RejectedInput",
    "RetryPolicy",
    "SubmitUncertain",
    "TaskFailed",
    "Timeouts",
    "TooLarge",
    "TransientError",
    "WaveSpeedClient",
    "WaveSpeedError",
    "parse_retry_after",
    "parse_task_code",
    "parse_timestamp",
]
