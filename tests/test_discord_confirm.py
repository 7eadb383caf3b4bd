"""Confirm before paying (`/wanbot-settings set confirm_above`), end to end: the real discord.py
client and wanbot's cogs against the loopback fakes of Discord and WaveSpeed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import WanBot
from bot.domain.server_settings import CONFIRM_ABOVE
from bot.i18n import EN, t
from storage.server_settings import load_setting
from tests.discord_world import (
    ADMIN_ROLE,
    CHANNEL,
    FIVE_SECONDS_WITH_AUDIO,
    GUILD,
    MEMBER,
    World,
    ledger_kinds,
    make_world,
)
from tests.fakes.discord_models import FakeInteraction, FakeMessage

EPHEMERAL = 64
ADMIN = 700_000_000_000_000_300  # has ADMIN_ROLE, which carries Manage Server
ASKS = "Confirm within a minute"  # in every price prompt, and only there


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as world:
        world.discord.add_member(GUILD, ADMIN, username="root", roles=[ADMIN_ROLE])
        yield world


# --- helpers (the variation tests use them too) --------------------------------------------------
async def admin_command(world: World, command: str, sub: str, **options: Any) -> FakeMessage:
    """/<command> <sub> with string or user options, as ADMIN; the bot's private reply."""
    typed = [
        {"name": name, "type": 6 if isinstance(value, int) else 3, "value": value}
        for name, value in options.items()
    ]
    interaction = await world.discord.invoke_command(
        command,
        guild_id=GUILD,
        channel_id=CHANNEL,
        user_id=ADMIN,
        options=[{"name": sub, "type": 1, "options": typed}],
    )
    await interaction.wait_until_acked()
    assert interaction.original is not None and interaction.original.flags & EPHEMERAL
    return interaction.original


async def set_confirm_above(world: World, amount: str) -> FakeMessage:
    """/wanbot-settings set confirm_above:<amount>, as an admin."""
    return await admin_command(world, "wanbot-settings", "set", confirm_above=amount)


def says(text: str) -> Any:
    """A condition on an interaction: its response (the private status) contains `text`."""
    return lambda i: i.original is not None and text in i.original.content


async def prompt_of(interaction: FakeInteraction) -> FakeMessage:
    """The private price prompt an interaction was answered with."""
    await interaction.wait_for(says(ASKS))
    prompt = interaction.original
    assert prompt is not None and prompt.flags & EPHEMERAL
    return prompt


def answer_id(prompt: FakeMessage, answer: str) -> str:
    """The custom_id of a prompt's Confirm ("yes") or Cancel ("no") button."""
    [found] = [
        c["custom_id"]
        for c in prompt.iter_components()
        if c.get("custom_id", "").endswith(f":{answer}")
    ]
    return found


async def click(world: World, prompt: FakeMessage, answer: str, user_id: int) -> FakeInteraction:
    """Click Confirm ("yes") or Cancel ("no") on a price prompt."""
    clicked = await world.discord.click_button(prompt, answer_id(prompt, answer), user_id=user_id)
    await clicked.wait_until_acked()
    return clicked


async def confirm(world: World, interaction: FakeInteraction, user_id: int) -> FakeInteraction:
    """Confirm the price prompt an interaction was answered with; the click's interaction."""
    return await click(world, await prompt_of(interaction), "yes", user_id)


def has_video(message: FakeMessage) -> bool:
    """A message that carries an mp4."""
    return any(a.filename.endswith(".mp4") for a in message.attachments)


async def nothing_started(
    world: World, bot: WanBot, *, videos: int = 0, uploads: int | None = None
) -> None:
    """Beyond the `videos` earlier ones (which uploaded `uploads` files, one each unless said):
    nothing reserved, uploaded or submitted."""
    await asyncio.sleep(0.2)  # anything a prompt or a click might have started would show by now
    assert [kind for kind, _ in await ledger_kinds(bot)].count("reserve") == videos
    assert len(world.wavespeed.submissions) == videos
    assert len(world.wavespeed.uploads) == (videos if uploads is None else uploads)


