"""/history end to end: the real discord.py client and wanbot's cogs against loopback fakes of
Discord and WaveSpeed — the pages, who may see them, Use again, and the buttons after a restart."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import WanBot
from bot.domain.job import JobOwner
from bot.domain.lifecycle import FailureKind, JobState
from bot.domain.request import GenerationRequest
from bot.i18n import EN, t
from cogs import texts
from tests.discord_world import (
    ADMIN_ROLE,
    CHANNEL,
    FIVE_SECONDS_WITH_AUDIO,
    GUILD,
    MEMBER,
    OTHER_MEMBER,
    World,
    make_world,
)
from tests.fakes.discord_models import FakeInteraction, FakeMessage
from tests.test_discord_video import has_video, job_state, wait_until, wait_until_async

EPHEMERAL = 64
ADMIN = 700_000_000_000_000_300  # has ADMIN_ROLE, which carries Manage Server
OTHER_GUILD = 700_000_000_000_000_002
WHEN = re.compile(r"<t:\d+:R>")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path, member_budget_usd="100.00") as world:
        world.discord.add_member(GUILD, ADMIN, username="root", roles=[ADMIN_ROLE])
        yield world


async def history(world: World, *, user_id: int = MEMBER, member: int | None = None) -> FakeMessage:
    """/history [member] as `user_id`; the bot's private reply."""
    options = [] if member is None else [{"name": "member", "type": 6, "value": member}]
    interaction = await world.discord.invoke_command(
        "history", guild_id=GUILD, channel_id=CHANNEL, user_id=user_id, options=options
    )
    await interaction.wait_until_acked()
    assert interaction.response_type == 4, interaction.callbacks
    assert interaction.original is not None and interaction.original.flags & EPHEMERAL
    return interaction.original


def rows(page: FakeMessage) -> list[str]:
    """The page's rows (one per job), below its heading."""
    [embed] = page.embeds
    return embed["description"].split("\n\n")[1:]


def row_ids(page: FakeMessage) -> list[int]:
    """The job numbers of the page's rows, top to bottom."""
    return [int(re.match(r"\*\*#(\d+)\*\*", row)[1]) for row in rows(page)]  # type: ignore[index]


def footer(page: FakeMessage) -> str:
    return page.embeds[0]["footer"]["text"]


def buttons(page: FakeMessage) -> dict[str, dict[str, Any]]:
    """The page's buttons by custom_id."""
    return {c["custom_id"]: c for row in page.components for c in row["components"]}


def use_again_ids(page: FakeMessage) -> list[int]:
    """The jobs the page's Use again buttons run, in order."""
    found = [re.fullmatch(r"wanbot:again:(\d+)", custom_id) for custom_id in buttons(page)]
    return [int(match[1]) for match in found if match]


async def click(world: World, page: FakeMessage, custom_id: str, user_id: int) -> FakeInteraction:
    """Click a button on a /history page; returns the click's interaction, answered."""
    clicked = await world.discord.click_button(page, custom_id, user_id=user_id)
    await clicked.wait_until_acked()
    return clicked


def stored_request(prompt: str) -> str:
    """A request as a job stores it (5 s, 720p, audio: $0.25) for jobs made through storage."""
    return GenerationRequest.parse(
        image="https://example.invalid/a.png", prompt=prompt, seed=1000
    ).model_dump_json()


async def refunded_jobs(bot: WanBot, count: int, member_id: int = MEMBER) -> list[int]:
    """`count` jobs written through the storage API, each refunded (timed out) and closed."""
    storage = bot.services.storage
    ids = []
    for number in range(1, count + 1):
        job = await storage.reserve(
            JobOwner(GUILD, CHANNEL, member_id), stored_request(f"job {number}"), 250_000, 5
        )
        await storage.advance(job.id, JobState.FAILED, failure_kind=FailureKind.TIMED_OUT)
        await storage.advance(job.id, JobState.CLOSED)
        ids.append(job.id)
    return ids


