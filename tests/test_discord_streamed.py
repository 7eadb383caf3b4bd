"""Videos streamed to Discord from disk, end to end: the real discord.py client and wanbot's cogs
against the loopback fakes, with WaveSpeed serving random bytes as every output."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import WanBot
from bot.domain.lifecycle import JobState
from tests.discord_world import CHANNEL, GUILD, MEMBER, World, ledger_kinds, make_world
from tests.fakes.discord_models import FakeMessage

MIB = 1024 * 1024
VIDEO = os.urandom(3 * MIB)
FOLLOW_UP = r"/webhooks/\d+/[^/]+"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path, video=VIDEO) as world:
        yield world


def has_video(message: FakeMessage) -> bool:
    return any(a.filename.endswith(".mp4") for a in message.attachments)


async def delivered(bot: WanBot, job_id: int = 1) -> None:
    """Wait until the job is delivered and its task has ended (the file goes after the
    cosmetic steps that follow the record)."""
    async with asyncio.timeout(15):
        while True:
            job = await bot.services.storage.get_job(job_id)
            if job is not None and job.state is JobState.DELIVERED:
                break
            await asyncio.sleep(0.02)
        while bot.services.runner._tasks:
            await asyncio.sleep(0.02)


def kept_files(bot: WanBot) -> list[Path]:
    folder = bot.services.runner._video_files.folder
    return [] if folder is None else list(folder.glob("job-*"))


async def test_the_posted_video_is_byte_identical_to_the_source(world: World) -> None:
    async with world.bot() as bot:
        await world.video()
        result = await world.discord.wait_for_message(has_video, timeout=10)
        [attachment] = result.attachments
        assert attachment.data == VIDEO
        await delivered(bot)
        assert kept_files(bot) == []
        folder = bot.services.runner._video_files.folder
        assert folder is not None and folder.exists()
    assert not folder.exists()  # the bot's runner closed with the bot


async def test_a_video_over_the_interactions_limit_is_linked_and_never_downloaded(
    world: World,
) -> None:
    async with world.bot() as bot:
        await world.video(attachment_size_limit=MIB)
        result = await world.discord.wait_for_message(lambda m: "upload limit" in m.content)
        assert not result.attachments and f"<@{MEMBER}>" in result.content
        assert f"{world.wavespeed.base_url}/outputs/" in result.content
        assert "over the 1 MB upload limit" in result.content
        await delivered(bot)
        assert len(world.wavespeed.calls("output")) == 1 and kept_files(bot) == []
        assert [kind for kind, _ in await ledger_kinds(bot)] == ["reserve", "charge"]


async def test_the_direct_message_fallback_links_a_video_over_its_limit(
    tmp_path: Path,
) -> None:
    """A server boosted to 50 MB: the 11 MB video is downloaded for the follow-up, which fails,
    and the channel, which fails too; a direct message takes at most 10 MB, so it gets the link."""
    big = os.urandom(11 * MIB)
    async with make_world(tmp_path, video=big) as world:
        world.discord.guilds[GUILD].premium_tier = 2
        world.discord.fail_next("POST", FOLLOW_UP, 403, 50001, "Missing Access")
        world.discord.fail_next("POST", rf"/channels/{CHANNEL}/messages", 403, 50013, "Nope")
        async with world.bot() as bot:
            await world.video(attachment_size_limit=50 * MIB)
            await delivered(bot)
            [direct] = [
                m
                for m in world.discord.messages.values()
                if world.discord.channels[m.channel_id].recipient is not None
            ]
            assert not direct.attachments
            assert "over the 10 MB upload limit" in direct.content
            assert f"{world.wavespeed.base_url}/outputs/" in direct.content
            assert len(world.wavespeed.calls("output")) == 1 and kept_files(bot) == []
