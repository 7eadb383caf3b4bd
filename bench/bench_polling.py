"""GET requests per job and notice delay: wanbot's polling, cold and warm, vs fixed pollers.

The job model (durations in simulated seconds): each job waits in WaveSpeed's queue for a time
drawn uniformly from 0–`--max-queue` s (status "created"), then generates (status
"processing") for its shape's median × exp(N(0, `--sigma`)), a lognormal noise of σ≈0.1; the
shapes' medians default to 40, 90 and 170 s. WaveSpeed publishes no generation times for this
model; these are assumptions, stated in docs/PERFORMANCE.md.

In every trial the same jobs (same shape, queue and generation times, and start offsets) are
followed by each strategy, all at once, on one in-process FakeWaveSpeed, through the real
WaveSpeedClient.wait_for_result:

- `sdk: fixed 1 s` (baseline): the official SDK's strategy, a poll every second;
- `fixed 5 s`: a poll every five seconds;
- `earlier default`: PollPolicy()'s intervals as they are (3 s, ×1.5, capped at 5 s);
- `wanbot cold`: what the runner does without history: FixedSchedule over PollPolicy()'s
  intervals, each ±10 % at random;
- `wanbot warm`: LearnedSchedule from a TimingBook holding `--history` earlier jobs of the same
  shape, drawn from the same distribution (fresh for each trial).

Time is compressed: one simulated second lasts `--scale` real seconds. The fake's queue and
processing times are multiplied by it, and every schedule runs unchanged in simulated time: a
wrapper hands it the elapsed real time divided by `scale` and multiplies the pause it answers
by `scale`. What compression distorts is the per-poll overhead (loopback round trip and event
loop delay, a few real ms), which is stretched by 1/scale in simulated time.

"notice delay" is from the moment the fake records a task completed to the arrival at the fake
of the poll that saw it, in simulated seconds. Each statistic is computed per trial, and the
table shows its median over the trials.

    python bench/bench_polling.py [--trials 5] [--jobs 8] [--scale 0.1] [--history 30]
                                  [--shapes 40 90 170] [--max-queue 15] [--sigma 0.1] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import random
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from aiohttp import web

from bot.domain.timing import (
    FixedSchedule,
    LearnedSchedule,
    PollSchedule,
    ShapeEstimate,
    TimingBook,
    TimingSample,
)
from bot.testing.fake_wavespeed import FakeTask, FakeWaveSpeed
from bot.wavespeed import PollPolicy, WaveSpeedClient

API_KEY = "bench-key"
BODY = {"image": "https://cdn.example/cat.png", "prompt": "the cat blinks"}  # not fetched
MAX_START_OFFSET_S = 5.0  # jobs start at random moments, so fixed pollers are not in phase

BASELINE = "sdk: fixed 1 s (baseline)"
FIXED_5 = "fixed 5 s"
EARLIER = "earlier default: PollPolicy()"
COLD = "wanbot cold (no history)"
WARM = "wanbot warm (learned)"
STRATEGIES = (BASELINE, FIXED_5, EARLIER, COLD, WARM)


@dataclass(frozen=True)
class Model:
    """The job model: shapes' median generation times, queue time bound, lognormal σ."""

    shapes: dict[str, float]
    max_queue_s: float
    sigma: float

    def draw(self, rng: random.Random, per_shape: int) -> list[Job]:
        """`per_shape` jobs of each shape."""
        return [
            Job(
                shape,
                start_s=rng.uniform(0.0, MAX_START_OFFSET_S),
                queue_s=rng.uniform(0.0, self.max_queue_s),
                generation_s=median * math.exp(rng.gauss(0.0, self.sigma)),
            )
            for shape, median in self.shapes.items()
            for _ in range(per_shape)
        ]

    def book(self, rng: random.Random, history: int) -> TimingBook:
        """A TimingBook with `history` earlier jobs of each shape, from the same distribution
        (their queue and generation times as the runner records them: bot.runner._learn)."""
        return TimingBook(
            TimingSample(job.shape, 0.0, job.queue_s, job.generation_s)
            for job in self.draw(rng, history)
        )


@dataclass(frozen=True)
class Job:
    """One job's plan, in simulated seconds."""

    shape: str
    start_s: float
    queue_s: float
    generation_s: float


