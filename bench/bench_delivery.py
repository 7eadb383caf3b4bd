"""Delivering many videos at once: peak memory and event-loop lag, streamed through a file vs
held in memory.

N jobs (`--jobs`) are ready together at the fake WaveSpeed API, each with a video of S MB
(`--sizes`), and the real JobRunner delivers them all at once: download, post to Discord with
discord.py, record. Each cell runs in a fresh bot process of its own, so its peak RSS
(ru_maxrss) is the cell's alone; the fakes — WaveSpeed (sending the video in 256 KiB writes
that wait for the socket) and a minimal Discord REST sink (reads each upload and throws it
away, answering with the attachment's size) — run in one separate process whose memory does
not count. A ticker task sleeps 5 ms over and over during the delivery and records how late it
wakes: the loop's lag, what a member's command would wait before being answered. The same
ticker runs for a second before the delivery, on the idle loop: its worst lateness there ("idle
max") is the machine's own noise (other processes taking the CPU).

Two paths, alternating cell by cell:
- streamed: this tree. `download_to` writes each video to the runner's folder 64 KiB at a time,
  at most 16 downloads at once (bot/video_files.py); discord.py streams the file from disk.
- held: the delivery before streaming, rebuilt inside this script (`HeldRunner`): the body read
  into memory in chunks and joined (`_read_limited`), kept in the Video, and attached from a
  BytesIO. It needs several times jobs × size of memory: a held cell that would not fit in half
  of the memory available is skipped, not run.

    python bench/bench_delivery.py [--jobs 200] [--sizes 5 20 50] [--repeat 3]
        [--paths streamed held]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import discord
from aiohttp import web

from bot.domain.budget import BudgetPeriod, BudgetPolicy
from bot.domain.job import JobOwner, JobRecord
from bot.domain.lifecycle import TRANSITIONS, JobState
from bot.domain.outcomes import JobFailure
from bot.domain.request import GenerationRequest
from bot.runner import MAX_VIDEO_BYTES, Delivery, JobRunner, Posted, Progress, Video
from bot.testing.fake_wavespeed import FakeWaveSpeed
from bot.wavespeed import PollPolicy, Timeouts, TooLarge, WaveSpeedClient

SCRIPT = str(Path(__file__).resolve())
ROOT = str(Path(__file__).resolve().parent.parent)
MB = 1_000_000
API_KEY = "bench-key"
TOKEN = "bench.discord.token"
GUILD = 1
FIRST_CHANNEL = 10_000  # one channel per job: Discord's per-channel rate limits stay out of it
UPLOAD_LIMIT = 100 * 1024 * 1024  # a server at boost level 3
SEND_CHUNK = 256 * 1024
TICK_S = 0.005
PLENTY = 10**15
POLICY = BudgetPolicy(PLENTY, PLENTY, BudgetPeriod.NONE)
REQUEST = GenerationRequest(image="https://cdn.example/cat.png", prompt="the cat blinks")
POLL = PollPolicy(first_delay_s=0.02, factor=1.0, max_interval_s=0.05, timeout_s=60.0)
TIMEOUTS = Timeouts(download_s=600.0)


# --- the fakes' process --------------------------------------------------------------------------


class StreamingFake(FakeWaveSpeed):
    """The fake WaveSpeed API, sending each output in writes that wait for the socket to drain
    (one `web.Response` per download would queue a whole copy of the video per connection in
    this process, which does not count here but would slow the machine down)."""

    def __init__(self, video: bytes, **options: Any) -> None:
        super().__init__(video=video, **options)
        self.payload = video

    async def _output(self, request: web.Request) -> web.StreamResponse:
        answer = await super()._output(request)  # its checks: a completed task, a valid link
        if answer.status != 200:
            return answer
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.content_length = len(self.payload)
        await response.prepare(request)
        view = memoryview(self.payload)
        for start in range(0, len(view), SEND_CHUNK):
            await response.write(view[start : start + SEND_CHUNK])
        await response.write_eof()
        return response


def discord_sink() -> web.Application:
    """The two routes of Discord's REST API a bot posting a video needs (discord.com/developers/
    docs/resources/message#create-message): each upload is read and thrown away."""
    app = web.Application(client_max_size=UPLOAD_LIMIT + MB)
    user = {"id": "1", "username": "wanbot", "discriminator": "0", "avatar": None, "bot": True}
    ids = iter(range(10**6, 10**9))

    def answer(data: dict[str, Any]) -> web.Response:
        # discord.py reads JSON only under exactly this content type (no charset)
        return web.Response(body=json.dumps(data).encode(), content_type="application/json")

    async def me(request: web.Request) -> web.Response:
        return answer(user)

    async def create_message(request: web.Request) -> web.Response:
        content, attachments = "", []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            assert isinstance(part, aiohttp.BodyPartReader)
            if part.name == "payload_json":
                content = json.loads(await part.read()).get("content", "")
                continue
            size = 0
            while chunk := await part.read_chunk(SEND_CHUNK):
                size += len(chunk)
            url = f"https://cdn.invalid/{part.filename}"
            attachments.append(
                {
                    "id": str(next(ids)),
                    "filename": part.filename,
                    "size": size,
                    "url": url,
                    "proxy_url": url,
                }
            )
        message = {
            "id": str(next(ids)),
            "channel_id": request.match_info["channel"],
            "author": user,
            "content": content,
            "timestamp": "2026-01-01T00:00:00+00:00",
            "edited_timestamp": None,
            "attachments": attachments,
            "embeds": [],
            "mentions": [],
            "mention_roles": [],
            "type": 0,
        }
        return answer(message)

    app.router.add_get("/api/v10/users/@me", me)
    app.router.add_post("/api/v10/channels/{channel}/messages", create_message)
    return app


