"""Scale: three real bot processes, shards 0, 1 and 2 of 3, on one PostgreSQL database, the fake
Discord and the fake WaveSpeed.

A server in each shard asks for a video; while all three are generating, the process of one shard
stops, its job in the middle of generating at WaveSpeed:

- killed (SIGKILL): its pid is gone from this machine, so another process takes the job over at
  its next look (every half JOB_LEASE_S), before the dead one's lease has even run out;
- frozen (SIGSTOP, then SIGKILL once the job is taken over): it looks alive, as a process on
  another machine or in another container does (its pid can't be checked from here), so the job
  is taken over only once its lease has run out, at the next look after that.

Either way each of the three videos is posted once, as the follow-up of the member's interaction
(the taken-over one too: its token is kept with the job), each job is reserved and charged once,
the taken-over job's task is followed, not submitted again, only one process ever takes it over,
and the store's running totals match its ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest

from bot.domain.lifecycle import JobState
from storage import open_storage
from tests.discord_world import CHANNEL, GUILD, MEMBER, World, make_world, start_bot_process
from tests.fakes.discord_gateway import shard_of
from tests.fakes.discord_models import FakeMessage
from tests.fakes.discord_server import FakeInteraction, Fault
from tests.fakes.images import tiny_png
from tests.test_crash import CHANNEL_POST, RUN_WITH_TEST_TIMINGS

T = TypeVar("T")
Row = asyncpg.Record

SHARD_COUNT = 3
LEASE_S = 5.0  # JOB_LEASE_S's minimum: renewed every 1.7 s, looked for every 2.5 s
VICTIM = 1  # the shard whose process stops mid-job
VICTIM_TASK_S = 4.0  # how long its task generates at WaveSpeed: still running at the stop
OTHER_TASK_S = 3.0  # the other shards' tasks: still running at the stop too
SLACK_S = 1.0  # for a busy machine: late wake-ups, queries, this test's polling
POLL_S = 0.02
TOOK_OVER = "following 1 more unfinished job(s)"  # what the runner logs when it claims a job


def _guild_in(shard: int) -> int:
    """A server id (GUILD, or one step up in the id's upper bits) that shard `shard` of 3 gets."""
    candidates = (GUILD + (step << 22) for step in range(SHARD_COUNT))
    return next(g for g in candidates if shard_of(g, SHARD_COUNT) == shard)


GUILDS = {shard: _guild_in(shard) for shard in range(SHARD_COUNT)}
CHANNELS = {
    guild: CHANNEL if guild == GUILD else 730_000_000_000_000_010 + shard
    for shard, guild in GUILDS.items()
}


def test_each_shard_of_three_has_a_server() -> None:
    assert sorted(shard_of(g, SHARD_COUNT) for g in GUILDS.values()) == [0, 1, 2]
    assert len(set(CHANNELS.values())) == SHARD_COUNT


def add_servers(world: World) -> None:
    """The servers of shards other than GUILD's, each with a channel and MEMBER."""
    for shard, guild in GUILDS.items():
        if guild != GUILD:
            world.discord.add_guild(guild, f"Studio {shard}")
            world.discord.add_channel(guild, CHANNELS[guild], "videos")
            world.discord.add_member(guild, MEMBER, username="ada")


# --- the processes ------------------------------------------------------------------------------


@dataclass
class BotProcess:
    """A bot process running one shard, its output read while it runs (a full pipe would block
    it)."""

    shard: int
    process: asyncio.subprocess.Process
    output: asyncio.Task[tuple[bytes, bytes]]

    def owns(self, lease_owner: str | None) -> bool:
        """Whether a lease owner id (`<place>:<pid>:<nonce>`) names a runner of this process."""
        return lease_owner is not None and lease_owner.split(":")[-2] == str(self.process.pid)

    async def log(self) -> str:
        """What it logged (once it has ended)."""
        _, stderr = await self.output
        return stderr.decode(errors="replace")


@contextlib.asynccontextmanager
async def three_processes(world: World) -> AsyncIterator[dict[int, BotProcess]]:
    """Shards 0, 1 and 2 of 3, a process each, on the world's database, with 5 s leases; once
    every shard is READY. Every process still running at the end is killed."""
    bots: dict[int, BotProcess] = {}
    try:
        for shard in range(SHARD_COUNT):
            process = await start_bot_process(
                world,
                RUN_WITH_TEST_TIMINGS,
                SHARD_COUNT=str(SHARD_COUNT),
                SHARD_IDS=str(shard),
                JOB_LEASE_S=str(LEASE_S),
            )
            bots[shard] = BotProcess(shard, process, asyncio.create_task(process.communicate()))
        await world.discord.wait_ready(timeout=30, sessions=SHARD_COUNT)
        yield bots
    finally:
        for bot in bots.values():
            if bot.process.returncode is None:
                bot.process.kill()
        outputs = [bot.output for bot in bots.values()]
        ended = await asyncio.wait_for(asyncio.gather(*outputs, return_exceptions=True), 20)
        for bot, output in zip(bots.values(), ended, strict=True):  # shown if the test fails
            log = output[1].decode(errors="replace") if isinstance(output, tuple) else output
            print(f"--- shard {bot.shard} (pid {bot.process.pid}) ---\n{log}")


async def stop_cleanly(bots: list[BotProcess]) -> None:
    """SIGTERM, as `docker stop` does, and wait until they have exited."""
    for bot in bots:
        bot.process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(asyncio.gather(*(bot.output for bot in bots)), 20)


# --- what the processes share -------------------------------------------------------------------

JOBS_SQL = """
SELECT id, guild_id, channel_id, state, failure_kind, prediction_id, lease_owner, lease_until,
       price_micro, result_message_id
FROM jobs ORDER BY id
"""


async def until(
    db: asyncpg.Connection,
    found: Callable[[list[Row]], T | None],
    what: str,
    timeout_s: float,
) -> T:
    """Read the jobs every POLL_S until `found` returns something, and return it."""
    rows: list[Row] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while True:
                rows = await db.fetch(JOBS_SQL)
                result = found(rows)
                if result is not None:
                    return result
                await asyncio.sleep(POLL_S)
    pytest.fail(f"not within {timeout_s} s: {what}; the jobs: {[dict(r) for r in rows]}")


def job_of(rows: list[Row], guild_id: int) -> Row | None:
    return next((row for row in rows if row["guild_id"] == guild_id), None)


async def invoke_video(world: World, guild_id: int) -> FakeInteraction:
    """/video with a picture and a prompt, by MEMBER in the server's channel."""
    attachment = world.discord.add_attachment("cat.png", tiny_png(), "image/png")
    options = [
        {"name": "image", "type": 11, "value": attachment},
        {"name": "prompt", "type": 3, "value": f"the cat of {guild_id} turns its head"},
    ]
    return await world.discord.invoke_command(
        "video", guild_id=guild_id, channel_id=CHANNELS[guild_id], user_id=MEMBER, options=options
    )


async def start_job(
    world: World, db: asyncpg.Connection, shard: int, processing_s: float
) -> tuple[FakeInteraction, Row]:
    """A /video in the shard's server whose task generates `processing_s`; once it is submitted.
    (WaveSpeed's plans go to tasks in submit order, so one job at a time.)"""
    world.wavespeed.next_task(processing_s=processing_s)
    interaction = await invoke_video(world, GUILDS[shard])

    def submitted(rows: list[Row]) -> Row | None:
        job = job_of(rows, GUILDS[shard])
        return job if job is not None and job["state"] == JobState.SUBMITTED else None

    return interaction, await until(db, submitted, f"shard {shard}'s job submitted", 15)


def hold_the_taken_over_post(world: World, interaction: FakeInteraction) -> list[Fault]:
    """Hold the answer to a post of the video as the interaction's follow-up, and to a channel
    message (only a process without the interaction's token posts one)."""
    follow_up = rf"/webhooks/\d+/{re.escape(interaction.token)}"
    return [
        world.discord.hold_next("POST", follow_up),
        world.discord.hold_next("POST", CHANNEL_POST),
    ]


def videos_of(world: World, job_id: int) -> list[FakeMessage]:
    """The live messages, anywhere, that carry the job's video."""
    name = f"wanbot-{job_id}.mp4"
    return [
        m
        for m in world.discord.messages.values()
        if not m.deleted and any(a.filename == name for a in m.attachments)
    ]


# --- the test -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Takeover:
    """When the taking process first showed as the job's lease owner, and when the stopped one
    last did (seen by this test's polling)."""

    owner: str
    first_seen: datetime
    stopped_last_seen: datetime


async def wait_for_takeover(db: asyncpg.Connection, job_id: int, stopped_owner: str) -> Takeover:
    last_seen = datetime.now(UTC)

    def taken(rows: list[Row]) -> str | None:
        nonlocal last_seen
        [job] = [row for row in rows if row["id"] == job_id]
        if job["lease_owner"] == stopped_owner:
            last_seen = datetime.now(UTC)
            return None
        return job["lease_owner"] or "(none)"

    owner = await until(db, taken, "the stopped process's job taken over", 3 * LEASE_S)
    return Takeover(owner, datetime.now(UTC), last_seen)


@pytest.mark.postgres
@pytest.mark.parametrize("stop", ["kill", "freeze"])
async def test_three_shards_deliver_and_a_stopped_ones_job_is_taken_over_once(
    tmp_path: Path, postgres_url: str, stop: str
) -> None:
    started = time.monotonic()
    async with make_world(tmp_path, database_url=postgres_url) as world:
        add_servers(world)
        async with three_processes(world) as bots:
            db = await asyncpg.connect(postgres_url)
            try:
                victim = bots[VICTIM]
                survivors = [bot for shard, bot in bots.items() if shard != VICTIM]
                interactions: dict[int, FakeInteraction] = {}
                jobs: dict[int, Row] = {}
                for shard in [VICTIM, *(s for s in bots if s != VICTIM)]:
                    task_s = VICTIM_TASK_S if shard == VICTIM else OTHER_TASK_S
                    interactions[shard], jobs[shard] = await start_job(world, db, shard, task_s)
                    # the process of the server's shard reserved it, and follows it
                    assert bots[shard].owns(jobs[shard]["lease_owner"]), (shard, dict(jobs[shard]))
                job = jobs[VICTIM]
                task = world.wavespeed.tasks[job["prediction_id"]]

                def renewed(rows: list[Row]) -> Row | None:
                    row = job_of(rows, GUILDS[VICTIM])
                    expiry = row and row["lease_until"]  # None once released
                    return row if expiry and expiry > job["lease_until"] else None

                # its process renews the lease while it follows the job (every third of a lease)
                job = await until(db, renewed, "the victim's lease renewed", LEASE_S)
                assert job["lease_owner"] == jobs[VICTIM]["lease_owner"]

                # All three are generating; the victim's job stands in `submitted`.
                rows = await db.fetch(JOBS_SQL)
                assert [r["state"] for r in rows] == [JobState.SUBMITTED] * SHARD_COUNT
                assert task.status in ("created", "processing")
                # The taker posts the video through the member's interaction (its token is kept
                # with the job), or else as a channel message. Hold the answer of either, so the
                # job shows in `posting` under the taker's lease.
                posts = hold_the_taken_over_post(world, interactions[VICTIM])
                victim_owner = job["lease_owner"]
                if stop == "kill":
                    victim.process.kill()
                    await victim.process.wait()
                else:
                    victim.process.send_signal(signal.SIGSTOP)
                    await asyncio.sleep(0.2)  # a renewal already sent lands meanwhile
                stopped_at = datetime.now(UTC)
                stopped_row = job_of(await db.fetch(JOBS_SQL), GUILDS[VICTIM])
                assert stopped_row is not None and stopped_row["lease_owner"] == victim_owner
                lease_until: datetime = stopped_row["lease_until"]
                assert lease_until - stopped_at >= timedelta(seconds=LEASE_S * 2 / 3 - SLACK_S)

                takeover = await wait_for_takeover(db, job["id"], victim_owner)
                takers = [bot for bot in survivors if bot.owns(takeover.owner)]
                assert len(takers) == 1, (takeover, [bot.process.pid for bot in survivors])
                [taker] = takers
                print(
                    f"{stop}: taken over by shard {taker.shard} "
                    f"{(takeover.first_seen - stopped_at).total_seconds():.2f} s after the stop, "
                    f"{(takeover.first_seen - lease_until).total_seconds():+.2f} s from the end "
                    "of its lease"
                )
                next_look = timedelta(seconds=LEASE_S / 2 + SLACK_S)
                if stop == "kill":
                    # known dead on this machine: taken at the next look, its lease still running
                    assert takeover.first_seen - stopped_at <= next_look, takeover
                    assert takeover.first_seen < lease_until, (takeover, lease_until)
                else:
                    # alive as far as anyone can tell: never taken while its lease lasted
                    assert takeover.stopped_last_seen > lease_until - timedelta(seconds=0.5)
                    assert takeover.first_seen - lease_until <= next_look, (takeover, lease_until)
                    victim.process.kill()  # it never comes back
                    await victim.process.wait()

                await world.discord.notifier.wait_for(
                    lambda: any(held.hits for held in posts),
                    VICTIM_TASK_S + 10,
                    "the taken-over job's video posted",
                )
                row = job_of(await db.fetch(JOBS_SQL), GUILDS[VICTIM])
                assert row is not None and row["state"] == JobState.POSTING
                assert row["lease_owner"] == takeover.owner
                assert row["prediction_id"] == job["prediction_id"]  # followed, not submitted again
                world.discord.clear_faults()  # releases the held answer

                def all_delivered(rows: list[Row]) -> list[Row] | None:
                    done = all(r["state"] == JobState.DELIVERED for r in rows)
                    return rows if done and len(rows) == SHARD_COUNT else None

                await until(db, all_delivered, "every job delivered", 10)
                await asyncio.sleep(0.5)  # anything more they would wrongly do, they do now
                await stop_cleanly(survivors)
                rows = await db.fetch(JOBS_SQL)
            finally:
                await db.close()

        logs = {bot.shard: await bot.log() for bot in bots.values()}
        assert victim.process.returncode == -signal.SIGKILL
        assert [bot.process.returncode for bot in survivors] == [0, 0], logs
        # One process took the job over, once; the other never followed it.
        assert logs[taker.shard].count(TOOK_OVER) == 1, logs[taker.shard]
        assert all(TOOK_OVER not in logs[bot.shard] for bot in survivors if bot is not taker)

        storage = await open_storage(postgres_url, world.settings.budget_policy)
        try:
            assert await storage.unfinished_jobs() == []
            assert await storage.audit() == []
            final = {r["guild_id"]: r for r in rows}
            assert set(final) == set(GUILDS.values())
            for shard, guild_id in GUILDS.items():
                row = final[guild_id]
                [video] = videos_of(world, row["id"])  # posted once
                assert video.channel_id == CHANNELS[guild_id] and row["lease_owner"] is None
                assert row["result_message_id"] == video.id
                ledger = [
                    (e.kind, e.amount_micro)
                    for e in await storage.ledger(guild_id)
                    if e.job_id == row["id"]
                ]
                price = row["price_micro"]
                assert price > 0 and ledger == [("reserve", price), ("charge", price)]
                # through the member's interaction, by whichever process followed the job
                interaction = interactions[shard]
                assert interaction.followups == [video], (shard, video)
                assert interaction.original and "Done" in interaction.original.content
        finally:
            await storage.close()
        assert len(world.wavespeed.submissions) == len(world.wavespeed.tasks) == SHARD_COUNT
    assert time.monotonic() - started < 30
