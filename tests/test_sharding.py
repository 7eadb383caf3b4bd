"""Gateway sharding: the fake routes guilds per shard, and two bot processes split two shards."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import pytest
from discord.ext import commands

from bot.app import WanBot
from storage import open_storage
from tests.discord_world import CHANNEL, GUILD, MEMBER, World, make_world, start_bot_process
from tests.fakes.discord_gateway import GatewaySession, shard_of
from tests.fakes.discord_server import FakeDiscord, FakeInteraction, running_bot
from tests.fakes.images import tiny_png
from tests.test_crash import RUN_WITH_TEST_TIMINGS

#: The world's GUILD is in shard 1 of 2; a guild one step up in the id's upper bits is in shard 0.
OTHER_GUILD = GUILD + (1 << 22)
CHANNELS = {GUILD: CHANNEL, OTHER_GUILD: 710_000_000_000_000_010}
COMMANDS_PUT = r"/applications/\d+/commands"


def add_other_guild(fake: FakeDiscord) -> None:
    """A second server with a channel and MEMBER, in the other shard of two than GUILD."""
    fake.add_guild(OTHER_GUILD, "Gallery")
    fake.add_channel(OTHER_GUILD, CHANNELS[OTHER_GUILD], "videos")
    fake.add_member(OTHER_GUILD, MEMBER, username="ada")


def shard_of_guild(guild_id: int) -> int:
    """The shard (of two) that receives the guild's events."""
    return shard_of(guild_id, 2)


def guilds_of(shard: int) -> list[int]:
    """The test guilds in this shard of two."""
    return [guild_id for guild_id in CHANNELS if shard_of_guild(guild_id) == shard]


def test_the_two_guilds_are_in_different_shards() -> None:
    assert guilds_of(0) == [OTHER_GUILD] and guilds_of(1) == [GUILD]


# The fake gateway


class RecordingBot(commands.AutoShardedBot):
    """Runs some of two shards and keeps the guild of every interaction it receives."""

    def __init__(self, shard_ids: list[int]) -> None:
        super().__init__(
            commands.when_mentioned,
            intents=discord.Intents(guilds=True),
            shard_count=2,
            shard_ids=shard_ids,
        )
        self.seen: list[int | None] = []

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        self.seen.append(interaction.guild_id)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        fake.add_guild(GUILD, "Studio")
        fake.add_channel(GUILD, CHANNELS[GUILD], "videos")
        add_other_guild(fake)
        yield fake


def events(session: GatewaySession, name: str) -> list[dict[str, Any]]:
    """The payloads of the events `name` the fake sent the session."""
    return [frame["d"] for frame in session.frames if frame["t"] == name]


async def ping(fake: FakeDiscord, guild_id: int) -> FakeInteraction:
    """A slash command in the guild's channel (no bot answers it: only delivery counts)."""
    return await fake.invoke_command(
        "ping", guild_id=guild_id, channel_id=CHANNELS[guild_id], user_id=MEMBER
    )


async def test_each_shard_gets_only_its_guilds_and_their_interactions(fake: FakeDiscord) -> None:
    async with (
        running_bot(fake, lambda: RecordingBot([0])) as first,
        running_bot(fake, lambda: RecordingBot([1])) as second,
    ):
        bots = {0: first, 1: second}
        for shard, bot in bots.items():
            assert [g.id for g in bot.guilds] == guilds_of(shard)

        arrivals = [
            asyncio.create_task(bots[shard_of_guild(g)].wait_for("interaction")) for g in CHANNELS
        ]
        for guild_id in CHANNELS:
            await ping(fake, guild_id)
        await asyncio.wait_for(asyncio.gather(*arrivals), 5)

        for session in fake.gateway.sessions.values():
            assert session.shard is not None
            [ready] = events(session, "READY")
            mine = [str(guild_id) for guild_id in guilds_of(session.shard[0])]
            assert [g["id"] for g in ready["guilds"]] == mine
            assert [g["id"] for g in events(session, "GUILD_CREATE")] == mine
            assert [i["guild_id"] for i in events(session, "INTERACTION_CREATE")] == mine
        for shard, bot in bots.items():
            assert bot.seen == guilds_of(shard)


async def test_a_guild_whose_shard_is_not_connected_cannot_be_used(fake: FakeDiscord) -> None:
    async with running_bot(fake, lambda: RecordingBot([shard_of_guild(GUILD)])):
        with pytest.raises(RuntimeError, match=f"for guild {OTHER_GUILD}"):
            await ping(fake, OTHER_GUILD)


