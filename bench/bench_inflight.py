"""Many jobs in flight in one bot process: event-loop lag, memory, CPU per job, request peaks.

Each scenario runs three processes, so that what is measured is the bot's alone:

- the fake WaveSpeed (FakeWaveSpeed on loopback), which logs the arrival of every request and
  when each task completed;
- the bot: one real JobRunner with a real SqliteStorage on a temporary file, roomy QueueLimits
  and a Delivery that records the outcome and accepts the video (it is downloaded, as in the
  bot); it measures its own event-loop lag (a task sleeping 10 ms records the overshoot), its
  peak RSS and its CPU time;
- this script, which starts both and reads the two reports.

Time is real, not compressed. Each task waits in the fake's queue for U(0, `--max-queue`) s and
generates for `--generation` s × exp(N(0, σ 0.1)): with the defaults (15 s, 40 s), lifetimes of
~35–70 s, all overlapping. The bot polls as it does without history (PollPolicy(), jittered);
`--warm` first records 30 earlier jobs of the same shape in the database, so it polls with the
learned schedule.

Scenarios:
- `burst N`: N jobs reserved and started at once (as fast as the loop takes them), followed to
  their delivery.
- `resume N`: a first bot process starts N jobs, waits until every one is submitted to the fake
  (with many jobs the first may have finished meanwhile: they are resumed as they stand), and
  is killed (SIGKILL); a second one resumes them (the holder of their leases is dead: it claims
  them at once). Measured in the second: result GETs per second at the fake over the first
  15 s after `resume()` is called, how long resume() held the loop, and the same figures as a
  burst until every job is delivered.

Diagnostics: each late tick (over 50 ms) is looked at — how much CPU the process used and how
long the garbage collector ran meanwhile (gc.callbacks); `--stalls MS` also has a thread note
where the loop's thread is whenever the loop has not ticked for MS.

    python bench/bench_inflight.py [--jobs 1000] [--resume 1000] [--repeats 1] [--warm]
                                   [--down 0] [--generation 40] [--max-queue 15] [--stalls MS]
    python bench/bench_inflight.py --jobs 1000 5000 --resume 1000 --repeats 3   # the big case
    python bench/bench_inflight.py --jobs --resume 1000 --down 20 --warm   # resumed, learned

`--down S` leaves the bot down S seconds between the kill and the resume; `--gc-threshold A B C`
sets the bot process's gc.set_threshold(A, B, C); without it, the bot's own (bot.app.run raises the
young generation's threshold to GC_THRESHOLD_GEN0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.app import GC_THRESHOLD_GEN0
from bot.domain.budget import BudgetPeriod, BudgetPolicy
from bot.domain.job import JobOwner, JobRecord
from bot.domain.lifecycle import JobState
from bot.domain.outcomes import JobFailure
from bot.domain.queue import QueueLimits
from bot.domain.request import GenerationRequest
from bot.domain.timing import TimingSample, shape_of
from bot.runner import JobRunner, Posted, Progress, Video
from bot.testing.fake_wavespeed import FakeTask, FakeWaveSpeed
from bot.wavespeed import PollPolicy, WaveSpeedClient
from storage import SqliteStorage, open_storage

API_KEY = "bench-key"
# 5 s, 720p, silent: $0.125. The image URL is not loopback, so the fake accepts it unfetched.
REQUEST = GenerationRequest(
    image="https://cdn.example/cat.png", prompt="the cat waves", enable_audio=False
)
POLICY = BudgetPolicy(
    member_allowance=10**12, server_allowance=10**15, period=BudgetPeriod.DAY
)  # never binds
GUILDS, MEMBERS = 20, 50  # jobs rotate over 1,000 members in 20 servers
NO_JOB_LIMIT = 10**9
ROOMY = QueueLimits(max_concurrent=1_000_000, max_per_minute=1_000_000)
TICK_S = 0.010  # the lag probe's sleep
LATE_S = 0.050  # a tick this late is looked at: CPU used and garbage collection meanwhile
IDLE_S = 2.0  # measured before the jobs start: the probe's own lag and CPU
HISTORY = 30  # earlier jobs recorded with --warm
FIRST_SECONDS = 15  # reported second by second


# --- the fake WaveSpeed (its own process) ---------------------------------------------------


class BenchFake(FakeWaveSpeed):
    """The fake, drawing each task's queue and generation times, and keeping for each task
    when it was created and completed and when its result was polled (monotonic clock)."""

    def __init__(self, rng: random.Random, max_queue_s: float, generation_s: float) -> None:
        super().__init__(api_key=API_KEY)
        self._rng = rng
        self._max_queue_s = max_queue_s
        self._generation_s = generation_s
        self.created: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.polls: dict[str, list[float]] = {}

    def _create_task(self, body: dict[str, Any], webhook: str | None = None) -> FakeTask:
        self.next_task(
            queue_s=self._rng.uniform(0.0, self._max_queue_s),
            processing_s=self._generation_s * math.exp(self._rng.gauss(0.0, 0.1)),
        )
        task = super()._create_task(body, webhook)
        self.created[task.id] = time.monotonic()
        return task

    async def _run(self, task: FakeTask) -> None:
        await super()._run(task)
        self.finished[task.id] = time.monotonic()

    async def _result(self, request: web.Request) -> web.Response:
        self.polls.setdefault(request.match_info["id"], []).append(time.monotonic())
        return await super()._result(request)

    def _make_app(self) -> web.Application:
        app = super()._make_app()
        app.router.add_get("/bench/report", self._report)
        return app

    async def _report(self, request: web.Request) -> web.Response:
        """Every request's arrival by route, and each task's times."""
        by_route: dict[str, list[float]] = {}
        for logged in self.requests:
            by_route.setdefault(logged.route or "other", []).append(logged.at)
        tasks = {
            task_id: {
                "created": created,
                "finished": self.finished.get(task_id),
                "polls": self.polls.get(task_id, []),
            }
            for task_id, created in self.created.items()
        }
        return web.json_response({"requests": by_route, "tasks": tasks})


async def serve_fake(args: argparse.Namespace) -> None:
    """Serve until SIGTERM; print the base URL first."""
    fake = BenchFake(random.Random(args.seed), args.max_queue, args.generation)
    await fake.start()
    print(json.dumps({"url": fake.base_url}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await fake.stop()


# --- the bot (its own process) --------------------------------------------------------------


class Outcomes:
    """A Delivery that records how each job ended and accepts every video."""

    def __init__(self) -> None:
        self.posted = 0
        self.failed: dict[str, int] = {}

    async def progress(self, job: JobRecord, progress: Progress) -> None:
        pass

    async def attach_limit(self, job: JobRecord) -> int:
        return 25 * 1024 * 1024

    async def post_video(self, job: JobRecord, video: Video) -> Posted:
        self.posted += 1
        return Posted(job.channel_id, job.id)

    async def find_post(self, job: JobRecord) -> Posted | None:
        return None

    async def delivered(self, job: JobRecord, video: Video) -> None:
        pass

    async def failed(self, job: JobRecord, failure: JobFailure) -> None:
        self.failed[failure.kind.value] = self.failed.get(failure.kind.value, 0) + 1

    async def undecided(self, job: JobRecord, candidate_ids: list[str]) -> None:
        pass


class Probe:
    """Event-loop lag (a task sleeping TICK_S records how late it wakes), RSS and CPU samples."""

    def __init__(self) -> None:
        self.lags: list[tuple[float, float]] = []  # (monotonic, seconds late)
        self.samples: list[tuple[float, float, int]] = []  # (monotonic, CPU s, RSS KiB)
        self._task: asyncio.Task[None] | None = None
        self.last_tick = time.monotonic()
        # ticks late by more than LATE_S: (monotonic, seconds late, CPU seconds the process used
        # meanwhile, seconds spent in garbage collection meanwhile)
        self.late: list[tuple[float, float, float, float]] = []
        self.gc_pauses: list[tuple[float, float, int]] = []  # (monotonic, seconds, generation)
        self._gc_began = 0.0
        self.gc_total_s = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._tick())
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_began = time.monotonic()
        else:
            now = time.monotonic()
            self.gc_pauses.append((now, now - self._gc_began, info["generation"]))
            self.gc_total_s += now - self._gc_began

    async def stop(self) -> None:
        assert self._task is not None
        gc.callbacks.remove(self._on_gc)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _tick(self) -> None:
        next_sample = 0.0
        while True:
            before, cpu_before, gcs_before = time.monotonic(), time.process_time(), self.gc_total_s
            await asyncio.sleep(TICK_S)
            after = self.last_tick = time.monotonic()
            self.lags.append((after, after - before - TICK_S))
            if after - before - TICK_S > LATE_S:
                cpu, gcs = time.process_time() - cpu_before, self.gc_total_s - gcs_before
                self.late.append((after, after - before - TICK_S, cpu, gcs))
            if after >= next_sample:
                self.samples.append((after, time.process_time(), _rss_kib()))
                next_sample = after + 0.5

    def mark(self) -> tuple[int, float]:
        """Where the lag record and the clock stand now."""
        return len(self.lags), time.monotonic()


class StallWatch:
    """With `--stalls MS`: a thread that, whenever the loop has not ticked for MS, notes where
    the loop's thread is (wanbot's own frames), to tell what holds the loop."""

    def __init__(self, probe: Probe, threshold_s: float) -> None:
        self._probe = probe
        self._threshold_s = threshold_s
        self._loop_thread = threading.get_ident()
        self._stopped = threading.Event()
        self.seen: dict[str, int] = {}
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _watch(self) -> None:
        noted_for = 0.0
        while not self._stopped.wait(self._threshold_s / 4):
            ticked = self._probe.last_tick
            if ticked == noted_for or time.monotonic() - ticked < self._threshold_s:
                continue
            noted_for = ticked
            frame = sys._current_frames().get(self._loop_thread)
            ours = [
                f"{Path(f.filename).parent.name}/{Path(f.filename).name}:{f.lineno} {f.name}"
                for f in traceback.extract_stack(frame)
                if "/bot/" in f.filename or "/storage/" in f.filename
            ]
            where = " < ".join(reversed(ours[-4:])) or "(outside wanbot)"
            self.seen[where] = self.seen.get(where, 0) + 1


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _owner(k: int) -> JobOwner:
    guild = 1 + k % GUILDS
    return JobOwner(guild, 10_000 + guild, 100_000 + (k // GUILDS) % MEMBERS)


async def _seed_history(
    storage: SqliteStorage, rng: random.Random, args: argparse.Namespace
) -> None:
    """HISTORY earlier jobs of the bench's shape, ended, with their timings recorded."""
    shape = shape_of(REQUEST)
    for _ in range(HISTORY):
        job = await storage.reserve(
            _owner(0), REQUEST.model_dump_json(), REQUEST.price_micro, NO_JOB_LIMIT
        )
        await storage.advance(
            job.id, JobState.FAILED, failure_kind="interrupted", error_message="history"
        )
        await storage.advance(job.id, JobState.CLOSED)
        sample = TimingSample(
            shape,
            0.0,
            rng.uniform(0.0, args.max_queue),
            args.generation * math.exp(rng.gauss(0.0, 0.1)),
        )
        await storage.record_timing(job.id, sample)


