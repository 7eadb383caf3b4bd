"""/video end to end: the real discord.py client and wanbot's cogs against loopback fakes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bot.domain.lifecycle import JobState
from storage.base import Storage
from tests.discord_world import (
    CHANNEL,
    FIVE_SECONDS_WITH_AUDIO,
    GUILD,
    MEMBER,
    NSFW_CHANNEL,
    OTHER_MEMBER,
    World,
    ledger_kinds,
    make_world,
)
from tests.fakes.discord_models import FakeInteraction, FakeMessage
from tests.fakes.images import tiny_png, wav

EPHEMERAL = 64


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as world:
        yield world


async def test_happy_path_defers_shows_status_and_posts_the_video(world: World) -> None:
    async with world.bot() as bot:
        interaction = await world.video("the cat turns its head", seed=42)
        await interaction.wait_until_acked()
        assert interaction.callbacks[0]["type"] == 5  # deferred, within the deadline
        assert interaction.callbacks[0]["data"]["flags"] & EPHEMERAL

        result = await world.discord.wait_for_message(
            lambda m: any(a.filename.endswith(".mp4") for a in m.attachments), timeout=10
        )
        video = result.attachments[0]
        assert video.data[4:8] == b"ftyp"
        assert f"<@{MEMBER}>" in result.content
        assert "the cat turns its head" in result.content
        assert "seed 42" in result.content and "$0.25" in result.content
        assert result.channel_id == CHANNEL and not result.flags & EPHEMERAL
        assert {"wanbot:reroll:1", "wanbot:same:1", "wanbot:delete:1"} <= {
            c["custom_id"] for row in result.components for c in row["components"]
        }
        await interaction.wait_for(lambda i: "Done" in (i.original.content or ""))
        edits = world.discord.requests_to("PATCH", r"/webhooks/\d+/[^/]+/messages/@original")
        assert 2 <= len(edits) <= 6  # status edits are throttled, not one per poll
        shown = [h.get("content") or "" for h in interaction.original.history]
        assert any("left this period" in text and "$0.25" in text for text in shown)

        [body] = world.wavespeed.submissions
        assert body["seed"] == 42 and body["duration"] == 5
        assert body["image"].startswith(world.wavespeed.base_url)  # uploaded, not Discord's URL
        assert await ledger_kinds(bot) == [
            ("reserve", FIVE_SECONDS_WITH_AUDIO),
            ("charge", FIVE_SECONDS_WITH_AUDIO),
        ]


def original_says(text: str) -> Callable[[FakeInteraction], bool]:
    """A condition: the interaction's original response contains `text`."""
    return lambda i: i.original is not None and text in i.original.content


def has_video(message: FakeMessage) -> bool:
    """A message that carries an mp4."""
    return any(a.filename.endswith(".mp4") for a in message.attachments)


def buttons(message: FakeMessage) -> set[str]:
    """The custom_ids of a message's buttons."""
    return {c["custom_id"] for row in message.components for c in row["components"]}


async def test_out_of_budget_is_refused_privately_and_spends_nothing(tmp_path: Path) -> None:
    async with make_world(tmp_path, member_budget_usd="0.10") as world, world.bot() as bot:
        interaction = await world.video("too expensive")
        await interaction.wait_for(lambda i: "costs" in ((i.original and i.original.content) or ""))
        text = interaction.original.content
        assert "$0.25" in text and "$0.10 left" in text and "resets <t:" in text
        assert interaction.original.flags & EPHEMERAL
        assert world.wavespeed.submissions == [] and world.wavespeed.uploads == {}
        assert await ledger_kinds(bot) == []


async def test_wrong_file_type_is_refused_by_its_bytes(world: World) -> None:
    async with world.bot() as bot:
        interaction = await world.video(image=b"%PDF-1.7 not a picture", filename="cat.png")
        await interaction.wait_for(
            lambda i: "isn't an image" in ((i.original and i.original.content) or "")
        )
        assert interaction.original.flags & EPHEMERAL
        assert world.wavespeed.submissions == [] and await ledger_kinds(bot) == []


async def test_huge_image_is_refused_before_download(world: World) -> None:
    async with world.bot() as bot:
        interaction = await world.video(image=tiny_png() + b"\0" * (11 * 1024 * 1024))
        await interaction.wait_until_acked()
        [callback] = interaction.callbacks
        assert callback["type"] == 4 and callback["data"]["flags"] & EPHEMERAL
        assert "limit is 10.0 MB" in callback["data"]["content"]
        assert not world.discord.requests_to("GET", r"/attachments/.*")
        assert await ledger_kinds(bot) == []


async def test_video_over_the_upload_limit_is_posted_as_a_link(world: World) -> None:
    async with world.bot() as bot:
        await world.video(attachment_size_limit=1024)  # the sample mp4 is ~5 KB
        result = await world.discord.wait_for_message(lambda m: "upload limit" in m.content)
        assert not result.attachments
        assert f"{world.wavespeed.base_url}/outputs/" in result.content
        assert not [r for r in world.discord.requests if r.status == 413]
        assert [k for k, _ in await ledger_kinds(bot)] == ["reserve", "charge"]


