"""What wanbot reports to Prometheus, on a registry of each bot's own.

Two kinds of figures. Read from the database at each scrape: jobs by state, the queue's depth
and each server's spend in the current period. Counted in the process as things happen: the time
from a job's creation to its delivery, and WaveSpeed errors by kind, through the module-level
hooks `observe_delivery` and `count_wavespeed_error`. A hook feeds every `BotMetrics` open in the
process (normally one, that of the bot); with none open it does nothing, so the code that calls
it needs nothing set up.

Each `BotMetrics` has its own `CollectorRegistry` rather than prometheus_client's global one, so
several bots (and tests) in one process never register the same name twice. The text format is
Prometheus' (prometheus.io/docs/instrumenting/exposition_formats).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from bot.domain.lifecycle import JobState

if TYPE_CHECKING:
    from storage.base import Storage

log = logging.getLogger(__name__)

QUEUED = "queued"  # the state of jobs waiting for their turn to be submitted
MICRO_PER_USD = 1_000_000
# Seconds from /video to the posted video: most take one to a few minutes, a queue adds more.
DELIVERY_BUCKETS_S = (10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1800.0)
STORE_READ_TIMEOUT_S = 10.0
_COUNTED = "_wanbot_counted"  # set on an error once counted

_open: weakref.WeakSet[BotMetrics] = weakref.WeakSet()


def observe_delivery(seconds: float) -> None:
    """Count one delivered job, `seconds` after it was created (the job runner calls this when
    it records the delivery)."""
    for metrics in list(_open):
        metrics.delivery.observe(seconds)


def count_wavespeed_error(error: BaseException) -> None:
    """Count one error raised by a WaveSpeed call, labelled with its class name (RateLimited,
    TransientError, AuthError, SubmitUncertain, ...). An error that passes through two counted
    calls (find_tasks reading history) is counted once."""
    if getattr(error, _COUNTED, False):
        return
    setattr(error, _COUNTED, True)
    for metrics in list(_open):
        metrics.wavespeed_errors.labels(kind=type(error).__name__).inc()


class BotMetrics:
    """One bot's registry: the database's figures, read at each `render`, and what the hooks
    count while it is open. `close` stops the counting."""

    def __init__(self, storage: Storage, *, read_timeout_s: float = STORE_READ_TIMEOUT_S) -> None:
        self.registry = CollectorRegistry()
        self.delivery = Histogram(
            "wanbot_delivery_seconds",
            "Seconds from a job's creation to the delivery of its video.",
            buckets=DELIVERY_BUCKETS_S,
            registry=self.registry,
        )
        self.wavespeed_errors = Counter(
            "wanbot_wavespeed_errors",
            "Errors raised by WaveSpeed calls, by error class.",
            ["kind"],
            registry=self.registry,
        )
        self._store = _StoreFigures()
        self.registry.register(self._store)
        ProcessCollector(registry=self.registry)  # memory, CPU, open files (Linux)
        self._storage = storage
        self._read_timeout_s = read_timeout_s
        self._scrape = asyncio.Lock()
        _open.add(self)

    def close(self) -> None:
        """Stop counting what the hooks report."""
        _open.discard(self)

    async def render(self) -> bytes:
        """Every figure in Prometheus' text format, the database's read now. If the database
        does not answer, `wanbot_database_up` says 0 and its figures are left out."""
        async with self._scrape:  # one scrape's figures at a time
            try:
                async with asyncio.timeout(self._read_timeout_s):
                    counts = await self._storage.job_counts()
                    spend = await self._storage.spend_by_guild()
            except Exception as error:  # whatever the store raises: report it as down
                log.warning("metrics: the database did not answer (%s)", type(error).__name__)
                self._store.set(None, {})
            else:
                self._store.set(counts, spend)
            return generate_latest(self.registry)


class _StoreFigures(Collector):
    """The database's figures of the current scrape, as metric families."""

    def __init__(self) -> None:
        self._counts: dict[str, int] | None = None
        self._spend: dict[int, int] = {}

    def set(self, counts: dict[str, int] | None, spend: dict[int, int]) -> None:
        """The figures the next collection reports; None: the database did not answer."""
        self._counts, self._spend = counts, spend

    def describe(self) -> Iterable[Metric]:
        """The families' names, so the registry refuses a clash without reading the store."""
        return _families({}, {})

    def collect(self) -> Iterable[Metric]:
        if self._counts is None:
            return [_database_up(False)]
        return _families(self._counts, self._spend)


def _database_up(answered: bool) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "wanbot_database_up",
        "1 if the database answered this scrape's reads, else 0.",
        value=1 if answered else 0,
    )


def _families(counts: dict[str, int], spend: dict[int, int]) -> list[Metric]:
    """The database's figures as metric families."""
    jobs = GaugeMetricFamily("wanbot_jobs", "Jobs in each state.", labels=["state"])
    # every known state, at 0 when no job is in it, so a state's series never vanishes
    for state in sorted({*(state.value for state in JobState), *counts}):
        jobs.add_metric([state], counts.get(state, 0))
    queue = GaugeMetricFamily(
        "wanbot_queue_depth",
        f"Jobs waiting in state {QUEUED!r} for their turn to be submitted.",
        value=counts.get(QUEUED, 0),
    )
    servers = GaugeMetricFamily(
        "wanbot_server_spend_usd",
        "What each server was charged in the current budget period, in US dollars.",
        labels=["guild_id"],
    )
    for guild_id, micro in sorted(spend.items()):
        servers.add_metric([str(guild_id)], micro / MICRO_PER_USD)
    return [_database_up(True), jobs, queue, servers]