async def run_bot(args: argparse.Namespace) -> None:
    """One bot process: `start` (reserve and follow N jobs), `setup` (start N jobs and wait
    until all are submitted, then wait to be killed) or `resume` (resume what is there).
    Prints its report as one JSON line."""
    storage = await open_storage(args.db, POLICY)
    client = WaveSpeedClient(API_KEY, args.url)
    runner = JobRunner(
        storage, client, poll=PollPolicy(), max_jobs_per_member=NO_JOB_LIMIT, limits=ROOMY
    )
    outcomes = Outcomes()
    if args.warm and args.mode != "resume":
        await _seed_history(storage, random.Random(args.seed + 1), args)
    # what bot.app.run does, unless the run asks for other thresholds
    gc.set_threshold(*(args.gc_threshold or (GC_THRESHOLD_GEN0, 20, 20)))
    probe = Probe()
    probe.start()
    watch = StallWatch(probe, args.stalls / 1000) if args.stalls else None
    await asyncio.sleep(IDLE_S)  # the probe alone: its own lag and CPU
    idle_end, began = probe.mark()
    cpu_began = time.process_time()
    if args.mode == "resume":
        count = await runner.resume(lambda job: outcomes, include=lambda job: True)
        started = time.monotonic()
    else:
        for k in range(args.jobs):
            job = await runner.reserve(_owner(k), REQUEST)
            runner.run(job, outcomes)
            await asyncio.sleep(0)  # members' commands arrive one per loop turn
        count = args.jobs
        started = time.monotonic()
    if args.mode == "setup":
        # until every job has been submitted (the first may have finished meanwhile); the
        # database is the only place that says so: look every 0.2 s
        while not _all_submitted(await storage.job_counts()):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        print(json.dumps({"ready": True}), flush=True)
        await asyncio.Event().wait()  # until killed
    await runner.wait_all()
    ended = time.monotonic()
    cpu_ended = time.process_time()
    await probe.stop()
    if watch is not None:
        watch.stop()
        for where, times in sorted(watch.seen.items(), key=lambda item: -item[1]):
            print(f"stall x{times}: {where}", file=sys.stderr)
    idle_lags = [lag for _, lag in probe.lags[:idle_end]]
    idle_cpu = [s for s in probe.samples if s[0] <= began]
    idle_rate = (
        (idle_cpu[-1][1] - idle_cpu[0][1]) / (idle_cpu[-1][0] - idle_cpu[0][0])
        if len(idle_cpu) > 1
        else 0.0
    )
    report = {
        "mode": args.mode,
        "jobs": count,
        "delivered": outcomes.posted,
        "failed": outcomes.failed,
        "began": began,
        "started": started,
        "ended": ended,
        "cpu_s": cpu_ended - cpu_began,
        "idle_cpu_per_s": idle_rate,
        "idle_lag_ms": _lag_stats(idle_lags),
        "ticks": [(round(at, 4), round(lag * 1000, 3)) for at, lag in probe.lags[idle_end:]],
        "rss_start_kib": idle_cpu[0][2] if idle_cpu else _rss_kib(),
        "resume_call_s": started - began,
        "rss_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "samples": probe.samples,
        "late": [tick for tick in probe.late if tick[0] > began],
        "gc_pauses": [pause for pause in probe.gc_pauses if pause[0] > began],
    }
    await runner.close()
    await client.close()
    await storage.close()
    print(json.dumps(report), flush=True)