async def test_failed_task_is_refunded_and_explained(world: World) -> None:
    world.wavespeed.next_task("failed", error_code=1200)
    async with world.bot() as bot:
        interaction = await world.video()
        await interaction.wait_for(
            lambda i: "refunded" in ((i.original and i.original.content) or "")
        )
        assert "content filter" in interaction.original.content
        assert "$0.25 refunded" in interaction.original.content
        assert await ledger_kinds(bot) == [
            ("reserve", FIVE_SECONDS_WITH_AUDIO),
            ("refund", FIVE_SECONDS_WITH_AUDIO),
        ]


async def test_job_outliving_the_token_is_delivered_in_the_channel(world: World) -> None:
    world.wavespeed.next_task(processing_s=0.6)
    async with world.bot() as bot:
        interaction = await world.video()
        await interaction.wait_until_acked()
        world.discord.advance_time(16 * 60)  # the interaction token is now dead
        result = await world.discord.wait_for_message(has_video, timeout=10)
        assert result not in interaction.followups  # a plain channel message, bot token
        assert f"<@{MEMBER}>" in result.content and result.channel_id == CHANNEL
        assert world.discord.requests_to("POST", rf"/channels/{CHANNEL}/messages")
        await wait_until_async(lambda: job_state(bot.services.storage, 1), JobState.DELIVERED)
        assert [k for k, _ in await ledger_kinds(bot)] == ["reserve", "charge"]


async def test_nsfw_output_is_spoilered_outside_age_restricted_channels(world: World) -> None:
    world.wavespeed.next_task(nsfw=True)
    world.wavespeed.next_task(nsfw=True)
    async with world.bot():
        await world.video("first")
        spoilered = await world.discord.wait_for_message(has_video)
        assert spoilered.attachments[0].filename.startswith("SPOILER_")
        assert "NSFW" in spoilered.content
        await world.video("second", channel_id=NSFW_CHANNEL)
        plain = await world.discord.wait_for_message(
            lambda m: has_video(m) and m.channel_id == NSFW_CHANNEL
        )
        assert not plain.attachments[0].filename.startswith("SPOILER_")


async def test_nsfw_output_can_be_withheld_and_sent_privately(world: World) -> None:
    world.wavespeed.next_task(nsfw=True)
    async with world.bot() as bot:
        await bot.services.storage.set_guild_setting(GUILD, "nsfw_policy", "withhold")
        interaction = await world.video()
        notice = await world.discord.wait_for_message(lambda m: "not posted here" in m.content)
        assert not notice.attachments and not notice.flags & EPHEMERAL
        private = await world.discord.wait_for_message(lambda m: has_video(m))
        assert private.flags & EPHEMERAL and private in interaction.followups


async def test_restart_mid_job_delivers_once_and_charges_once(world: World) -> None:
    world.wavespeed.next_task(processing_s=1.0)
    async with world.bot() as first_bot:
        await world.video()
        storage = first_bot.services.storage
        await wait_until_async(lambda: job_state(storage, 1), JobState.SUBMITTED)
    assert not [m for m in world.discord.messages.values() if has_video(m)]

    async with world.bot() as bot:
        result = await world.discord.wait_for_message(has_video, timeout=10)
        assert f"<@{MEMBER}>" in result.content and result.channel_id == CHANNEL
        await wait_until(lambda: not bot.services.runner._tasks)
        assert len(world.wavespeed.submissions) == 1
        assert len([m for m in world.discord.messages.values() if has_video(m)]) == 1
        assert await ledger_kinds(bot) == [
            ("reserve", FIVE_SECONDS_WITH_AUDIO),
            ("charge", FIVE_SECONDS_WITH_AUDIO),
        ]


async def test_buttons_work_after_a_restart(world: World) -> None:
    async with world.bot() as first_bot:
        await world.video("the cat waves", seed=7)
        first = await world.discord.wait_for_message(has_video)
        await wait_until_async(lambda: job_state(first_bot.services.storage, 1), JobState.DELIVERED)
    assert buttons(first) == {
        *("wanbot:reroll:1", "wanbot:same:1", "wanbot:delete:1"),
        *("wanbot:vary:hd:1", "wanbot:vary:silent:1", "wanbot:vary:longer:1"),  # 720p · 5 s · audio
    }

    async with world.bot() as bot:
        reroll = await world.discord.click_button(first, "wanbot:reroll:1", user_id=OTHER_MEMBER)
        second = await world.discord.wait_for_message(lambda m: has_video(m) and m is not first)
        assert f"<@{OTHER_MEMBER}>" in second.content and reroll.acked
        assert world.wavespeed.submissions[1]["seed"] != 7
        assert world.wavespeed.submissions[1]["prompt"] == "the cat waves"

        same = await world.discord.click_button(first, "wanbot:same:1", user_id=MEMBER)
        await same.wait_until_acked()
        assert same.modal is not None
        [row] = same.modal["components"]
        field_id = (row.get("components") or [row.get("component")])[0]["custom_id"]
        await world.discord.submit_modal(
            same.modal["custom_id"], {field_id: "the cat jumps"}, user_id=MEMBER
        )
        await wait_until(lambda: len(world.wavespeed.submissions) == 3)
        third = world.wavespeed.submissions[2]
        assert (third["seed"], third["prompt"]) == (7, "the cat jumps")
        await world.discord.wait_for_message(
            lambda m: "the cat jumps" in m.content and has_video(m)
        )

        refused = await world.discord.click_button(first, "wanbot:delete:1", user_id=OTHER_MEMBER)
        await refused.wait_until_acked()
        assert "Only the member" in refused.callbacks[0]["data"]["content"]
        assert not first.deleted
        deleted = await world.discord.click_button(first, "wanbot:delete:1", user_id=MEMBER)
        await deleted.wait_until_acked()
        await wait_until(lambda: first.deleted)
        kinds = [k for k, _ in await ledger_kinds(bot)]
        assert kinds.count("reserve") == 3 and kinds.count("charge") == 3