@dataclass(frozen=True)
class Sample:
    """One followed job: its GET result requests, its notice delay and the mean time between
    two of its polls (simulated s)."""

    shape: str
    gets: int
    delay_s: float
    gap_s: float


class TimedFake(FakeWaveSpeed):
    """The fake, noting when (event-loop time) each task reached its final status."""

    def __init__(self, **options: float) -> None:
        super().__init__(**options)
        self.finished_at: dict[str, float] = {}
        self.polled_at: dict[str, list[float]] = {}  # task id → arrivals of its result GETs
        self.submitting = asyncio.Lock()  # plans are used in submit order: one submit at a time

    async def _run(self, task: FakeTask) -> None:
        await super()._run(task)
        self.finished_at[task.id] = asyncio.get_running_loop().time()

    async def _result(self, request: web.Request) -> web.Response:
        arrived = asyncio.get_running_loop().time()
        self.polled_at.setdefault(request.match_info["id"], []).append(arrived)
        return await super()._result(request)


class Compressed:
    """A schedule run in simulated time while the event loop runs in real time."""

    def __init__(self, schedule: PollSchedule, scale: float) -> None:
        self._schedule = schedule
        self._scale = scale

    def next_delay(self, elapsed_s: float, status: str | None) -> float:
        return self._schedule.next_delay(elapsed_s / self._scale, status) * self._scale


def jittered(intervals: Iterator[float], rng: random.Random) -> Iterator[float]:
    """The intervals, each 10 % longer or shorter at random (as bot.runner does)."""
    return (interval * rng.uniform(0.9, 1.1) for interval in intervals)


def schedules(
    estimates: dict[str, ShapeEstimate], rng: random.Random
) -> dict[str, Callable[[str], PollSchedule]]:
    """Each strategy's schedule for a job of a given shape, in simulated seconds."""
    return {
        BASELINE: lambda shape: FixedSchedule(itertools.repeat(1.0)),
        FIXED_5: lambda shape: FixedSchedule(itertools.repeat(5.0)),
        EARLIER: lambda shape: FixedSchedule(PollPolicy().intervals()),
        COLD: lambda shape: FixedSchedule(jittered(PollPolicy().intervals(), rng)),
        WARM: lambda shape: LearnedSchedule(estimates[shape], jitter=random.Random(rng.random())),
    }


async def follow(
    fake: TimedFake, client: WaveSpeedClient, job: Job, schedule: PollSchedule, scale: float
) -> Sample:
    """Submit one job after its start offset and poll it to the end with `schedule`."""
    await asyncio.sleep(job.start_s * scale)
    async with fake.submitting:
        fake.next_task(queue_s=job.queue_s * scale, processing_s=job.generation_s * scale)
        prediction = await client.submit(BODY)
    policy = PollPolicy(timeout_s=1800 * scale)
    await client.wait_for_result(prediction.id, policy, schedule=Compressed(schedule, scale))
    finished = fake.finished_at[prediction.id]
    polls = fake.polled_at[prediction.id]
    seen = min(at for at in polls if at >= finished)
    gap = (polls[-1] - polls[0]) / (len(polls) - 1) if len(polls) > 1 else 0.0
    return Sample(job.shape, len(polls), (seen - finished) / scale, gap / scale)


async def trial(
    jobs: list[Job], estimates: dict[str, ShapeEstimate], scale: float, rng: random.Random
) -> dict[str, list[Sample]]:
    """Every strategy follows every job, all at once, on one fake."""
    makers = schedules(estimates, rng)
    async with (
        TimedFake(api_key=API_KEY) as fake,
        WaveSpeedClient(API_KEY, fake.base_url) as client,
    ):
        runs = {
            (name, k): follow(fake, client, job, make(job.shape), scale)
            for name, make in makers.items()
            for k, job in enumerate(jobs)
        }
        samples = dict(zip(runs, await asyncio.gather(*runs.values()), strict=True))
    return {name: [samples[name, k] for k in range(len(jobs))] for name in makers}


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


@dataclass(frozen=True)
class Row:
    gets: float  # mean GET requests per job
    delay_median_s: float
    delay_p95_s: float
    delay_max_s: float
    gap_s: float  # mean time between two polls of a job


def row(samples: list[Sample]) -> Row:
    delays = [s.delay_s for s in samples]
    return Row(
        statistics.mean(s.gets for s in samples),
        statistics.median(delays),
        p95(delays),
        max(delays),
        statistics.mean(s.gap_s for s in samples),
    )