async def test_a_shard_beyond_the_count_is_refused_like_discord(fake: FakeDiscord) -> None:
    def make() -> discord.Client:
        return discord.Client(intents=discord.Intents(guilds=True), shard_id=2, shard_count=2)

    with pytest.raises(discord.ConnectionClosed) as closed:
        async with running_bot(fake, make):
            pass
    assert closed.value.code == 4010  # Invalid shard


# WanBot


async def identify_at_once(bot: WanBot, shard_id: int | None, *, initial: bool = False) -> None:
    """discord.py spaces a bot's IDENTIFYs 5 s apart, Discord's limit; the fake has none."""


async def test_without_shard_settings_one_bot_runs_every_recommended_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(WanBot, "before_identify_hook", identify_at_once)
    async with make_world(tmp_path) as world:
        add_other_guild(world.discord)
        world.discord.recommended_shards = 2  # what Discord recommends past 2,500 servers
        async with world.bot() as bot:
            assert bot.shard_count == 2 and set(bot.shards) == {0, 1}
            assert {g.id for g in bot.guilds} == set(CHANNELS)
        assert len(world.discord.requests_to("PUT", COMMANDS_PUT)) == 1


async def invoke_video(world: World, guild_id: int) -> FakeInteraction:
    """/video with a picture and a prompt, by MEMBER in the guild's channel."""
    attachment = world.discord.add_attachment("cat.png", tiny_png(), "image/png")
    options = [
        {"name": "image", "type": 11, "value": attachment},
        {"name": "prompt", "type": 3, "value": f"the cat of {guild_id} turns its head"},
    ]
    return await world.discord.invoke_command(
        "video", guild_id=guild_id, channel_id=CHANNELS[guild_id], user_id=MEMBER, options=options
    )


async def ledger_of(world: World, guild_id: int) -> list[tuple[str, int]]:
    """The server's ledger, read from the database the processes shared."""
    storage = await open_storage(world.settings.database_url, world.settings.budget_policy)
    try:
        return [(e.kind, e.amount_micro) for e in await storage.ledger(guild_id)]
    finally:
        await storage.close()


async def stop(
    processes: list[asyncio.subprocess.Process],
    outputs: list[asyncio.Task[tuple[bytes, bytes]]],
) -> list[str]:
    """SIGTERM every process (killing any still there 20 s later); their stderr."""
    for process in processes:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    try:
        finished = await asyncio.wait_for(asyncio.gather(*outputs), 20)
    except TimeoutError:
        for process in processes:
            if process.returncode is None:
                process.kill()
        raise
    return [err.decode() for _, err in finished]


async def test_two_processes_each_serve_their_shard_and_one_syncs(tmp_path: Path) -> None:
    """Like the compose file: SHARD_COUNT=2 and SHARD_IDS 0 / 1 on one database."""
    async with make_world(tmp_path) as world:
        add_other_guild(world.discord)
        processes = [
            await start_bot_process(
                world, RUN_WITH_TEST_TIMINGS, SHARD_COUNT="2", SHARD_IDS=str(shard)
            )
            for shard in (0, 1)
        ]
        # Read their output while they run, so that a full pipe never blocks them.
        outputs = [asyncio.create_task(p.communicate()) for p in processes]
        try:
            await world.discord.wait_ready(timeout=20, sessions=2)
            interactions = {g: await invoke_video(world, g) for g in CHANNELS}
            for interaction in interactions.values():
                await interaction.wait_for(
                    lambda i: i.original is not None and "Done" in i.original.content, timeout=15
                )
            # Each interaction went only to the session of its guild's shard, so to one process.
            sessions = {s.shard: s for s in world.discord.gateway.live_sessions}
            assert set(sessions) == {(0, 2), (1, 2)}
            for (shard, _), session in sessions.items():
                received = [int(i["id"]) for i in events(session, "INTERACTION_CREATE")]
                assert received == [interactions[g].id for g in guilds_of(shard)]
        finally:
            logs = await stop(processes, outputs)

        assert [p.returncode for p in processes] == [0, 0], logs
        for guild_id, interaction in interactions.items():
            assert len(interaction.callbacks) == 1  # deferred once
            videos = [m for m in world.discord.channel_history(CHANNELS[guild_id]) if m.attachments]
            assert len(videos) == 1 and str(guild_id) in videos[0].content
            [(reserve, price), (charge, charged)] = await ledger_of(world, guild_id)
            assert (reserve, charge) == ("reserve", "charge") and charged == price > 0

        assert len(world.discord.requests_to("PUT", COMMANDS_PUT)) == 1
        assert "synced globally" in logs[0]
        assert "synced by the process running shard 0" in logs[1]
        assert "synced globally" not in logs[1]