async def finished(world: World, interaction: FakeInteraction) -> str:
    """What the private status of a /video (or a Use again) said once it ended."""
    await interaction.wait_for(
        lambda i: i.original is not None and i.original.content.startswith(("✅", "❌", "⚠️")),
        timeout=10,
    )
    assert interaction.original is not None
    return interaction.original.content


async def member_ledger(bot: WanBot, member_id: int) -> list[tuple[str, int]]:
    """One member's ledger rows in GUILD as (kind, amount), oldest first."""
    entries = await bot.services.storage.ledger(GUILD)
    return [(e.kind, e.amount_micro) for e in entries if e.member_id == member_id]


# --- the list -------------------------------------------------------------------------------------


async def test_lists_delivered_and_refunded_videos_newest_first_with_jump_links(
    world: World,
) -> None:
    world.wavespeed.next_task()
    world.wavespeed.next_task("failed", error_code=1200)  # the content filter
    async with world.bot() as bot:
        await finished(world, await world.video("the cat waves at @everyone <@1>", seed=42))
        posted = await world.discord.wait_for_message(has_video)
        await finished(world, await world.video("a dog *barks*\nloudly", seed=7))
        await wait_until_async(lambda: job_state(bot.services.storage, 2), JobState.CLOSED)
        page = await history(world)

    [embed] = page.embeds
    assert embed["description"].startswith("**Your videos on this server**")
    assert row_ids(page) == [2, 1]
    refunded, delivered = rows(page)
    assert WHEN.search(refunded) and WHEN.search(delivered)
    assert "💸 refunded: WaveSpeed's content filter" in refunded
    assert "> a dog \\*barks\\* loudly" in refunded  # on one line, shown as typed
    assert "720p · 5 s · audio · single shot · seed 7 · $0.25" in refunded
    link = f"https://discord.com/channels/{GUILD}/{CHANNEL}/{posted.id}"
    assert f"✅ delivered · [jump to the video]({link})" in delivered
    assert "> the cat waves at \\@everyone \\<\\@1\\>" in delivered  # no mention survives
    assert "seed 42 · $0.25" in delivered
    assert footer(page).startswith("Page 1 of 1 · 2 videos")
    assert use_again_ids(page) == [2, 1]
    assert not [c for c in buttons(page) if c.startswith("wanbot:history:")]  # one page only
    assert not page.pinged_users and not page.pinged_everyone and not page.pinged_roles


async def test_a_member_without_videos_is_told_so(world: World) -> None:
    async with world.bot():
        page = await history(world)
    assert "You have not made any videos here yet." in page.embeds[0]["description"]
    assert not page.components


async def test_next_and_previous_page_through_more_than_ten(world: World) -> None:
    async with world.bot() as bot:
        ids = await refunded_jobs(bot, 23)
        await refunded_jobs(bot, 2, member_id=OTHER_MEMBER)  # never on MEMBER's pages
        newest_first = ids[::-1]
        page = await history(world)
        assert row_ids(page) == newest_first[:10] == use_again_ids(page)
        assert footer(page).startswith("Page 1 of 3 · 23 videos")
        previous, following = f"wanbot:history:{MEMBER}:0", f"wanbot:history:{MEMBER}:10"
        assert buttons(page)[previous]["disabled"] is True
        assert not buttons(page)[following].get("disabled")

        clicked = await click(world, page, following, MEMBER)
        assert clicked.response_type == 7  # the same message, edited
        assert row_ids(page) == newest_first[10:20] == use_again_ids(page)
        assert footer(page).startswith("Page 2 of 3")
        await click(world, page, f"wanbot:history:{MEMBER}:20", MEMBER)
        assert row_ids(page) == newest_first[20:] == use_again_ids(page)
        assert footer(page).startswith("Page 3 of 3")
        assert buttons(page)[f"wanbot:history:{MEMBER}:30"]["disabled"] is True
        await click(world, page, f"wanbot:history:{MEMBER}:10", MEMBER)
        assert row_ids(page) == newest_first[10:20]
        assert "💸 refunded: it took too long" in rows(page)[0]


# --- who may look -------------------------------------------------------------------------------


