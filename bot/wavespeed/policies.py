"""How long to wait: retry backoff, poll intervals, per-request timeouts and Retry-After.

The default timeouts are the official Python SDK's (`wavespeed` 2.x on PyPI): connect 10 s,
read 30 s, submit 60 s, upload 120 s.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter for retryable requests.

    A Retry-After hint is honoured as is, up to `max_retry_after_s`; a longer one ends the retries
    at once (RateLimited carries the hint so the caller can come back later).
    """

    attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0
    max_retry_after_s: float = 60.0

    def backoff(self, retry: int) -> float:
        """Pause before retry number `retry` (1-based): uniform in [0, min(cap, base·2^(n-1))]."""
        return random.uniform(0.0, min(self.max_delay_s, self.base_delay_s * 2 ** (retry - 1)))


@dataclass(frozen=True)
class PollPolicy:
    """Adaptive polling: first check after `first_delay_s`, then ×`factor` up to the cap."""

    first_delay_s: float = 3.0
    factor: float = 1.5
    max_interval_s: float = 5.0  # a finished video is noticed ~2.5 s late on average (bench/)
    timeout_s: float = 1800.0

    def intervals(self) -> Iterator[float]:
        """The pauses before each poll, forever."""
        interval = self.first_delay_s
        while True:
            yield min(interval, self.max_interval_s)
            interval *= self.factor


@dataclass(frozen=True)
class Timeouts:
    """Per-request time limits in seconds (the official SDK's, plus one for downloads)."""

    connect_s: float = 10.0
    read_s: float = 30.0
    submit_s: float = 60.0
    upload_s: float = 120.0
    download_s: float = 300.0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if unusable."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
