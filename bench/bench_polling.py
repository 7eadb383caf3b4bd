"""Polls per job and lateness: wanbot's adaptive PollPolicy vs the official SDK's fixed 1 s poll.

Each job runs on the in-process FakeWaveSpeed with time compressed: one simulated second lasts
`--scale` real seconds, and the fake's processing time and every PollPolicy field are scaled by the
same factor. For each job length L, `--trials` jobs last L + (k + 0.5) / trials seconds
(k = 0 … trials-1), so completions fall at every phase of a 1 s poll. "lag" is the time from the
task completing (recorded inside the fake) to the poll that saw it, in simulated seconds.

    python bench/bench_polling.py [--lengths 45 90 180] [--scale 0.05] [--trials 5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
from dataclasses import dataclass, fields, replace

from bot.testing.fake_wavespeed import FakeTask, FakeWaveSpeed
from bot.wavespeed import PollPolicy, WaveSpeedClient

API_KEY = "bench-key"
BODY = {"image": "https://cdn.example/cat.png", "prompt": "the cat blinks"}  # not fetched

POLICIES = {
    "sdk: fixed 1 s (baseline)": PollPolicy(first_delay_s=1.0, factor=1.0, max_interval_s=1.0),
    "mcp: fixed 0.5 s": PollPolicy(first_delay_s=0.5, factor=1.0, max_interval_s=0.5),
    "wanbot: PollPolicy()": PollPolicy(),
    "earlier default: cap 15 s": PollPolicy(max_interval_s=15.0),
}
BASELINE = next(iter(POLICIES))


class TimedFake(FakeWaveSpeed):
    """The fake, noting when (event-loop time) each task reached its final status."""

    def __init__(self, **options: float) -> None:
        super().__init__(**options)
        self.finished_at: dict[str, float] = {}

    async def _run(self, task: FakeTask) -> None:
        await super()._run(task)
        self.finished_at[task.id] = asyncio.get_running_loop().time()


@dataclass(frozen=True)
class Sample:
    """One followed job: result polls made, the lag after completion and the time each poll took
    beyond its policy's pause (round trip + event-loop delay), in simulated seconds."""

    polls: int
    lag_s: float
    overhead_s: float


def scaled(policy: PollPolicy, scale: float) -> PollPolicy:
    """The policy with every duration multiplied by `scale` (the factor is unitless)."""
    durations = {
        f.name: getattr(policy, f.name) * scale for f in fields(policy) if f.name != "factor"
    }
    return replace(policy, **durations)


async def follow(
    fake: TimedFake, client: WaveSpeedClient, job_s: float, policy: PollPolicy, scale: float
) -> Sample:
    """Submit one job of `job_s` simulated seconds and poll it to the end with `policy`."""
    loop = asyncio.get_running_loop()
    fake.next_task(queue_s=0.0, processing_s=job_s * scale)
    prediction = await client.submit(BODY)
    submitted = loop.time()
    await client.wait_for_result(prediction.id, scaled(policy, scale))
    noticed = loop.time()
    polls = sum(1 for r in fake.calls("result") if prediction.id in r.path)
    paused = sum(itertools.islice(policy.intervals(), polls))
    return Sample(
        polls,
        lag_s=(noticed - fake.finished_at[prediction.id]) / scale,
        overhead_s=((noticed - submitted) / scale - paused) / polls,
    )


async def measure(
    lengths: list[int], scale: float, trials: int
) -> dict[tuple[int, str], list[Sample]]:
    """Every (length, policy) pair, `trials` jobs each; one length's jobs run concurrently."""
    results: dict[tuple[int, str], list[Sample]] = {}
    async with (
        TimedFake(api_key=API_KEY) as fake,
        WaveSpeedClient(API_KEY, fake.base_url) as client,
    ):
        for length in lengths:
            jobs = {
                (name, k): follow(fake, client, length + (k + 0.5) / trials, policy, scale)
                for name, policy in POLICIES.items()
                for k in range(trials)
            }
            samples = dict(zip(jobs, await asyncio.gather(*jobs.values()), strict=True))
            for name in POLICIES:
                results[length, name] = [samples[name, k] for k in range(trials)]
    return results


def report(results: dict[tuple[int, str], list[Sample]], scale: float, trials: int) -> None:
    """Print one row per (length, policy): mean polls and lag, and ratios to the baseline."""
    print(f"1 simulated second = {scale * 1000:g} ms; {trials} jobs per row; lag in simulated s")
    header = (
        f"{'job':>6}  {'policy':<26} {'polls':>6} {'× base':>7} "
        f"{'lag mean':>9} {'lag max':>8} {'per-poll overhead':>18}"
    )
    print(header)
    print("-" * len(header))
    for (length, name), samples in results.items():
        polls = statistics.mean(s.polls for s in samples)
        base = statistics.mean(s.polls for s in results[length, BASELINE])
        lags = [s.lag_s for s in samples]
        print(
            f"{length:>5}s  {name:<26} {polls:>6.1f} {polls / base:>7.2f} "
            f"{statistics.mean(lags):>8.2f}s {max(lags):>7.2f}s "
            f"{statistics.mean(s.overhead_s for s in samples):>17.3f}s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[45, 90, 180])
    parser.add_argument("--scale", type=float, default=0.05, help="real seconds per simulated s")
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    results = asyncio.run(measure(args.lengths, args.scale, args.trials))
    report(results, args.scale, args.trials)


if __name__ == "__main__":
    main()