async def test_members_see_only_their_own_and_admins_anyones(world: World) -> None:
    async with world.bot() as bot:
        await refunded_jobs(bot, 12)
        refused = await history(world, user_id=OTHER_MEMBER, member=MEMBER)
        assert refused.content == t(EN, "history.refusal") and not refused.embeds
        mine = await history(world, user_id=OTHER_MEMBER, member=OTHER_MEMBER)
        assert "You have not made any videos" in mine.embeds[0]["description"]

        seen = await history(world, user_id=ADMIN, member=MEMBER)
        assert seen.embeds[0]["description"].startswith(f"**<@{MEMBER}>'s videos on this server**")
        assert row_ids(seen) == list(range(12, 2, -1))
        await click(world, seen, f"wanbot:history:{MEMBER}:10", ADMIN)
        assert row_ids(seen) == [2, 1]

        # the page's buttons check the clicker again (a crafted click, or a lost permission)
        peek = await click(world, seen, f"wanbot:history:{MEMBER}:0", OTHER_MEMBER)
        assert peek.callbacks[0]["data"]["content"] == t(EN, "history.refusal")
        assert row_ids(seen) == [2, 1]  # unchanged
    assert not seen.pinged_users


# --- Use again ----------------------------------------------------------------------------------


async def test_use_again_reruns_the_same_request_and_seed_charged_to_the_clicker(
    tmp_path: Path,
) -> None:
    async with make_world(tmp_path, member_budget_usd="0.30") as world, world.bot() as bot:
        world.discord.add_member(GUILD, ADMIN, username="root", roles=[ADMIN_ROLE])
        await finished(
            world, await world.video("the cat waves", seed=42, duration=5, shot_type="multi")
        )
        await wait_until_async(lambda: job_state(bot.services.storage, 1), JobState.DELIVERED)
        [first] = world.wavespeed.submissions

        # the member has $0.05 left: Use again is refused like a /video would be, nothing spent
        page = await history(world)
        refused = await click(world, page, "wanbot:again:1", MEMBER)
        said = await finished(world, refused)
        assert "costs **$0.25**" in said and "$0.05 left" in said
        assert refused.original is not None and refused.original.flags & EPHEMERAL
        assert len(world.wavespeed.submissions) == 1
        assert await member_ledger(bot, MEMBER) == [
            ("reserve", FIVE_SECONDS_WITH_AUDIO),
            ("charge", FIVE_SECONDS_WITH_AUDIO),
        ]

        # an admin looking at the member's videos runs it again, and pays for it
        seen = await history(world, user_id=ADMIN, member=MEMBER)
        again = await click(world, seen, "wanbot:again:1", ADMIN)
        assert (await finished(world, again)).startswith("✅")
        second = world.wavespeed.submissions[1]
        assert second == first  # same prompt, image, options and seed
        assert second["seed"] == 42 and second["shot_type"] == "multi"
        posted = await world.discord.wait_for_message(
            lambda m: has_video(m) and f"<@{ADMIN}>" in m.content
        )
        assert posted.channel_id == CHANNEL and "seed 42" in posted.content
        assert await member_ledger(bot, ADMIN) == [
            ("reserve", FIVE_SECONDS_WITH_AUDIO),
            ("charge", FIVE_SECONDS_WITH_AUDIO),
        ]
        assert len(await member_ledger(bot, MEMBER)) == 2  # the member paid nothing more
        admins = await history(world, user_id=ADMIN)
        assert row_ids(admins) == [2]


