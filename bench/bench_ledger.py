"""Reserve + settle pairs per second, against how many ledger rows the period already holds.

Each cell: a fresh database (a SQLite file, or a PostgreSQL schema of its own) whose period
already holds R ledger rows (other members' grants of $0), then C members reserving and settling
(a refund from `reserved`) in parallel, one task each, until `--pairs` pairs are done — in one
process, or split over P processes started together (`--processes`, PostgreSQL). The same cells
run on a baseline — another checkout of wanbot, e.g. the commit before running balances — in a
subprocess, alternating with this tree, so both see the same machine. Each cell is repeated and
the median reported.

    python bench/bench_ledger.py [--baseline /path/to/old/checkout] [--rows 1000 100000]
        [--members 1 10 100] [--pairs 2000] [--repeat 3]
        [--database sqlite|postgresql://…] [--processes 1 3]
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
import uuid
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
SCRIPT = str(Path(__file__).resolve())


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


async def prefill_postgres(url: str, rows: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO ledger (guild_id, member_id, kind, amount_micro, period_key, actor_id, "
            "created_at) SELECT $1, 1000000 + i % 5000, 'grant', 0, 'all', 1, now() "
            "FROM generate_series(1, $2) AS i",
            GUILD,
            rows,
        )
    finally:
        await conn.close()


async def postgres_schema(url: str, action: str) -> str:
    """Create (or drop) a schema of its own for one cell; the URL that points at it."""
    import asyncpg

    schema = f"wanbot_bench_{uuid.uuid4().hex}" if action == "create" else action
    conn = await asyncpg.connect(url)
    try:
        if action == "create":
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        else:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}search_path={schema}"


async def prepare(database: str, folder: str, rows: int) -> str:
    """A fresh database holding `rows` ledger rows in the period; its URL."""
    from storage import open_storage  # the tree on sys.path: this one or the baseline's

    if database == "sqlite":
        url = f"sqlite:///{folder}/bench.db"
    else:
        url = await postgres_schema(database, "create")
    store = await open_storage(url, POLICY)
    await store.close()
    if database == "sqlite":
        prefill_sqlite(f"{folder}/bench.db", rows)
    else:
        await prefill_postgres(url, rows)
    return url


async def run_pairs(url: str, members: int, pairs: int, first_member: int = 100) -> float:
    """Reserve and settle `pairs` times from `members` tasks; the seconds it took."""
    from storage import open_storage

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
        await asyncio.gather(*(member(first_member + m) for m in range(members)))
        return time.perf_counter() - started
    finally:
        await store.close()


async def cell(database: str, rows: int, members: int, pairs: int, processes: int) -> float:
    """Pairs per second for one cell, on a fresh database; with several processes, each runs
    its share of the members and pairs at the same time."""
    with tempfile.TemporaryDirectory() as folder:
        url = await prepare(database, folder, rows)
        try:
            if processes == 1:
                return pairs / await run_pairs(url, members, pairs)
            share = [sys.executable, SCRIPT, "--share", url]
            workers = [
                await asyncio.create_subprocess_exec(
                    *share,
                    str(max(members // processes, 1)),
                    str(pairs // processes),
                    str(100 + index * members),
                    stdout=asyncio.subprocess.PIPE,
                )
                for index in range(processes)
            ]
            outputs = [await worker.communicate() for worker in workers]
            slowest = max(float(out) for out, _ in outputs)
            return (pairs // processes) * processes / slowest
        finally:
            if database != "sqlite":
                await postgres_schema(database, url.rpartition("search_path=")[2])


def run_in(tree: str | None, args: list[str]) -> float:
    """One cell in a subprocess whose `bot`/`storage` come from `tree` (None: this one)."""
    env = dict(os.environ)
    root = tree or str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root
    out = subprocess.run(
        [sys.executable, SCRIPT, "--cell", *args],
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
    parser.add_argument("--processes", type=int, nargs="+", default=[1])
    parser.add_argument("--cell", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--share", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell:
        database, *numbers = args.cell
        print(json.dumps(asyncio.run(cell(database, *map(int, numbers)))))
        return
    if args.share:
        url, members, pairs, first = args.share
        print(asyncio.run(run_pairs(url, int(members), int(pairs), int(first))))
        return

    trees = {"this tree": None} | ({"baseline": args.baseline} if args.baseline else {})
    backend = "sqlite" if args.database == "sqlite" else "postgresql"
    print(f"{backend}: reserve+settle pairs/s, median of {args.repeat}; {args.pairs} pairs a run")
    header = f"{'procs':>5} {'ledger rows':>12} {'members':>8}"
    header += "".join(f" {name:>12}" for name in trees)
    print(header + ("   × baseline" if args.baseline else ""))
    print("-" * (len(header) + 13))
    cells = [(p, r, m) for p in args.processes for r in args.rows for m in args.members]
    for processes, rows, members in cells:
        cell_args = [args.database, str(rows), str(members), str(args.pairs), str(processes)]
        results: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(args.repeat):  # alternate, so both see the same machine
            for name, tree in trees.items():
                results[name].append(run_in(tree, cell_args))
        medians = {name: statistics.median(values) for name, values in results.items()}
        line = f"{processes:>5} {rows:>12,} {members:>8}"
        line += "".join(f" {v:>12,.0f}" for v in medians.values())
        if args.baseline:
            line += f"   {medians['this tree'] / medians['baseline']:>9.1f}×"
        print(line, flush=True)


if __name__ == "__main__":
    main()