def _all_submitted(counts: dict[str, int]) -> bool:
    before = (JobState.RESERVED, JobState.QUEUED, JobState.SUBMITTING, JobState.UNCERTAIN)
    return not any(counts.get(state.value, 0) for state in before)


def _lag_stats(lags: list[float]) -> dict[str, float]:
    ms = sorted(lag * 1000 for lag in lags)
    if not ms:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0, "n": 0}
    return {
        "p50": statistics.median(ms),
        "p99": ms[min(len(ms) - 1, math.ceil(0.99 * len(ms)) - 1)],
        "max": ms[-1],
        "n": len(ms),
    }


# --- this script: start both, read both ----------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One scenario's measurements."""

    scenario: str
    jobs: int
    delivered: int
    failed: dict[str, int]
    lag_ms: dict[str, float]
    ramp_lag_ms: dict[str, float]  # a burst's, until the last submit
    steady_lag_ms: dict[str, float]  # a burst's, after it
    idle_lag_ms: dict[str, float]
    rss_start_mib: float
    rss_peak_mib: float
    cpu_ms_per_job: float  # net of the probe's own CPU
    idle_cpu_per_s: float
    gets_per_job: float
    peak_gets_per_s: int  # most result GETs in any 1 s window
    peak_requests_per_s: int  # most requests of any route in any 1 s window
    notice_p50_s: float
    notice_p95_s: float
    notice_max_s: float
    wall_s: float
    first_seconds: list[int]  # result GETs in each of the first seconds after the start
    cpu_ms_per_get: float | None  # in the stretch where the bot only polls
    late_ticks: int  # probe ticks more than LATE_S late
    late_cpu_share: float  # of the time those ticks were late, the share the process ran
    late_gc_share: float  # … and the share spent collecting garbage
    gc_max_ms: float  # the longest garbage collection
    gc_full: int  # collections of the oldest generation
    ramp_s: float  # from the first reserve to the last run(), or the length of resume()
    submit_span_s: float  # from the first reserve to the last submit's arrival at the fake