async def serve(sizes: list[int]) -> None:
    """Run a fake WaveSpeed per video size and the Discord sink; print their URLs as one JSON
    line; stop when stdin closes."""
    fakes = {
        size: StreamingFake(os.urandom(size * MB), api_key=API_KEY, processing_s=0.01)
        for size in sizes
    }
    for fake in fakes.values():
        await fake.start()
    runner = web.AppRunner(discord_sink(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    urls = {"wavespeed": {s: f.base_url for s, f in fakes.items()}}
    print(json.dumps(urls | {"discord": f"http://127.0.0.1:{port}"}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()
    for fake in fakes.values():
        await fake.stop()


# --- the bot's process: one cell -----------------------------------------------------------------


@dataclass(frozen=True)
class HeldVideo(Video):
    """A video as it was before streaming: its bytes in memory."""

    data: bytes = b""


class HeldRunner(JobRunner):
    """The runner with the download from before streaming: the body read in 64 KiB chunks,
    joined, and kept in the video (bot/wavespeed/client.py's old `download`)."""

    session: aiohttp.ClientSession | None = None

    async def _fetch_video(self, job: JobRecord, delivery: Delivery) -> Video | None:
        assert job.output_url is not None
        if self.session is None:
            self.session = aiohttp.ClientSession()  # like the client's: 100 connections
        timeout = aiohttp.ClientTimeout(total=TIMEOUTS.download_s)
        async with self.session.get(job.output_url, timeout=timeout) as response:
            data = await read_limited(response, MAX_VIDEO_BYTES)
        return HeldVideo(job.output_url, None, len(data), False, None, 0.0, data=data)


async def read_limited(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The old download's reading, unchanged."""
    if response.content_length is not None and response.content_length > max_bytes:
        raise TooLarge(response.content_length, max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(size, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


class SinkDelivery:
    """Posts each video with discord.py to its own channel at the sink, as DiscordDelivery's
    channel route does (a new discord.File per send)."""

    def __init__(self, bot: discord.Client) -> None:
        self.bot = bot
        self.posted = 0
        self.failures: list[str] = []

    async def progress(self, job: JobRecord, progress: Progress) -> None:
        pass

    async def attach_limit(self, job: JobRecord) -> int:
        return UPLOAD_LIMIT

    async def post_video(self, job: JobRecord, video: Video) -> Posted:
        name = f"wanbot-{job.id}.mp4"
        if isinstance(video, HeldVideo):
            file = discord.File(io.BytesIO(video.data), name)
        else:
            assert video.path is not None, "the bench's videos are all under the limit"
            file = discord.File(video.path, name)
        channel = self.bot.get_partial_messageable(FIRST_CHANNEL + job.id, guild_id=GUILD)
        message = await channel.send(f"<@{job.member_id}> your video", file=file)
        [attachment] = message.attachments
        assert attachment.size == video.size, (attachment.size, video.size)
        self.posted += 1
        return Posted(message.channel.id, message.id)

    async def find_post(self, job: JobRecord) -> Posted | None:
        return None

    async def delivered(self, job: JobRecord, video: Video) -> None:
        pass

    async def failed(self, job: JobRecord, failure: JobFailure) -> None:
        self.failures.append(f"{failure.kind}: {failure.message}")

    async def undecided(self, job: JobRecord, candidate_ids: list[str]) -> None:
        pass


def path_to(target: JobState) -> list[JobState]:
    """The states from `reserved` to `target` along the lifecycle's shortest path."""
    paths = {JobState.RESERVED: [JobState.RESERVED]}
    queue = deque([JobState.RESERVED])
    while queue:
        state = queue.popleft()
        for after in sorted(TRANSITIONS.get(state, ()), key=str):
            if after not in paths and after not in (JobState.FAILED, JobState.UNCERTAIN):
                paths[after] = [*paths[state], after]
                queue.append(after)
    return paths[target][1:]


async def ready_jobs(
    runner: JobRunner, client: WaveSpeedClient, storage: Any, count: int
) -> list[JobRecord]:
    """`count` jobs whose tasks are completed at the fake, each stored as ready to download."""
    predictions = await asyncio.gather(
        *(client.submit(REQUEST.to_api_body()) for _ in range(count))
    )
    results = await asyncio.gather(*(client.wait_for_result(p.id, POLL) for p in predictions))
    jobs = []
    for n, result in enumerate(results):
        job = await runner.reserve(JobOwner(GUILD, FIRST_CHANNEL + n, 100 + n), REQUEST)
        for state in path_to(JobState.READY):
            changes: dict[str, Any] = {}
            if state is JobState.SUBMITTED:
                changes = {"prediction_id": result.id, "wavespeed_status": "created"}
            elif state is JobState.READY:
                changes = {"output_url": result.outputs[0], "has_nsfw": False, "inference_ms": 1}
            job = await storage.advance(job.id, state, **changes)
        jobs.append(job)
    return jobs


def rss_bytes() -> int:
    """The process's resident set now (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def ticker(lags: list[float], stop: asyncio.Event) -> None:
    """Sleep TICK_S over and over; note how late each wake-up is."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(TICK_S)
        lags.append(loop.time() - before - TICK_S)


async def cell(path: str, jobs: int, wavespeed_url: str, discord_url: str) -> dict[str, Any]:
    """Deliver `jobs` ready jobs at once along `path`; what it cost."""
    from storage import open_storage

    discord.http.Route.BASE = f"{discord_url}/api/v10"
    with tempfile.TemporaryDirectory() as folder:
        storage = await open_storage(f"sqlite:///{folder}/bench.db", POLICY)
        client = WaveSpeedClient(API_KEY, wavespeed_url, timeouts=TIMEOUTS)
        kind = JobRunner if path == "streamed" else HeldRunner
        runner = kind(storage, client, poll=POLL, max_jobs_per_member=jobs)
        bot = discord.Client(intents=discord.Intents.none())
        try:
            await bot.http.static_login(TOKEN)  # REST only: no gateway, no application info
            ready = await ready_jobs(runner, client, storage, jobs)
            delivery = SinkDelivery(bot)
            idle = rss_bytes()
            idle_lags: list[float] = []
            stop = asyncio.Event()
            ticking = asyncio.create_task(ticker(idle_lags, stop))
            await asyncio.sleep(1.0)
            stop.set()
            await ticking
            lags: list[float] = []
            stop = asyncio.Event()
            ticking = asyncio.create_task(ticker(lags, stop))
            started = time.perf_counter()
            for job in ready:
                runner.run(job, delivery)
            await runner.wait_all()
            wall = time.perf_counter() - started
            stop.set()
            await ticking
        finally:
            await runner.close()
            if isinstance(runner, HeldRunner) and runner.session is not None:
                await runner.session.close()
            await bot.close()
            await client.close()
            await storage.close()
    if delivery.posted != jobs:
        raise RuntimeError(f"{delivery.posted}/{jobs} posted: {delivery.failures[:3]}")
    lags.sort()
    return {
        "idle_mb": idle / MB,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB,
        "lag_p50_ms": lags[len(lags) // 2] * 1000,
        "lag_p99_ms": lags[int(len(lags) * 0.99)] * 1000,
        "lag_max_ms": lags[-1] * 1000,
        "idle_max_ms": max(idle_lags) * 1000,
        "wall_s": wall,
    }


def run_cell(path: str, jobs: int, wavespeed_url: str, discord_url: str) -> dict[str, Any]:
    """One cell in a fresh bot process."""
    out = subprocess.run(
        [sys.executable, SCRIPT, "--cell", path, str(jobs), wavespeed_url, discord_url],
        env=dict(os.environ, PYTHONPATH=ROOT),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise RuntimeError(f"the {path} cell failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


COLUMNS = ("peak_mb", "lag_p50_ms", "lag_p99_ms", "lag_max_ms", "idle_max_ms", "wall_s")
HELD_COPIES = 2.5  # the held path's peak in videos per job (2.3 measured at 20 MB)


def available_bytes() -> int:
    """MemAvailable (Linux): what can be used without swapping or the OOM killer."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 20, 50], help="MB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--paths", nargs="+", default=["streamed", "held"])
    parser.add_argument("--serve", type=int, nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--cell", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    if args.cell:
        path, jobs, wavespeed_url, discord_url = args.cell
        print(json.dumps(asyncio.run(cell(path, int(jobs), wavespeed_url, discord_url))))
        return

    fakes = subprocess.Popen(
        [sys.executable, SCRIPT, "--serve", *map(str, args.sizes)],
        env=dict(os.environ, PYTHONPATH=ROOT),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fakes.stdout is not None
        urls = json.loads(fakes.stdout.readline())
        print(
            f"{args.jobs} jobs ready together; median of {args.repeat} runs, each in a fresh "
            f"process; RSS of the bot process; loop lag: lateness of a {TICK_S * 1000:g} ms ticker"
        )
        header = (
            f"{'video':>6}  {'path':<9} {'peak RSS':>9} {'lag p50':>9} {'lag p99':>9} "
            f"{'lag max':>9} {'idle max':>9} {'wall':>7} {'MB/s':>6}"
        )
        print(header)
        print("-" * len(header))
        for size in args.sizes:
            paths = list(args.paths)
            need = args.jobs * size * MB * HELD_COPIES
            if "held" in paths and need > available_bytes() / 2:
                paths.remove("held")
                print(f"{size:>3} MB  held      skipped: needs ~{need / 1e9:.0f} GB", flush=True)
            results: dict[str, list[dict[str, Any]]] = {path: [] for path in paths}
            for _ in range(args.repeat):  # alternate, so both see the same machine
                for path in paths:
                    wavespeed_url = urls["wavespeed"][str(size)]
                    results[path].append(run_cell(path, args.jobs, wavespeed_url, urls["discord"]))
            for path, runs in results.items():
                m = {column: statistics.median(r[column] for r in runs) for column in COLUMNS}
                print(
                    f"{size:>3} MB  {path:<9} {m['peak_mb']:>6.0f} MB {m['lag_p50_ms']:>6.1f} ms "
                    f"{m['lag_p99_ms']:>6.1f} ms {m['lag_max_ms']:>6.0f} ms "
                    f"{m['idle_max_ms']:>6.0f} ms {m['wall_s']:>5.1f} s "
                    f"{args.jobs * size / m['wall_s']:>6.0f}",
                    flush=True,
                )
    finally:
        if fakes.stdin is not None:
            fakes.stdin.close()
        try:
            fakes.wait(timeout=30)
        except subprocess.TimeoutExpired:
            fakes.kill()


if __name__ == "__main__":
    main()