async def test_use_again_is_refused_for_others_and_other_servers_jobs(world: World) -> None:
    world.discord.add_guild(OTHER_GUILD, "Elsewhere")
    world.discord.add_channel(OTHER_GUILD, OTHER_GUILD + 10, "videos")
    async with world.bot() as bot:
        [mine] = await refunded_jobs(bot, 1)
        elsewhere = await bot.services.storage.reserve(
            JobOwner(OTHER_GUILD, OTHER_GUILD + 10, MEMBER), stored_request("far"), 250_000, 5
        )
        seen = await history(world, user_id=ADMIN, member=MEMBER)
        # a click the page's owner did not make (Discord would not deliver it; a crafted one)
        stranger = await click(world, seen, f"wanbot:again:{mine}", OTHER_MEMBER)
        assert stranger.callbacks[0]["data"]["content"] == t(EN, "history.use_again_refusal")
        # a Use again naming another server's job
        forged = world.discord.add_message(CHANNEL, "forged", author_id=MEMBER)
        forged.components = [
            {
                "type": 1,
                "components": [
                    {
                        "type": 2,
                        "style": 1,
                        "label": "x",
                        "custom_id": f"wanbot:again:{elsewhere.id}",
                    }
                ],
            }
        ]
        other = await click(world, forged, f"wanbot:again:{elsewhere.id}", MEMBER)
        assert other.callbacks[0]["data"]["content"] == "That video is unknown here."
        assert world.wavespeed.submissions == []
        assert [job.id for job in await bot.services.storage.unfinished_jobs()] == [elsewhere.id]


# --- after a restart ----------------------------------------------------------------------------


async def test_buttons_work_after_a_restart(world: World) -> None:
    async with world.bot() as first_bot:
        await finished(world, await world.video("the cat waves", seed=99))
        await wait_until_async(lambda: job_state(first_bot.services.storage, 1), JobState.DELIVERED)
        await refunded_jobs(first_bot, 11)
        page = await history(world)
    assert row_ids(page) == list(range(12, 2, -1))

    async with world.bot() as bot:
        await click(world, page, f"wanbot:history:{MEMBER}:10", MEMBER)
        assert row_ids(page) == [2, 1] == use_again_ids(page)
        again = await click(world, page, "wanbot:again:1", MEMBER)
        assert (await finished(world, again)).startswith("✅")
        assert world.wavespeed.submissions[1]["seed"] == 99
        assert world.wavespeed.submissions[1]["prompt"] == "the cat waves"
        await wait_until(
            lambda: len([m for m in world.discord.messages.values() if has_video(m)]) == 2
        )
        await wait_until_async(lambda: job_state(bot.services.storage, 13), JobState.DELIVERED)
        kinds = [kind for kind, _ in await member_ledger(bot, MEMBER)]
        assert kinds.count("charge") == 2


async def delivered_job(bot: WanBot, prompt: str, result_channel_id: int) -> int:
    """A job written through the storage API and walked to delivered, its video posted in
    `result_channel_id` (not CHANNEL: a direct message)."""
    storage = bot.services.storage
    job = await storage.reserve(
        JobOwner(GUILD, CHANNEL, MEMBER), stored_request(prompt), 250_000, 5
    )
    for state in (JobState.QUEUED, JobState.SUBMITTING):
        await storage.advance(job.id, state)
    await storage.advance(job.id, JobState.SUBMITTED, prediction_id=f"pred-{job.id}")
    for state in (JobState.READY, JobState.POSTING):
        await storage.advance(job.id, state)
    await storage.advance(
        job.id,
        JobState.DELIVERED,
        result_channel_id=result_channel_id,
        result_message_id=2**62 + job.id,
    )
    return job.id


async def test_long_prompts_are_shortened_to_fit_and_direct_messages_linked(world: World) -> None:
    direct = 2**62 + 1  # a DM channel: the video went there because the channel refused it
    async with world.bot() as bot:
        ids = [await delivered_job(bot, "*_`" * 500, direct) for _ in range(10)]
        page = await history(world)
    [embed] = page.embeds
    assert len(embed["description"]) <= texts.EMBED_DESCRIPTION_MAX  # the fake refuses more too
    assert row_ids(page) == ids[::-1]
    for job_id, row in zip(ids[::-1], rows(page), strict=True):
        _, prompt, _ = row.split("\n")
        assert prompt.startswith("> \\*\\_\\`") and prompt.endswith("…")
        assert len(prompt) < 2 * 120  # shorter than the first preview: that would not fit
        link = f"https://discord.com/channels/@me/{direct}/{2**62 + job_id}"
        assert f"[jump to the video]({link})" in row