# --- the setting ---------------------------------------------------------------------------------
async def test_confirm_above_is_set_shown_and_switched_off(world: World) -> None:
    async with world.bot() as bot:
        storage = bot.services.storage
        shown = await admin_command(world, "wanbot-settings", "show")
        assert "confirm_above: off" in shown.content
        assert await load_setting(storage, GUILD, CONFIRM_ABOVE) is None

        reply = await set_confirm_above(world, "$0.20")
        assert "Members confirm the price of videos over **$0.20** first" in reply.content
        assert await load_setting(storage, GUILD, CONFIRM_ABOVE) == 200_000

        refused = await set_confirm_above(world, "cheap")
        assert refused.content.startswith("⚠️ confirm_above must be a dollar amount")
        assert await load_setting(storage, GUILD, CONFIRM_ABOVE) == 200_000  # unchanged

        for off in ("0", "off"):
            await set_confirm_above(world, "0.50")
            reply = await set_confirm_above(world, off)
            assert "confirm_above: off" in reply.content
            assert await storage.get_guild_setting(GUILD, CONFIRM_ABOVE.key) is None  # deleted


# --- a /video over the threshold -----------------------------------------------------------------
async def test_over_the_threshold_nothing_happens_until_confirm(world: World) -> None:
    async with world.bot() as bot:
        await set_confirm_above(world, "0.20")
        asked = await world.video("the cat turns its head", seed=42)  # 720p · 5 s · audio: $0.25
        prompt = await prompt_of(asked)
        assert asked.callbacks[0]["type"] == 5  # deferred privately, then the prompt
        assert prompt.content.startswith("💵 This video costs **$0.25**.")
        assert "After it you would have **$4.75** left this period." in prompt.content
        assert "720p · 5 s · audio · seed 42" in prompt.content
        labels = {c["label"] for c in prompt.iter_components() if c.get("type") == 2}
        assert labels == {"Confirm", "Cancel"}
        await nothing_started(world, bot)  # not reserved, not uploaded, not submitted

        confirmed = await click(world, prompt, "yes", MEMBER)
        assert confirmed.response_type == 7  # the prompt itself becomes the status
        assert confirmed.original is prompt and not list(prompt.iter_components())
        result = await world.discord.wait_for_message(has_video, timeout=10)
        assert f"<@{MEMBER}>" in result.content and result.channel_id == CHANNEL
        await confirmed.wait_for(says("Done"))  # the status, in the prompt's place
        [body] = world.wavespeed.submissions
        assert body["seed"] == 42 and body["image"].startswith(world.wavespeed.base_url)
        assert await ledger_kinds(bot) == [
            ("reserve", FIVE_SECONDS_WITH_AUDIO),
            ("charge", FIVE_SECONDS_WITH_AUDIO),
        ]


async def test_cancel_changes_nothing(world: World) -> None:
    async with world.bot() as bot:
        await set_confirm_above(world, "0.20")
        prompt = await prompt_of(await world.video())
        cancelled = await click(world, prompt, "no", MEMBER)
        assert cancelled.response_type == 7
        assert prompt.content == t(EN, "confirm.cancelled")
        assert not list(prompt.iter_components())  # nothing left to click
        await nothing_started(world, bot)
        assert (await bot.services.storage.member_balance(GUILD, MEMBER)).available == 5_000_000


async def test_an_expired_prompt_does_nothing_when_clicked(world: World) -> None:
    async with world.bot() as bot:
        await set_confirm_above(world, "0.20")
        prompt = await prompt_of(await world.video())
        world.discord.advance_time(61)  # Discord's clock: the click comes after the minute
        late = await click(world, prompt, "yes", MEMBER)
        assert late.response_type == 7 and prompt.content == t(EN, "confirm.expired")
        assert not list(prompt.iter_components())
        await nothing_started(world, bot)


