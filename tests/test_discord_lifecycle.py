"""Where money or videos used to slip, end to end: the real discord.py client and wanbot's cogs
against the loopback fakes of Discord and WaveSpeed.

Each test names the defect it guards (numbered as in the job-lifecycle issue); crashes at every
state are in test_crash.py, bad input in test_discord_input.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import WanBot
from bot.domain.lifecycle import FailureKind, JobState
from bot.domain.server_settings import LOG_CHANNEL
from storage.server_settings import save_setting
from tests.discord_world import (
    CHANNEL,
    FIVE_SECONDS_WITH_AUDIO,
    GUILD,
    MEMBER,
    OTHER_MEMBER,
    World,
    ledger_kinds,
    make_world,
)
from tests.discord_world import (
    LOG_CHANNEL as LOG_CHANNEL_ID,
)
from tests.fakes.discord_models import FakeMessage

PRICE = FIVE_SECONDS_WITH_AUDIO
FOLLOW_UP = r"/webhooks/\d+/[^/]+"
STATUS_EDIT = r"/webhooks/\d+/[^/]+/messages/@original"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path, submit_absent_after_s="1") as world:
        yield world


def has_video(message: FakeMessage) -> bool:
    return any(a.filename.endswith(".mp4") for a in message.attachments)


async def ended(bot: WanBot, job_id: int = 1, timeout: float = 15.0) -> JobState:  # noqa: ASYNC109
    """Wait until the job is in a final state; return it."""
    async with asyncio.timeout(timeout):
        while True:
            job = await bot.services.storage.get_job(job_id)
            if job is not None and job.state.is_final:
                return job.state
            await asyncio.sleep(0.02)


async def with_log_channel(bot: WanBot) -> None:
    await save_setting(bot.services.storage, GUILD, LOG_CHANNEL, LOG_CHANNEL_ID)


def log_messages(world: World) -> list[FakeMessage]:
    return world.discord.messages_in(LOG_CHANNEL_ID)


async def test_2_a_completed_task_without_output_is_refunded_and_explained(world: World) -> None:
    world.wavespeed.next_task(empty_outputs=True)
    async with world.bot() as bot:
        await with_log_channel(bot)
        interaction = await world.video()
        assert await ended(bot) is JobState.CLOSED

        await interaction.wait_for(
            lambda i: "sent no video" in ((i.original and i.original.content) or "")
        )
        assert "refunded" in interaction.original.content
        assert await ledger_kinds(bot) == [("reserve", PRICE), ("refund", PRICE)]
        job = await bot.services.storage.get_job(1)
        assert job is not None and job.failure_kind is FailureKind.EMPTY_RESULT
        [notice] = log_messages(world)
        assert job.prediction_id and job.prediction_id in notice.content
        assert not any(has_video(m) for m in world.discord.messages.values())


async def test_3_a_dead_output_link_is_refunded_not_presented_as_a_video(world: World) -> None:
    world.wavespeed.fail_next("output", 404, times=None)
    async with world.bot() as bot:
        await with_log_channel(bot)
        interaction = await world.video()
        assert await ended(bot) is JobState.CLOSED

        await interaction.wait_for(
            lambda i: "could not be downloaded" in ((i.original and i.original.content) or "")
        )
        assert await ledger_kinds(bot) == [("reserve", PRICE), ("refund", PRICE)]
        # the result was fetched again for a fresh link before giving up
        assert len(world.wavespeed.calls("output")) >= 3
        [notice] = log_messages(world)
        assert "prediction id" in notice.content
        public = [m for m in world.discord.messages_in(CHANNEL) if not m.ephemeral]
        assert not [m for m in public if "your video is ready" in m.content]


async def test_4_a_follow_up_refused_for_any_reason_falls_back_in_the_same_run(
    world: World,
) -> None:
    """Not a token error: Discord answers the follow-up 403 (Missing Access). The video goes out
    as a channel message at once, and is charged once."""
    world.discord.fail_next("POST", FOLLOW_UP, 403, 50001, "Missing Access")
    async with world.bot() as bot:
        await world.video()
        assert await ended(bot) is JobState.DELIVERED
        [video] = [m for m in world.discord.messages.values() if has_video(m)]
        assert video.channel_id == CHANNEL and f"<@{MEMBER}>" in video.content
        assert await ledger_kinds(bot) == [("reserve", PRICE), ("charge", PRICE)]
        job = await bot.services.storage.get_job(1)
        assert job is not None and job.result_message_id == video.id


async def test_4_a_deleted_channel_sends_the_video_to_the_member_directly(world: World) -> None:
    """The channel is deleted while the video is generated (10003 for follow-ups and channel
    messages alike): the member gets it by direct message in the same run."""
    world.wavespeed.next_task(processing_s=1.0)
    async with world.bot() as bot:
        await world.video()
        await asyncio.sleep(0.3)
        await world.discord.delete_channel(CHANNEL)
        assert await ended(bot) is JobState.DELIVERED

        [video] = [m for m in world.discord.messages.values() if has_video(m)]
        assert world.discord.channels[video.channel_id].recipient is not None  # a DM
        assert await ledger_kinds(bot) == [("reserve", PRICE), ("charge", PRICE)]


async def test_4_when_nothing_can_carry_the_video_the_log_channel_gets_it_and_it_is_refunded(
    world: World,
) -> None:
    world.wavespeed.next_task(processing_s=1.0)
    dm = world.discord.dm_channel(world.discord.users[MEMBER])
    world.discord.fail_next(
        "POST", rf"/channels/{dm.id}/messages", 403, 50007, "Cannot send messages to this user"
    )
    async with world.bot() as bot:
        await with_log_channel(bot)
        await world.video()
        await asyncio.sleep(0.3)
        await world.discord.delete_channel(CHANNEL)
        assert await ended(bot) is JobState.CLOSED

        job = await bot.services.storage.get_job(1)
        assert job is not None and job.failure_kind is FailureKind.UNDELIVERABLE
        assert await ledger_kinds(bot) == [("reserve", PRICE), ("refund", PRICE)]
        [notice] = log_messages(world)
        assert job.output_url and job.output_url in notice.content
        assert f"<@{MEMBER}>" in notice.content and not notice.pinged_users


async def test_5_a_submit_that_never_arrived_is_held_then_refunded(world: World) -> None:
    world.wavespeed.fail_next("submit", 502, raw=True)  # a proxy's page: no task was created
    async with world.bot() as bot:
        interaction = await world.video()
        await interaction.wait_for(
            lambda i: "checking with WaveSpeed" in ((i.original and i.original.content) or "")
        )
        assert await ledger_kinds(bot) == [("reserve", PRICE)]  # held meanwhile
        assert await ended(bot) is JobState.CLOSED

        await interaction.wait_for(
            lambda i: "never started" in ((i.original and i.original.content) or "")
        )
        assert await ledger_kinds(bot) == [("reserve", PRICE), ("refund", PRICE)]
        assert world.wavespeed.calls("history") and world.wavespeed.tasks == {}


async def test_5_a_submit_whose_answer_was_lost_is_adopted_and_delivered(world: World) -> None:
    world.wavespeed.lose_answer_next("submit", create=True, hold_s=0)
    async with world.bot() as bot:
        await world.video()
        assert await ended(bot) is JobState.DELIVERED

        (task_id,) = world.wavespeed.tasks
        job = await bot.services.storage.get_job(1)
        assert job is not None and job.prediction_id == task_id
        assert len([m for m in world.discord.messages.values() if has_video(m)]) == 1
        assert len(world.wavespeed.calls("submit")) == 1
        assert await ledger_kinds(bot) == [("reserve", PRICE), ("charge", PRICE)]


async def test_7_every_message_states_its_mentions_and_pings_only_the_member(
    world: World,
) -> None:
    """A prompt that tries to ping everyone and another member; a success and a failure."""
    prompt = f"@everyone look <@{OTHER_MEMBER}> <@&{GUILD}> here"
    world.wavespeed.next_task(processing_s=0.3)
    async with world.bot() as bot:
        await with_log_channel(bot)
        await world.video(prompt)
        assert await ended(bot) is JobState.DELIVERED
        world.wavespeed.out_of_credit = True
        await world.video(prompt)
        assert await ended(bot, job_id=2) is JobState.CLOSED

        assert world.discord.sends_without_allowed_mentions() == []
        sends = world.discord.sends
        assert sends and all(not send.pinged_everyone and not send.pinged_roles for send in sends)
        assert set().union(*(send.pinged_users for send in sends)) == {MEMBER}
        [video] = [m for m in world.discord.messages.values() if has_video(m)]
        assert video.pinged_users == {MEMBER}