def report(
    rows: dict[tuple[str, str], list[Row]], shapes: list[str], args: argparse.Namespace
) -> None:
    """One row per (shape, strategy) and per strategy over all shapes: medians over trials."""
    print(
        f"1 simulated second = {args.scale * 1000:g} ms; {args.trials} trials × {args.jobs} jobs "
        f"per shape; every strategy follows the same jobs; medians over trials; delays in "
        f"simulated s"
    )
    header = (
        f"{'shape':>6}  {'strategy':<30} {'GET/job':>8} {'× 1 s':>6} "
        f"{'delay p50':>10} {'delay p95':>10} {'delay max':>10}"
    )
    print(header)
    print("-" * len(header))
    for shape in [*shapes, "all"]:
        for name in STRATEGIES:
            trials = rows[shape, name]
            gets = statistics.median(r.gets for r in trials)
            ratio = statistics.median(
                r.gets / b.gets for r, b in zip(trials, rows[shape, BASELINE], strict=True)
            )
            print(
                f"{shape:>6}  {name:<30} {gets:>8.1f} {ratio:>6.2f} "
                f"{statistics.median(r.delay_median_s for r in trials):>9.2f}s "
                f"{statistics.median(r.delay_p95_s for r in trials):>9.2f}s "
                f"{statistics.median(r.delay_max_s for r in trials):>9.2f}s"
            )
        print()
    warm = rows["all", WARM]
    ratio = statistics.median(
        r.gets / b.gets for r, b in zip(warm, rows["all", BASELINE], strict=True)
    )
    delay = statistics.median(r.delay_median_s for r in warm)
    print(
        f"target warm ≤ 0.5× the 1 s poller's GETs/job: {ratio:.2f}× -> "
        f"{'met' if ratio <= 0.5 else 'MISSED'}; median notice delay ≤ 1 s: {delay:.2f} s -> "
        f"{'met' if delay <= 1.0 else 'MISSED'}"
    )
    overhead = statistics.median(r.gap_s for r in rows["all", BASELINE]) - 1.0
    print(
        f"per-poll overhead (the 1 s poller's mean gap between polls, less 1 s): "
        f"{overhead:.3f} simulated s = {overhead * args.scale * 1000:.1f} ms real"
    )
    cold, earlier = rows["all", COLD], rows["all", EARLIER]
    cold_gets = statistics.median(r.gets for r in cold)
    earlier_gets = statistics.median(r.gets for r in earlier)
    cold_delay = statistics.median(r.delay_median_s for r in cold)
    earlier_delay = statistics.median(r.delay_median_s for r in earlier)
    print(
        f"cold vs earlier default: GET/job {cold_gets:.1f} vs {earlier_gets:.1f}, "
        f"median delay {cold_delay:.2f} s vs {earlier_delay:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=8, help="jobs per shape per trial")
    parser.add_argument("--scale", type=float, default=0.1, help="real seconds per simulated s")
    parser.add_argument("--history", type=int, default=30, help="earlier jobs per shape (warm)")
    parser.add_argument("--shapes", type=float, nargs="+", default=[40.0, 90.0, 170.0])
    parser.add_argument("--max-queue", type=float, default=15.0, help="queue time 0..this s")
    parser.add_argument("--sigma", type=float, default=0.1, help="lognormal σ of generation")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    shapes = {f"{median:g}s": median for median in args.shapes}
    model = Model(shapes, args.max_queue, args.sigma)
    rng = random.Random(args.seed)
    rows: dict[tuple[str, str], list[Row]] = {}
    began = time.monotonic()
    for _ in range(args.trials):
        book = model.book(rng, args.history)
        estimates = {shape: book.estimate(shape) for shape in shapes}
        known = {shape: estimate for shape, estimate in estimates.items() if estimate}
        jobs = model.draw(rng, args.jobs)
        samples = asyncio.run(trial(jobs, known, args.scale, rng))
        for name, followed in samples.items():
            for shape in shapes:
                rows.setdefault((shape, name), []).append(
                    row([s for s in followed if s.shape == shape])
                )
            rows.setdefault(("all", name), []).append(row(followed))
    report(rows, list(shapes), args)
    print(f"({time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
