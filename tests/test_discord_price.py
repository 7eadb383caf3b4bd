"""/price end to end: real client, cogs and SQLite via the loopback fakes. A quote answers at
once and privately, and writes nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.domain.budget import SERVER_SCOPE_MEMBER_ID
from bot.domain.job import JobOwner
from bot.domain.pricing import format_usd, price_micro
from bot.domain.request import GenerationRequest
from tests.discord_world import (
    CHANNEL,
    FIVE_SECONDS_WITH_AUDIO,
    GUILD,
    MEMBER,
    World,
    ledger_kinds,
    make_world,
)
from tests.fakes.discord_server import FakeMessage

EPHEMERAL = 64
ADMIN = 700_000_000_000_000_300
MEMBER_BUDGET = 5_000_000  # make_world's MEMBER_BUDGET_USD
SERVER_BUDGET = 50_000_000  # and SERVER_BUDGET_USD
RESET = re.compile(r"The budget resets <t:\d+:R>\.$")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as world:
        yield world


def option_type(value: object) -> int:
    """Discord's option type for a value: boolean 5, integer 4, string 3."""
    return 5 if isinstance(value, bool) else 4 if isinstance(value, int) else 3


async def price(world: World, user_id: int = MEMBER, **options: Any) -> FakeMessage:
    """/price with `options`; the reply, which must be the immediate (undeferred) answer."""
    typed = [
        {"name": name, "type": option_type(value), "value": value}
        for name, value in options.items()
    ]
    interaction = await world.discord.invoke_command(
        "price", guild_id=GUILD, channel_id=CHANNEL, user_id=user_id, options=typed
    )
    await interaction.wait_until_acked()
    assert interaction.response_type == 4, interaction.callbacks  # answered at once
    assert interaction.original is not None
    assert interaction.original.flags & EPHEMERAL, interaction.original.content
    return interaction.original


async def test_defaults_quote_what_a_plain_video_costs(world: World) -> None:
    async with world.bot() as bot:
        reply = await price(world)
        assert await ledger_kinds(bot) == []
    assert price_micro(5, "720p", True) == FIVE_SECONDS_WITH_AUDIO
    assert reply.content == (
        "💵 A 720p · 5 s · audio video costs **$0.25**.\n"
        "After it you would have **$4.75** left this period, and the server $49.75.\n"
        "Your own budget is the one that limits you."
    )


@pytest.mark.parametrize(
    ("resolution", "duration", "enable_audio", "custom_audio", "sound"),
    [
        ("720p", 2, False, False, "silent"),
        ("720p", 10, True, False, "audio"),
        ("1080p", 15, True, False, "audio"),
        ("1080p", 7, False, False, "silent"),
        ("1080p", 7, False, True, "custom audio"),  # a custom track costs like generated sound
        ("720p", 13, True, True, "custom audio"),
    ],
)
async def test_every_shape_is_priced_by_the_pricing_formula(
    world: World, resolution: str, duration: int, enable_audio: bool, custom_audio: bool, sound: str
) -> None:
    expected = price_micro(duration, resolution, enable_audio or custom_audio)  # type: ignore[arg-type]
    async with world.bot() as bot:
        reply = await price(
            world,
            resolution=resolution,
            duration=duration,
            enable_audio=enable_audio,
            custom_audio=custom_audio,
        )
        assert await ledger_kinds(bot) == []
    first, after, _ = reply.content.splitlines()
    assert (
        first
        == f"💵 A {resolution} · {duration} s · {sound} video costs **{format_usd(expected)}**."
    )
    assert after == (
        f"After it you would have **{format_usd(MEMBER_BUDGET - expected)}** left this period, "
        f"and the server {format_usd(SERVER_BUDGET - expected)}."
    )


async def test_the_quote_is_what_video_then_reserves(world: World) -> None:
    options = {"resolution": "1080p", "duration": 7, "enable_audio": False}
    async with world.bot() as bot:
        quoted = await price(world, **options)
        assert "costs **$0.2625**." in quoted.content
        interaction = await world.video(**options)
        await interaction.wait_for(
            lambda i: i.original is not None and i.original.content.startswith(("✅", "❌")),
            timeout=10,
        )
        assert (await ledger_kinds(bot))[0] == ("reserve", 262_500)


async def test_money_held_for_a_video_in_progress_is_counted(world: World) -> None:
    async with world.bot() as bot:
        request = GenerationRequest.parse(image="https://example.invalid/a.png", prompt="a fox")
        owner = JobOwner(GUILD, CHANNEL, MEMBER)
        # leased to another (live) process, so this bot's runner leaves the hold alone
        await bot.services.storage.reserve(
            owner, request.model_dump_json(), 250_000, 5, lease_owner="elsewhere", lease_s=600
        )
        before = await ledger_kinds(bot)
        reply = await price(world)
        assert await ledger_kinds(bot) == before  # the quote wrote nothing
    assert "you would have **$4.50** left this period, and the server $49.50." in reply.content


async def test_a_member_over_budget_is_told_it_would_not_fit(world: World) -> None:
    async with world.bot() as bot:
        await bot.services.storage.set_allowance(GUILD, MEMBER, 100_000, ADMIN)
        before = await ledger_kinds(bot)
        reply = await price(world, duration=10)
        assert await ledger_kinds(bot) == before
    first, refusal = reply.content.splitlines()
    assert first == "💵 A 720p · 10 s · audio video costs **$0.50**."
    assert refusal.startswith(
        "⚠️ It would not fit: you have only $0.10 left this period (the server has $50.00). "
    )
    assert RESET.search(refusal)
    assert not world.wavespeed.uploads and not world.wavespeed.submissions


async def test_the_server_budget_binds_when_it_has_less_left(world: World) -> None:
    async with world.bot() as bot:
        await bot.services.storage.set_allowance(GUILD, SERVER_SCOPE_MEMBER_ID, 1_000_000, ADMIN)
        fits = await price(world)
        too_dear = await price(world, resolution="1080p", duration=15)
    assert fits.content.splitlines()[1:] == [
        "After it you would have **$4.75** left this period, and the server $0.75.",
        "The server's budget is the one that limits you: it has less left than yours.",
    ]
    assert "costs **$1.125**." in too_dear.content
    assert "⚠️ It would not fit: this server has only $1.00 left this period (you have $5.00)." in (
        too_dear.content
    )


async def test_an_exact_fit_fits(world: World) -> None:
    async with world.bot() as bot:
        await bot.services.storage.set_allowance(GUILD, MEMBER, 250_000, ADMIN)
        reply = await price(world)
    assert "After it you would have **$0.00** left this period" in reply.content
    assert "would not fit" not in reply.content


async def test_price_offers_videos_pricing_options_in_servers_only(world: World) -> None:
    async with world.bot():
        commands = {c["name"]: c for c in world.discord.commands[None]}
    video = {o["name"]: o for o in commands["video"]["options"]}
    quote = {o["name"]: o for o in commands["price"]["options"]}
    assert list(quote) == ["resolution", "duration", "enable_audio", "custom_audio"]
    for name in ("resolution", "duration", "enable_audio"):
        assert quote[name] == video[name], name  # same type, choices, range and description
    assert quote["custom_audio"]["type"] == 5 and not quote["custom_audio"].get("required")
    assert (
        commands["price"].get("contexts") == [0] or commands["price"].get("dm_permission") is False
    )


async def test_a_restart_changes_no_quote(world: World) -> None:
    """A quote reads the stored balances, so it is the same from a fresh process."""
    async with world.bot():
        first = await price(world, duration=3)
    async with world.bot():
        again = await price(world, duration=3)
    assert first.content == again.content
