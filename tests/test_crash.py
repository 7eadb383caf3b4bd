"""kill -9 at every state of the job lifecycle: the real bot in a process of its own.

Each case runs `/video` through the real discord.py client in a subprocess against the loopback
fakes, freezes the job in one state (a fake holds an answer), SIGKILLs the process there, starts
a new one on the same database, and checks what the member and the ledger got: one reservation
and exactly one settlement, the video posted at most once (exactly once when charged), and no job
left unfinished.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.domain.lifecycle import FailureKind, JobState
from storage import database_path
from tests.discord_world import World, make_world, start_bot_process
from tests.fakes.discord_models import FakeMessage

RUN_WITH_TEST_TIMINGS = """
import sys, discord.http, discord.gateway, yarl
discord.http.Route.BASE = sys.argv[1]
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(sys.argv[2])
from bot.app import run
from bot.config import load_settings
from bot.logs import setup_logging
from bot.services import Tuning
from tests.conftest import FAST_POLL, FAST_RETRY, FAST_TIMEOUTS
settings = load_settings()
setup_logging("INFO", [])
tuning = Tuning(
    poll=FAST_POLL, retry=FAST_RETRY, timeouts=FAST_TIMEOUTS,
    reconcile_every_s=0.1, download_pause_s=0.05, queue_tick_s=0.05,
)
run(settings, settings.require_discord_token(), tuning)
"""
FOLLOW_UP = r"/webhooks/\d+/[^/]+"
STATUS_EDIT = r"/webhooks/\d+/[^/]+/messages/@original"
CHANNEL_POST = r"/channels/\d+/messages"


def has_video(message: FakeMessage) -> bool:
    return any(a.filename.endswith(".mp4") for a in message.attachments)


@dataclass
class Bot:
    """A bot process, killed (or stopped) at the end of its block."""

    process: asyncio.subprocess.Process

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no clean-up, no last words


@contextlib.asynccontextmanager
async def bot_process(world: World) -> AsyncIterator[Bot]:
    process = await start_bot_process(
        world,
        RUN_WITH_TEST_TIMINGS,
        capture=False,
        SUBMIT_ABSENT_AFTER_S="1",
        SUBMIT_HOLD_MAX_S="60",
    )
    try:
        await world.discord.wait_ready(timeout=20)
        yield Bot(process)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await world.discord.wait_disconnected(timeout=10)


def read_job(db_path: str) -> dict[str, object] | None:
    """Job 1 as another process sees it in the database file (None before it exists)."""
    with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as db:
        db.row_factory = sqlite3.Row
        try:
            row = db.execute("SELECT * FROM job_records WHERE id = 1").fetchone()
        except sqlite3.OperationalError:  # the schema is not there yet
            return None
    return dict(row) if row else None


def read_ledger(db_path: str) -> list[tuple[str, int]]:
    with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as db:
        rows = db.execute("SELECT kind, amount_micro FROM ledger WHERE job_id = 1 ORDER BY id")
        return [(kind, amount) for kind, amount in rows]


async def wait_for_state(world: World, *states: JobState, timeout: float = 20.0) -> None:  # noqa: ASYNC109
    path = database_path(world.settings.database_url)
    async with asyncio.timeout(timeout):
        while True:
            job = await asyncio.to_thread(read_job, path)
            if job is not None and job["state"] in states:
                return
            await asyncio.sleep(0.02)


@dataclass(frozen=True)
class Crash:
    """Where to freeze the job before the kill, and how the next process must end it."""

    freeze: Callable[[World], Awaitable[None]]  # arranges faults, returns once frozen
    at: JobState
    thaw: Callable[[World], None]  # what to clear before the restart
    failure: FailureKind | None = None  # None: the video is delivered (and charged)
    tasks: int = 1


def _thaw_all(world: World) -> None:
    world.wavespeed.clear_faults()
    world.discord.clear_faults()


async def _freeze_uploading(world: World) -> None:
    world.wavespeed.slow_next("upload", 60)
    await world.video()
    await wait_for_state(world, JobState.RESERVED)
    await asyncio.sleep(0.3)  # inside the upload


async def _freeze_queued(world: World) -> None:
    """WaveSpeed refused the submit with 429 and a long Retry-After: the job waits in the local
    queue for its turn to come back."""
    world.wavespeed.fail_next("submit", 429, retry_after=60)
    await world.video()
    while not world.wavespeed.calls("submit"):
        await asyncio.sleep(0.02)
    await wait_for_state(world, JobState.QUEUED)


async def _freeze_submitting(world: World) -> None:
    world.wavespeed.lose_answer_next("submit", create=True)
    await world.video()
    await wait_for_state(world, JobState.SUBMITTING)


async def _freeze_uncertain(world: World) -> None:
    world.wavespeed.lose_answer_next("submit", create=False)
    world.wavespeed.fail_next("history", 500, times=None)
    await world.video()
    await wait_for_state(world, JobState.UNCERTAIN)


async def _freeze_generating(world: World) -> None:
    world.wavespeed.next_task(processing_s=3.0)
    await world.video()
    await wait_for_state(world, JobState.SUBMITTED)


async def _freeze_downloading(world: World) -> None:
    world.wavespeed.slow_next("output", 60)
    await world.video()
    await wait_for_state(world, JobState.READY)
    await asyncio.sleep(0.3)  # inside the download


async def _freeze_after_follow_up_posted(world: World) -> None:
    """The follow-up carrying the video was created; its answer never reaches the bot."""
    held = world.discord.hold_next("POST", FOLLOW_UP)
    await world.video()
    await world.discord.wait_for_fault(held, timeout=20)
    await wait_for_state(world, JobState.POSTING)


async def _freeze_after_channel_post(world: World) -> None:
    """The token is dead, so the video goes out as a channel message, which is created; its
    answer never reaches the bot. After the restart the channel can't be read either (only
    Discord's nonce can stop a second copy then)."""
    world.discord.fail_next("POST", FOLLOW_UP, 404, 10015, "Unknown Webhook", times=10)
    world.discord.fail_next("PATCH", STATUS_EDIT, 404, 10015, "Unknown Webhook", times=10)
    held = world.discord.hold_next("POST", CHANNEL_POST)
    await world.video()
    await world.discord.wait_for_fault(held, timeout=20)
    await wait_for_state(world, JobState.POSTING)


