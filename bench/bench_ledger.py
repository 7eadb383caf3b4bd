"""Reserve + settle pairs per second, against how many ledger rows the period already holds.

Each cell: a fresh database whose period already holds R ledger rows (other members' grants of
$0), then C members reserving and settling (a refund from `reserved`) in parallel, one task each,
until `--pairs` pairs are done. The same cells run on a baseline — another checkout of wanbot,
e.g. the commit before running balances — in a subprocess, alternating with this tree, so both
see the same machine. Each cell is repeated and the median reported.

    python bench/bench_ledger.py --baseline /path/to/old/checkout [--rows 1000 100000]
        [--members 1 10 100] [--pairs 2000] [--repeat 3] [--database sqlite|postgresql://…]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

from bot.domain.budget import BudgetPeriod, BudgetPolicy
from bot.domain.job import JobOwner
from bot.domain.lifecycle import JobState

GUILD = 1
PRICE = 250_000
PLENTY = 10**15
POLICY = BudgetPolicy(PLENTY, PLENTY, BudgetPeriod.NONE)  # one period: every row is in it
FAILED = {"failure_kind": "interrupted", "error_message": "bench"}


def prefill_sqlite(path: str, rows: int) -> None:
    """R grant rows of $0 in the period, for members that never reserve."""
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(
            """
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
            INSERT INTO ledger (guild_id, member_id, kind, amount_micro, period_key, actor_id,
                                created_at)
            SELECT ?, 1000000 + i % 5000, 'grant', 0, 'all', 1, '2026-01-01T00:00:00+00:00'
            FROM n
            """,
            (rows, GUILD),
        )


async def cell(database: str, rows: int, members: int, pairs: int) -> float:
    """Pairs per second for one cell, on a fresh SQLite file (or a fresh PostgreSQL schema)."""
    from storage import open_storage  # the tree on sys.path: this one or the baseline's

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db" if database == "sqlite" else database
        store = await open_storage(url, POLICY)
        if database == "sqlite":
            await store.close()
            prefill_sqlite(f"{folder}/bench.db", rows)
            store = await open_storage(url, POLICY)
        try:
            remaining = pairs

            async def member(member_id: int) -> None:
                nonlocal remaining
                owner = JobOwner(GUILD, 7, member_id)
                while remaining > 0:
                    remaining -= 1
                    job = await store.reserve(owner, "{}", PRICE, 10**6)
                    await store.advance(job.id, JobState.FAILED, **FAILED)

            started = time.perf_counter()
            await asyncio.gather(*(member(100 + m) for m in range(members)))
            return pairs / (time.perf_counter() - started)
        finally:
            await store.close()


def run_in(tree: str | None, args: list[str]) -> float:
    """One cell in a subprocess whose `bot`/`storage` come from `tree` (None: this one)."""
    env = dict(os.environ)
    root = tree or str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--cell", *args],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="another wanbot checkout to compare with")
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--pairs", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database", default="sqlite")
    parser.add_argument("--cell", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell:
        database, rows, members, pairs = args.cell
        print(json.dumps(asyncio.run(cell(database, int(rows), int(members), int(pairs)))))
        return

    trees = {"this tree": None} | ({"baseline": args.baseline} if args.baseline else {})
    print(f"reserve+settle pairs/s, median of {args.repeat}; {args.pairs} pairs per run")
    header = f"{'ledger rows':>12} {'members':>8}" + "".join(f" {name:>12}" for name in trees)
    print(header + ("   × baseline" if args.baseline else ""))
    print("-" * (len(header) + 13))
    for rows in args.rows:
        for members in args.members:
            cell_args = [args.database, str(rows), str(members), str(args.pairs)]
            results: dict[str, list[float]] = {name: [] for name in trees}
            for _ in range(args.repeat):  # alternate, so both see the same machine
                for name, tree in trees.items():
                    results[name].append(run_in(tree, cell_args))
            medians = {name: statistics.median(values) for name, values in results.items()}
            line = f"{rows:>12,} {members:>8}" + "".join(f" {v:>12,.0f}" for v in medians.values())
            if args.baseline:
                line += f"   {medians['this tree'] / medians['baseline']:>9.1f}×"
            print(line, flush=True)


if __name__ == "__main__":
    main()
