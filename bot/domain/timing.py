"""Learned timing: how long jobs of each shape wait and take, the ETA a member sees, and when to
poll so that a finished video is noticed within about a second without polling all the time.

Pure: no I/O. WaveSpeed does not publish this model's generation times (tens of seconds to a
few minutes), and they depend on the shape of the request, so they are learned per shape from
the jobs this bot ran. Until a shape has `MIN_SAMPLES` of them, polling is what it was without
history (bot.wavespeed.PollPolicy).
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from bot.domain.request import GenerationRequest

MIN_SAMPLES = 5  # fewer than this and a shape's quantiles say little
KEPT_SAMPLES = 50  # per shape: recent jobs tell the present best
DENSE_POLL_S = 1.0  # where a task usually completes
NEAR_POLL_S = 2.0  # at the edges of that window
MAX_POLL_S = 5.0  # after it, backing off to this
# The window where a task usually completes spans these quantiles of its generation time.
DENSE_FROM_Q, DENSE_TO_Q = 0.10, 0.90
NEAR_FROM_Q = 0.02


def shape_of(request: GenerationRequest) -> str:
    """What a job's timing depends on: resolution, duration, audio and shot type."""
    audio = "custom-audio" if request.audio else "audio" if request.enable_audio else "silent"
    return f"{request.resolution}/{request.duration}s/{audio}/{request.shot_type}"


@dataclass(frozen=True)
class TimingSample:
    """One finished job: seconds in the local queue, in WaveSpeed's queue, and generating."""

    shape: str
    local_wait_s: float
    queue_s: float
    generation_s: float


@dataclass(frozen=True)
class ShapeEstimate:
    """Quantiles of one shape's WaveSpeed queue and generation times (seconds)."""

    samples: int
    queue: tuple[float, ...]  # sorted observations
    generation: tuple[float, ...]

    def queue_at(self, q: float) -> float:
        return _quantile(self.queue, q)

    def generation_at(self, q: float) -> float:
        return _quantile(self.generation, q)


class TimingBook:
    """The last `KEPT_SAMPLES` timings of each shape."""

    def __init__(self, samples: Iterable[TimingSample] = ()) -> None:
        self._samples: dict[str, deque[TimingSample]] = {}
        for sample in samples:
            self.add(sample)

    def add(self, sample: TimingSample) -> None:
        kept = self._samples.setdefault(sample.shape, deque(maxlen=KEPT_SAMPLES))
        kept.append(sample)

    def estimate(self, shape: str) -> ShapeEstimate | None:
        """The shape's quantiles, or None while fewer than MIN_SAMPLES jobs of it are known."""
        kept = self._samples.get(shape, ())
        if len(kept) < MIN_SAMPLES:
            return None
        return ShapeEstimate(
            len(kept),
            tuple(sorted(sample.queue_s for sample in kept)),
            tuple(sorted(sample.generation_s for sample in kept)),
        )


class PollSchedule(Protocol):
    """When to poll a task next, given what the last poll said."""

    def next_delay(self, elapsed_s: float, status: str | None) -> float:
        """Seconds to wait before the next poll; `elapsed_s` since the submit was answered,
        `status` what the last poll said (None: no poll answered yet)."""
        ...


class FixedSchedule:
    """Polls at the given intervals, whatever the task says (no history to go by)."""

    def __init__(self, intervals: Iterator[float]) -> None:
        self._intervals = intervals

    def next_delay(self, elapsed_s: float, status: str | None) -> float:
        return next(self._intervals)


class LearnedSchedule:
    """Polls sparsely while the task cannot be done yet, every second across the window where
    tasks of its shape usually complete, and backs off after it.

    While WaveSpeed queues the task ("created"), polls come every few seconds (the square root
    of the queue time still expected: fewer polls cost a wider window later). Once a poll says
    "processing", generation began between that poll and the one before: the window is that
    start plus the 10th..90th percentiles of generation time, polled each second, with polls
    every two seconds just before it and at growing intervals after it.
    """

    def __init__(self, estimate: ShapeEstimate, *, jitter: random.Random | None = None) -> None:
        self._estimate = estimate
        self._random = jitter or random.Random()
        # When the last two polls were sent (elapsed; 0 = the submit itself).
        self._sent_before_s = self._sent_s = 0.0
        self._start_lo: float | None = None  # generation began after this…
        self._start_hi: float | None = None  # …and before this
        self._late_interval = DENSE_POLL_S

    def next_delay(self, elapsed_s: float, status: str | None) -> float:
        if status == "processing" and self._start_hi is None:
            # the poll just answered saw it generating; the one before still saw it queued
            self._start_lo, self._start_hi = self._sent_before_s, self._sent_s
        delay = self._delay(elapsed_s)
        self._sent_before_s, self._sent_s = self._sent_s, elapsed_s + delay
        return delay

    @property
    def started_s(self) -> float | None:
        """Midway between the polls that saw the task queued and generating, once seen."""
        if self._start_lo is None or self._start_hi is None:
            return None
        return (self._start_lo + self._start_hi) / 2

    def _delay(self, elapsed_s: float) -> float:
        if self._start_lo is None or self._start_hi is None:
            return self._while_queued(elapsed_s)
        estimate = self._estimate
        near_from = self._start_lo + estimate.generation_at(NEAR_FROM_Q)
        dense_from = self._start_lo + estimate.generation_at(DENSE_FROM_Q)
        dense_to = self._start_hi + estimate.generation_at(DENSE_TO_Q)
        if elapsed_s + NEAR_POLL_S <= near_from:
            return near_from - elapsed_s  # cannot be done before: one wait, no polls
        if elapsed_s < dense_from:
            return min(NEAR_POLL_S, max(DENSE_POLL_S, dense_from - elapsed_s))
        if elapsed_s < dense_to:
            return DENSE_POLL_S
        self._late_interval = min(MAX_POLL_S, self._late_interval * 1.5)
        return self._late_interval * self._random.uniform(0.9, 1.1)

    def _while_queued(self, elapsed_s: float) -> float:
        expected = max(0.0, self._estimate.queue_at(0.5) - elapsed_s)
        interval = min(MAX_POLL_S, max(NEAR_POLL_S, math.sqrt(expected)))
        return interval * self._random.uniform(0.9, 1.1)


def eta_s(
    estimate: ShapeEstimate | None, elapsed_s: float, status: str | None, started_s: float | None
) -> float | None:
    """Seconds the task probably still needs (median times), or None without history.

    `elapsed_s` since the submit, `started_s` when generation was first seen (or None)."""
    if estimate is None:
        return None
    generation = estimate.generation_at(0.5)
    if status == "processing" and started_s is not None:
        return max(0.0, started_s + generation - elapsed_s)
    return max(0.0, estimate.queue_at(0.5) - elapsed_s) + generation


def _quantile(ordered: tuple[float, ...], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