async def test_a_prompt_left_by_a_restart_says_it_expired(world: World) -> None:
    async with world.bot():
        await set_confirm_above(world, "0.20")
        prompt = await prompt_of(await world.video())
    async with world.bot() as bot:  # the waiting request was only in the old process' memory
        late = await click(world, prompt, "yes", MEMBER)
        assert late.response_type == 7 and prompt.content == t(EN, "confirm.expired")
        await nothing_started(world, bot)


async def test_the_budget_is_checked_at_confirm(world: World) -> None:
    async with world.bot() as bot:
        await set_confirm_above(world, "0.20")
        prompt = await prompt_of(await world.video())
        assert "you would have **$4.75** left" in prompt.content
        # while the member reads the price, an admin lowers their allowance
        await admin_command(world, "budget", "set", member=MEMBER, amount="$0.10")
        refused = await click(world, prompt, "yes", MEMBER)
        await refused.wait_for(says("but you have only $0.10 left"))
        assert "This video costs **$0.25**" in prompt.content
        await nothing_started(world, bot)


async def test_a_double_confirm_starts_one_video(world: World) -> None:
    async with world.bot() as bot:
        await set_confirm_above(world, "0.20")
        prompt = await prompt_of(await world.video())
        yes = answer_id(prompt, "yes")
        first = await world.discord.click_button(prompt, yes, user_id=MEMBER)
        try:  # a second click before the first removed the buttons is told it expired
            second = await world.discord.click_button(prompt, yes, user_id=MEMBER)
            await second.wait_until_acked()
        except ValueError:  # ...or the buttons were already gone
            pass
        await first.wait_until_acked()
        await world.discord.wait_for_message(has_video, timeout=10)
        await nothing_started(world, bot, videos=1)


# --- under the threshold, and the other entry points ----------------------------------------------
async def test_under_the_threshold_no_prompt(world: World) -> None:
    async with world.bot() as bot:
        await set_confirm_above(world, "0.25")  # the price itself is not above it
        started = await world.video()
        await started.wait_for(says("left this period"))
        assert ASKS not in started.original.content
        await world.discord.wait_for_message(has_video, timeout=10)
        assert [k for k, _ in await ledger_kinds(bot)] == ["reserve", "charge"]


async def test_re_roll_and_same_seed_ask_too(world: World) -> None:
    async with world.bot() as bot:
        await world.video("the cat waves", seed=7)  # no threshold yet: no prompt
        first = await world.discord.wait_for_message(has_video, timeout=10)
        await set_confirm_above(world, "0.20")

        reroll = await world.discord.click_button(first, "wanbot:reroll:1", user_id=MEMBER)
        prompt = await prompt_of(reroll)
        assert "This video costs **$0.25**" in prompt.content
        await nothing_started(world, bot, videos=1)
        await click(world, prompt, "yes", MEMBER)
        await world.discord.wait_for_message(lambda m: has_video(m) and m is not first)
        assert world.wavespeed.submissions[1]["seed"] != 7

        same = await world.discord.click_button(first, "wanbot:same:1", user_id=MEMBER)
        await same.wait_until_acked()
        assert same.modal is not None
        [row] = same.modal["components"]
        field_id = (row.get("components") or [row.get("component")])[0]["custom_id"]
        submitted = await world.discord.submit_modal(
            same.modal["custom_id"], {field_id: "the cat jumps"}, user_id=MEMBER
        )
        prompt = await prompt_of(submitted)
        assert "the cat jumps" in prompt.content and "seed 7" in prompt.content
        await nothing_started(world, bot, videos=2, uploads=1)  # a re-run uploads nothing
        await click(world, prompt, "yes", MEMBER)
        await world.discord.wait_for_message(lambda m: has_video(m) and "jumps" in m.content)
        third = world.wavespeed.submissions[2]
        assert (third["seed"], third["prompt"]) == (7, "the cat jumps")
