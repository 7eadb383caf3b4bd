"""The local queue's dispatcher: admits queued jobs in fair order within the account's limits.

One per JobRunner. Jobs this runner follows wait in `turn()`; while any does, the dispatcher
reads the queue from the database (every process's jobs: the account's limits are shared),
orders it (bot.domain.queue.fair_order) and admits, one transaction each, those of its own
jobs that come first and fit (Storage.admit, which counts the limits again under a lock, so
processes never pass them together). It looks again when something changes here — a job
queued or leaving WaveSpeed — and at least every `tick_s`, for other processes' changes and
the per-minute window sliding on. A waiting job is told its position whenever it changes.

A 429 on a submit means WaveSpeed counts the account's pace differently from us (another
program sharing the key, a lower tier than configured): the job goes back to the queue and the
pace halves for a while, recovering one step per quiet window (a minute).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from bot.domain.job import JobRecord
from bot.domain.queue import QueueLimits, fair_order, free_slots
from storage.base import Storage

log = logging.getLogger(__name__)

PositionReport = Callable[[int], Awaitable[None]]  # how many jobs are ahead

DEFAULT_TICK_S = 1.0
DEFAULT_PAUSE_S = 10.0  # after a 429 without Retry-After


@dataclass
class _Waiter:
    admitted: asyncio.Future[JobRecord | None]
    report: PositionReport
    ahead: int | None = None


@dataclass
class Pace:
    """The per-minute limit in force: lowered after a 429, raised back step by step."""

    limits: QueueLimits
    per_minute: int = field(init=False)
    paused_until: float = 0.0
    recovers_at: float = 0.0

    def __post_init__(self) -> None:
        self.per_minute = self.limits.max_per_minute

    def effective(self, now: float) -> QueueLimits | None:
        """The limits to admit under now; None while paused after a 429."""
        if now < self.paused_until:
            return None
        while self.per_minute < self.limits.max_per_minute and now >= self.recovers_at:
            self.per_minute += 1
            self.recovers_at += self.limits.window_s
        return replace(self.limits, max_per_minute=self.per_minute)

    def slow_down(self, now: float, retry_after_s: float | None) -> None:
        self.per_minute = max(1, self.per_minute // 2)
        self.paused_until = now + (retry_after_s if retry_after_s is not None else DEFAULT_PAUSE_S)
        self.recovers_at = self.paused_until + self.limits.window_s


class Dispatcher:
    """Admits this runner's queued jobs in fair order, within the account's limits."""

    def __init__(
        self,
        storage: Storage,
        owner_id: str,
        limits: QueueLimits,
        *,
        tick_s: float = DEFAULT_TICK_S,
    ) -> None:
        self._storage = storage
        self._owner_id = owner_id
        self._pace = Pace(limits)
        self._tick_s = tick_s
        self._waiters: dict[int, _Waiter] = {}
        self._changed = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._reports: set[asyncio.Task[None]] = set()

    @property
    def limits(self) -> QueueLimits:
        return self._pace.limits

    async def turn(self, job_id: int, report: PositionReport) -> JobRecord | None:
        """Wait for the queued job's turn: the job moved to `submitting` (its submit may go),
        or None once it is no longer queued here (cancelled, or taken over by another
        process). `report` hears the number of jobs ahead whenever it changes."""
        admitted: asyncio.Future[JobRecord | None] = asyncio.get_running_loop().create_future()
        self._waiters[job_id] = _Waiter(admitted, report)
        self.poke()
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._dispatch(), name="wanbot-queue")
        try:
            return await admitted
        finally:
            self._waiters.pop(job_id, None)

    def poke(self) -> None:
        """Something changed here (a job queued, or one left WaveSpeed): look again now."""
        self._changed.set()

    def rate_limited(self, retry_after_s: float | None) -> None:
        """WaveSpeed refused a submit with 429: pause, then go on at a slower pace."""
        loop = asyncio.get_running_loop()
        self._pace.slow_down(loop.time(), retry_after_s)
        log.warning(
            "WaveSpeed rate-limited a submit: pausing submits, then at most %d a minute",
            self._pace.per_minute,
        )

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None

    async def _dispatch(self) -> None:
        while self._waiters:
            self._changed.clear()
            try:
                await self._round()
            except Exception:
                log.exception("the local queue could not be read; trying again")
            if not self._waiters:
                return
            try:
                async with asyncio.timeout(self._tick_s):
                    await self._changed.wait()
            except TimeoutError:
                pass

    async def _round(self) -> None:
        """Read the queue, admit what may go, and tell every waiting job its position."""
        snapshot = await self._storage.queue_snapshot(self._pace.limits.window_s)
        order = fair_order(snapshot)
        queued = set(order)
        for job_id, waiter in list(self._waiters.items()):
            if job_id not in queued and not waiter.admitted.done():
                waiter.admitted.set_result(None)  # cancelled, or no longer this runner's
        limits = self._pace.effective(asyncio.get_running_loop().time())
        slots = 0 if limits is None else free_slots(snapshot, limits)
        for position, job_id in enumerate(order):
            waiter = self._waiters.get(job_id)
            if waiter is None or waiter.admitted.done():
                continue
            if position < slots and limits is not None:
                # SQLite admits without suspending: give the loop a turn between admissions,
                # or a burst of thousands would hold it for seconds
                await asyncio.sleep(0)
                job = await self._storage.admit(job_id, self._owner_id, limits)
                if job is not None:
                    waiter.admitted.set_result(job)
                    continue
                slots = 0  # another process took the room first: the rest wait
            if waiter.ahead != position:
                waiter.ahead = position
                # in the background: a slow status edit must not hold up the queue
                task = asyncio.create_task(_quietly(waiter.report(position)))
                self._reports.add(task)
                task.add_done_callback(self._reports.discard)


async def _quietly(report: Awaitable[None]) -> None:
    try:
        await report
    except Exception:
        log.exception("a queue position could not be shown")
