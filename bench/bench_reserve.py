"""Reservations per second on a SQLite file, and proof in the same run that none overspent.

Each level runs `--total` reserve() calls from C concurrent tasks spread over K connections (K
SqliteStorage instances on one file: like the bot and a `wanbot generate` side by side) on a fresh
database. The server budget covers exactly two thirds of the calls, so the rest must be refused;
afterwards the server balance must hold exactly that many prices and nothing more.

    python bench/bench_reserve.py [--total 3000] [--levels 1x1 10x1 100x1 10x4 100x4]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bot.domain.budget import BudgetExceeded, BudgetPeriod, BudgetPolicy
from bot.domain.job import JobOwner
from bot.domain.pricing import format_usd
from storage import SqliteStorage

GUILD = 1
MEMBERS = 50  # calls rotate over members, so a member's own limits never bind
PRICE = 250_000  # $0.25: 5 s, 720p, with audio
NO_JOB_LIMIT = 10**9
LEVELS = ("1x1", "10x1", "100x1", "10x4", "100x4")


@dataclass(frozen=True)
class Level:
    """C concurrent callers over K connections."""

    concurrency: int
    connections: int

    @classmethod
    def parse(cls, text: str) -> Level:
        concurrency, _, connections = text.partition("x")
        return cls(int(concurrency), int(connections or 1))

    def __str__(self) -> str:
        return f"{self.concurrency}x{self.connections}"


@dataclass(frozen=True)
class Result:
    level: Level
    seconds: float
    latencies_s: list[float]
    reserved: int
    refused: int
    held: int
    available: int
    affordable: int

    @property
    def no_overspend(self) -> bool:
        """Exactly the affordable calls were reserved, and the balance holds exactly those."""
        return (
            self.reserved == self.affordable
            and self.held == self.reserved * PRICE
            and self.available == 0
        )


async def run_level(level: Level, total: int, folder: Path) -> Result:
    """`total` reserve() calls at this level on a fresh database."""
    affordable = total * 2 // 3
    policy = BudgetPolicy(
        member_allowance=total * PRICE,
        server_allowance=affordable * PRICE,
        period=BudgetPeriod.NONE,
    )
    path = str(folder / f"reserve-{level}.db")
    stores = [await SqliteStorage.open(path, policy) for _ in range(level.connections)]
    calls = itertools.count()
    latencies: list[float] = []
    outcomes = {"reserved": 0, "refused": 0}

    async def caller(worker: int) -> None:
        store = stores[worker % level.connections]
        while (n := next(calls)) < total:
            owner = JobOwner(GUILD, channel_id=1, member_id=1 + n % MEMBERS)
            began = time.perf_counter()
            try:
                await store.reserve(owner, "{}", PRICE, NO_JOB_LIMIT)
                outcomes["reserved"] += 1
            except BudgetExceeded:
                outcomes["refused"] += 1
            latencies.append(time.perf_counter() - began)

    try:
        began = time.perf_counter()
        await asyncio.gather(*(caller(w) for w in range(level.concurrency)))
        seconds = time.perf_counter() - began
        server = await stores[0].server_balance(GUILD)
    finally:
        for store in stores:
            await store.close()
    return Result(
        level, seconds, latencies, **outcomes,
        held=server.held, available=server.available, affordable=affordable,
    )  # fmt: skip


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of the sorted values fall (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(result: Result) -> None:
    """One table row, then the overspend check of that run."""
    ms = [s * 1000 for s in result.latencies_s]
    calls = len(ms)
    print(
        f"{result.level!s:>8} {calls:>6} {calls / result.seconds:>8.0f} "
        f"{statistics.median(ms):>8.2f} {percentile(ms, 0.99):>8.2f} {max(ms):>8.2f}"
    )
    verdict = "no overspend" if result.no_overspend else "OVERSPENT OR MISCOUNTED"
    print(
        f"{'':>8} check: {result.reserved} reserved + {result.refused} refused; held "
        f"{format_usd(result.held)} of {format_usd(result.affordable * PRICE)}, available "
        f"{format_usd(result.available)} -> {verdict}"
    )


async def main_async(levels: list[Level], total: int) -> bool:
    print(
        f"{total} reserve() calls per level at {format_usd(PRICE)}; level = callers x connections"
    )
    print(f"{'level':>8} {'calls':>6} {'ops/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    all_ok = True
    with tempfile.TemporaryDirectory(prefix="wanbot-bench-") as folder:
        for level in levels:
            result = await run_level(level, total, Path(folder))
            report(result)
            all_ok &= result.no_overspend
    return all_ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=3000)
    parser.add_argument(
        "--levels", type=Level.parse, nargs="+", default=[Level.parse(t) for t in LEVELS]
    )
    args = parser.parse_args()
    raise SystemExit(0 if asyncio.run(main_async(args.levels, args.total)) else 1)


if __name__ == "__main__":
    main()