async def wait_until(condition: Callable[[], object], within_s: float = 10.0) -> None:
    """Poll a condition every few milliseconds until it holds."""
    async with asyncio.timeout(within_s):
        while not condition():
            await asyncio.sleep(0.01)


async def job_state(storage: Storage, job_id: int) -> JobState | None:
    """A job's status, or None if there is no such job yet."""
    job = await storage.get_job(job_id)
    return job.state if job else None


async def wait_until_async(
    probe: Callable[[], Awaitable[object]], expected: object, within_s: float = 10.0
) -> None:
    """Poll an async probe until it returns `expected`."""
    async with asyncio.timeout(within_s):
        while await probe() != expected:
            await asyncio.sleep(0.01)


async def test_too_many_jobs_in_flight_is_refused(tmp_path: Path) -> None:
    async with make_world(tmp_path, max_jobs_per_member=1) as world, world.bot() as bot:
        world.wavespeed.next_task(processing_s=1.0)
        first = await world.video("first")
        await first.wait_for(original_says("left this period"))
        second = await world.video("second")
        await second.wait_for(original_says("in progress"))
        assert "You already have 1 video(s) in progress" in second.original.content
        assert [k for k, _ in await ledger_kinds(bot)] == ["reserve"]


async def test_wavespeed_down_refunds_and_says_so(world: World) -> None:
    world.wavespeed.fail_next("submit", 503, times=None, body={"code": 503, "message": "busy"})
    async with world.bot() as bot:
        interaction = await world.video()
        await interaction.wait_for(original_says("refunded"))
        assert "WaveSpeed is not answering" in interaction.original.content
        assert [k for k, _ in await ledger_kinds(bot)] == ["reserve", "refund"]
        assert world.wavespeed.tasks == {}


async def test_custom_audio_is_uploaded_and_priced_as_audio(world: World) -> None:
    track = world.discord.add_attachment("song.wav", wav(5), "audio/wav")
    async with world.bot() as bot:
        await world.discord.invoke_command(
            "video",
            guild_id=GUILD,
            channel_id=CHANNEL,
            user_id=MEMBER,
            options=[
                {
                    "name": "image",
                    "type": 11,
                    "value": world.discord.add_attachment("a.png", tiny_png(), "image/png"),
                },
                {"name": "prompt", "type": 3, "value": "dance to it"},
                {"name": "audio", "type": 11, "value": track},
                {"name": "enable_audio", "type": 5, "value": False},
            ],
        )
        await world.discord.wait_for_message(has_video)
        [body] = world.wavespeed.submissions
        assert body["audio"].startswith(world.wavespeed.base_url) and body["enable_audio"] is False
        assert await ledger_kinds(bot) == [
            ("reserve", FIVE_SECONDS_WITH_AUDIO),
            ("charge", FIVE_SECONDS_WITH_AUDIO),
        ]


async def test_video_goes_to_the_member_directly_when_the_channel_refuses_the_bot(
    world: World,
) -> None:
    muted = CHANNEL + 100
    world.discord.add_channel(GUILD, muted, "no-bot-posts", bot_can_send=False)
    world.wavespeed.next_task(processing_s=0.6)
    async with world.bot() as bot:
        interaction = await world.video(channel_id=muted)
        await interaction.wait_until_acked()
        world.discord.advance_time(16 * 60)  # no follow-up possible: only the bot token is left
        direct = await world.discord.wait_for_message(has_video, timeout=10)
        assert world.discord.channels[direct.channel_id].recipient is not None  # a DM
        assert f"couldn't post in <#{muted}>" in direct.content
        assert not direct.components  # the buttons work in the server only
        assert world.discord.requests_to("POST", rf"/channels/{muted}/messages")[0].status == 403
        await wait_until_async(lambda: job_state(bot.services.storage, 1), JobState.DELIVERED)
        assert [k for k, _ in await ledger_kinds(bot)] == ["reserve", "charge"]
        await wait_until_async(lambda: job_state(bot.services.storage, 1), JobState.DELIVERED)