def _start_fake(args: argparse.Namespace, seed: int) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, __file__, "fake", "--seed", str(seed)]
    command += ["--max-queue", str(args.max_queue), "--generation", str(args.generation)]
    fake = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert fake.stdout is not None
    url = json.loads(fake.stdout.readline())["url"]
    return fake, url


def _bot_command(args: argparse.Namespace, mode: str, url: str, db: Path, jobs: int) -> list[str]:
    command = [sys.executable, __file__, "bot", "--mode", mode, "--url", url, "--db", str(db)]
    command += ["--jobs", str(jobs), "--max-queue", str(args.max_queue)]
    command += ["--generation", str(args.generation), "--seed", str(args.seed)]
    command += ["--stalls", str(args.stalls)]
    if args.gc_threshold:
        command += ["--gc-threshold", *map(str, args.gc_threshold)]
    return command + (["--warm"] if args.warm else [])


def _last_json(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def scenario(args: argparse.Namespace, kind: str, jobs: int, seed: int) -> Run:
    """Run one scenario: a fake, then one bot (`burst`) or two (`resume`)."""
    with tempfile.TemporaryDirectory(prefix="wanbot-inflight-") as folder:
        db = Path(folder) / "wanbot.db"
        fake, url = _start_fake(args, seed)
        try:
            if kind == "resume":
                setup = subprocess.Popen(
                    _bot_command(args, "setup", url, db, jobs), stdout=subprocess.PIPE, text=True
                )
                assert setup.stdout is not None
                line = setup.stdout.readline()
                setup.kill()  # SIGKILL: its leases are left behind, held by a dead process
                setup.wait()
                time.sleep(args.down)  # the bot is down this long before it starts again
                if not line.startswith("{"):
                    raise RuntimeError("the setup process ended before its jobs were submitted")
            mode = "resume" if kind == "resume" else "start"
            done = subprocess.run(
                _bot_command(args, mode, url, db, jobs),
                stdout=subprocess.PIPE,
                text=True,
                check=True,
            )
            bot = _last_json(done.stdout)
            with urllib.request.urlopen(f"{url}/bench/report") as answer:
                seen = json.load(answer)
        finally:
            fake.terminate()
            fake.wait()
    return _measured(f"{kind} {jobs:,}", bot, seen)


def _measured(name: str, bot: dict[str, Any], seen: dict[str, Any]) -> Run:
    began, ended = bot["began"], bot["ended"]
    requests = {route: sorted(ats) for route, ats in seen["requests"].items()}
    during = {
        route: [at for at in ats if began <= at <= ended + 1.0] for route, ats in requests.items()
    }
    gets = during.get("result", [])
    everything = sorted(at for ats in during.values() for at in ats)
    delays = [
        min(at for at in task["polls"] if at >= task["finished"]) - task["finished"]
        for task in seen["tasks"].values()
        if task["finished"] is not None and any(at >= task["finished"] for at in task["polls"])
    ]
    wall = ended - began
    jobs = bot["jobs"]
    late = bot["late"]
    late_s = sum(lag for _, lag, _, _ in late)
    # a burst's ramp: until the last submit
    last_submit = max([*during.get("submit", []), bot["started"]])
    net_cpu = bot["cpu_s"] - bot["idle_cpu_per_s"] * wall
    seconds = [
        sum(1 for at in gets if began + second <= at < began + second + 1)
        for second in range(FIRST_SECONDS)
    ]
    return Run(
        scenario=name,
        jobs=jobs,
        delivered=bot["delivered"],
        failed=bot["failed"],
        lag_ms=_lag_stats([lag / 1000 for _, lag in bot["ticks"]]),
        ramp_lag_ms=_lag_stats([lag / 1000 for at, lag in bot["ticks"] if at <= last_submit]),
        steady_lag_ms=_lag_stats([lag / 1000 for at, lag in bot["ticks"] if at > last_submit]),
        idle_lag_ms=bot["idle_lag_ms"],
        rss_start_mib=bot["rss_start_kib"] / 1024,
        rss_peak_mib=bot["rss_peak_kib"] / 1024,
        cpu_ms_per_job=1000 * net_cpu / max(1, jobs),
        idle_cpu_per_s=bot["idle_cpu_per_s"],
        gets_per_job=len(gets) / max(1, jobs),
        peak_gets_per_s=_peak(gets),
        peak_requests_per_s=_peak(everything),
        notice_p50_s=statistics.median(delays) if delays else math.nan,
        notice_p95_s=_quantile(delays, 0.95),
        notice_max_s=max(delays, default=math.nan),
        wall_s=wall,
        first_seconds=seconds,
        cpu_ms_per_get=_polling_cost(bot, during),
        late_ticks=len(late),
        late_cpu_share=sum(cpu for _, _, cpu, _ in late) / late_s if late_s else math.nan,
        late_gc_share=sum(gcs for _, _, _, gcs in late) / late_s if late_s else math.nan,
        gc_max_ms=1000 * max((pause for _, pause, _ in bot["gc_pauses"]), default=0.0),
        gc_full=sum(1 for _, _, generation in bot["gc_pauses"] if generation == 2),
        ramp_s=bot["resume_call_s"],
        submit_span_s=last_submit - began,
    )


def _peak(times: list[float], window_s: float = 1.0) -> int:
    """The most of `times` (sorted) within any window of `window_s`."""
    best, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= window_s:
            first += 1
        best = max(best, last - first + 1)
    return best


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _polling_cost(bot: dict[str, Any], during: dict[str, list[float]]) -> float | None:
    """CPU ms per result GET between the last submit and the first download: the stretch
    where every job is at WaveSpeed and the bot does nothing but poll (and renew leases)."""
    submits, outputs, gets = during.get("submit", []), during.get("output", []), during["result"]
    if not outputs:
        return None
    since = max(submits, default=bot["began"]) + 1.0
    until = min(outputs) - 1.0
    samples = [(at, cpu) for at, cpu, _ in bot["samples"] if since <= at <= until]
    if len(samples) < 4:
        return None
    (t0, cpu0), (t1, cpu1) = samples[0], samples[-1]
    polls = sum(1 for at in gets if t0 <= at < t1)
    if not polls:
        return None
    return 1000 * (cpu1 - cpu0 - bot["idle_cpu_per_s"] * (t1 - t0)) / polls


def _median(runs: list[Run], value: Any) -> float:
    return statistics.median(value(run) for run in runs)


def report(runs: dict[str, list[Run]], args: argparse.Namespace) -> None:
    """One row per scenario (medians over repeats), then the resumes' first seconds."""
    print(
        f"{args.repeats} repeat(s), medians; tasks queue U(0, {args.max_queue:g}) s and generate "
        f"{args.generation:g} s × lognormal(σ 0.1); polling: "
        f"{'learned (30 earlier jobs)' if args.warm else 'PollPolicy() (no history)'}"
        + (f"; resumed {args.down:g} s after the kill" if args.resume else "")
        + (f"; gc.set_threshold{tuple(args.gc_threshold)}" if args.gc_threshold else "")
    )
    header = (
        f"{'scenario':<14} {'ended ok':>9} {'lag p50':>8} {'lag p99':>8} {'lag max':>8} "
        f"{'RSS 0':>6} {'RSS max':>8} {'CPU/job':>8} {'GET/job':>8} {'GET/s max':>9} "
        f"{'req/s max':>9} {'notice p50':>10} {'p95':>6} {'wall':>5}"
    )
    print(header)
    print("-" * len(header))
    for name, repeats in runs.items():
        ok = min(run.delivered for run in repeats)
        print(
            f"{name:<14} {ok:>5}/{repeats[0].jobs:<3} "
            f"{_median(repeats, lambda r: r.lag_ms['p50']):>6.1f}ms "
            f"{_median(repeats, lambda r: r.lag_ms['p99']):>6.1f}ms "
            f"{_median(repeats, lambda r: r.lag_ms['max']):>6.0f}ms "
            f"{_median(repeats, lambda r: r.rss_start_mib):>4.0f}MB "
            f"{_median(repeats, lambda r: r.rss_peak_mib):>6.0f}MB "
            f"{_median(repeats, lambda r: r.cpu_ms_per_job):>6.2f}ms "
            f"{_median(repeats, lambda r: r.gets_per_job):>8.1f} "
            f"{_median(repeats, lambda r: r.peak_gets_per_s):>9.0f} "
            f"{_median(repeats, lambda r: r.peak_requests_per_s):>9.0f} "
            f"{_median(repeats, lambda r: r.notice_p50_s):>9.2f}s "
            f"{_median(repeats, lambda r: r.notice_p95_s):>5.1f}s "
            f"{_median(repeats, lambda r: r.wall_s):>4.0f}s"
        )
    print()
    for name, repeats in runs.items():
        costs = [run.cpu_ms_per_get for run in repeats if run.cpu_ms_per_get is not None]
        failed = {kind: n for run in repeats for kind, n in run.failed.items()}
        print(
            f"{name}: idle probe lag p50 {_median(repeats, lambda r: r.idle_lag_ms['p50']):.2f} "
            f"ms, p99 {_median(repeats, lambda r: r.idle_lag_ms['p99']):.2f} ms, probe CPU "
            f"{_median(repeats, lambda r: r.idle_cpu_per_s) * 1000:.0f} ms/s (subtracted); "
            f"CPU per GET while only polling: "
            + (f"{statistics.median(costs):.2f} ms" if costs else "n/a")
            + f"; notice max {_median(repeats, lambda r: r.notice_max_s):.1f} s"
            + (f"; FAILED {failed}" if failed else "")
        )
        if name.startswith("burst"):
            print(
                f"  last submit {_median(repeats, lambda r: r.submit_span_s):.1f} s after the "
                "first reserve; lag p99/max until then "
                f"{_median(repeats, lambda r: r.ramp_lag_ms['p99']):.1f}/"
                f"{_median(repeats, lambda r: r.ramp_lag_ms['max']):.0f} ms, after it "
                f"{_median(repeats, lambda r: r.steady_lag_ms['p99']):.1f}/"
                f"{_median(repeats, lambda r: r.steady_lag_ms['max']):.0f} ms"
            )
        late = [run for run in repeats if run.late_ticks]
        print(
            f"  ticks late > {LATE_S * 1000:.0f} ms: "
            f"{_median(repeats, lambda r: r.late_ticks):.0f}"
            + (
                f"; while late the process ran {_median(late, lambda r: r.late_cpu_share):.0%} "
                f"of the time and collected garbage {_median(late, lambda r: r.late_gc_share):.0%}"
                if late
                else ""
            )
            + f"; longest collection {_median(repeats, lambda r: r.gc_max_ms):.0f} ms, "
            f"{_median(repeats, lambda r: r.gc_full):.0f} full collections"
        )
        if name.startswith("resume"):
            print(
                f"  resume() took {_median(repeats, lambda r: r.ramp_s) * 1000:.0f} ms "
                "(claiming every job)"
            )
        per_second = [
            statistics.median(run.first_seconds[second] for run in repeats)
            for second in range(FIRST_SECONDS)
        ]
        print(f"  result GETs in each of the first {FIRST_SECONDS} s: {per_second}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("fake", "bot"):
        role = sys.argv.pop(1)
        parser = argparse.ArgumentParser()
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--max-queue", type=float, default=15.0)
        parser.add_argument("--generation", type=float, default=40.0)
        parser.add_argument("--mode", choices=("start", "setup", "resume"))
        parser.add_argument("--url")
        parser.add_argument("--db")
        parser.add_argument("--jobs", type=int, default=0)
        parser.add_argument("--warm", action="store_true")
        parser.add_argument("--stalls", type=float, default=0.0)
        parser.add_argument("--gc-threshold", type=int, nargs=3)
        args = parser.parse_args()
        asyncio.run(serve_fake(args) if role == "fake" else run_bot(args))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="*", default=[1000], help="burst sizes")
    parser.add_argument("--resume", type=int, nargs="*", default=[1000], help="resume sizes")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max-queue", type=float, default=15.0, help="queue U(0, this) s")
    parser.add_argument("--generation", type=float, default=40.0, help="median generation s")
    parser.add_argument("--warm", action="store_true", help="poll with 30 jobs of history")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--down", type=float, default=0.0, help="s between the kill and resume")
    parser.add_argument(
        "--stalls", type=float, default=0.0, help="note where the loop is when stuck this many ms"
    )
    parser.add_argument(
        "--gc-threshold",
        type=int,
        nargs=3,
        help="the bot process's gc.set_threshold() (default: the bot's own)",
    )
    args = parser.parse_args()
    plan = [("burst", n) for n in args.jobs] + [("resume", n) for n in args.resume]
    runs: dict[str, list[Run]] = {}
    began = time.monotonic()
    for repeat in range(args.repeats):
        for kind, jobs in plan:  # scenarios alternate within each repeat
            run = scenario(args, kind, jobs, args.seed + repeat)
            runs.setdefault(run.scenario, []).append(run)
            print(
                f"  [{time.monotonic() - began:5.0f} s] {run.scenario}: {run.delivered} delivered, "
                f"lag p99 {run.lag_ms['p99']:.1f} ms max {run.lag_ms['max']:.0f} ms, "
                f"RSS {run.rss_peak_mib:.0f} MB, CPU {run.cpu_ms_per_job:.2f} ms/job, "
                f"peak {run.peak_gets_per_s} GET/s",
                file=sys.stderr,
                flush=True,
            )
    report(runs, args)


if __name__ == "__main__":
    main()