def _thaw_but_hide_history(world: World) -> None:
    _thaw_all(world)
    world.discord.fail_next("GET", CHANNEL_POST, 403, 50001, "Missing Access", times=10)


async def _freeze_closing_edit(world: World) -> None:
    """The video was posted and recorded; the closing "✅ Done" edit is in flight (the first
    defect of the lifecycle issue: a kill here used to post the video again)."""
    posting = world.discord.hold_next("POST", FOLLOW_UP)
    await world.video()
    await world.discord.wait_for_fault(posting, timeout=20)
    closing = world.discord.hold_next("PATCH", STATUS_EDIT)
    posting.release()
    await world.discord.wait_for_fault(closing, timeout=20)
    await wait_for_state(world, JobState.DELIVERED)


async def _freeze_telling_failure(world: World) -> None:
    """The task failed and was refunded; the message telling the member is in flight."""
    world.wavespeed.next_task("failed", error_code=1403)
    world.discord.fail_next("PATCH", STATUS_EDIT, 404, 10015, "Unknown Webhook", times=10)
    held = world.discord.hold_next("POST", CHANNEL_POST)
    await world.video()
    await world.discord.wait_for_fault(held, timeout=20)
    await wait_for_state(world, JobState.FAILED)


CRASHES = {
    "reserved (uploading)": Crash(
        _freeze_uploading, JobState.RESERVED, _thaw_all, FailureKind.INTERRUPTED, tasks=0
    ),
    "queued (sent back by a 429)": Crash(_freeze_queued, JobState.QUEUED, _thaw_all),
    "submitting (task created, answer lost)": Crash(
        _freeze_submitting, JobState.SUBMITTING, _thaw_all
    ),
    "uncertain (submit never reached WaveSpeed)": Crash(
        _freeze_uncertain, JobState.UNCERTAIN, _thaw_all, FailureKind.NOT_SUBMITTED, tasks=0
    ),
    "submitted (generating)": Crash(_freeze_generating, JobState.SUBMITTED, _thaw_all),
    "ready (downloading)": Crash(_freeze_downloading, JobState.READY, _thaw_all),
    "posting: follow-up made, not recorded": Crash(
        _freeze_after_follow_up_posted, JobState.POSTING, _thaw_all
    ),
    "posting: channel message made, not recorded, history unreadable": Crash(
        _freeze_after_channel_post, JobState.POSTING, _thaw_but_hide_history
    ),
    "delivered: closing status edit in flight": Crash(
        _freeze_closing_edit, JobState.DELIVERED, _thaw_all
    ),
    "failed: telling the member": Crash(
        _freeze_telling_failure, JobState.FAILED, _thaw_all, FailureKind.GENERATION_FAILED
    ),
}


@pytest.mark.parametrize("crash", CRASHES.values(), ids=CRASHES.keys())
async def test_kill_9_at_every_state_settles_once_and_posts_once(
    tmp_path: Path, crash: Crash
) -> None:
    async with make_world(tmp_path) as world:
        path = database_path(world.settings.database_url)
        async with bot_process(world) as first:
            await crash.freeze(world)
            job = await asyncio.to_thread(read_job, path)
            assert job is not None and job["state"] == crash.at
            first.kill()
        crash.thaw(world)

        async with bot_process(world):
            await wait_for_state(world, JobState.DELIVERED, JobState.CLOSED)
            await asyncio.sleep(0.5)  # anything more it would wrongly do, it does now

        job = await asyncio.to_thread(read_job, path)
        assert job is not None
        ledger = await asyncio.to_thread(read_ledger, path)
        price = int(job["price_micro"])  # type: ignore[call-overload]
        videos = [m for m in world.discord.messages.values() if has_video(m) and not m.deleted]
        if crash.failure is None:
            assert job["state"] == JobState.DELIVERED
            assert ledger == [("reserve", price), ("charge", price)]
            assert len(videos) == 1, videos
            assert job["result_message_id"] == videos[0].id
        else:
            assert job["state"] == JobState.CLOSED and job["failure_kind"] == crash.failure
            assert ledger == [("reserve", price), ("refund", price)]
            assert videos == []
        assert len(world.wavespeed.tasks) == crash.tasks
        assert len(world.wavespeed.submissions) == crash.tasks
