"""Role tiers end to end: the real client and cogs against the loopback fake Discord (with roles)
and WaveSpeed, on a real SQLite file. Admins set and clear a role's allowance with /budget roles;
a member holding the role may spend up to it (more, or less, than the server's default), the
highest of their roles' tiers applies, their own /budget set allowance overrides every tier, and
/budget show says which applies and why."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from bot.domain.lifecycle import JobState
from storage import database_path
from tests.discord_world import ADMIN_ROLE, CHANNEL, GUILD, MEMBER, World, make_world
from tests.fakes.discord_server import FakeInteraction, FakeMessage
from tests.test_discord_video import job_state, wait_until_async

EPHEMERAL = 64
REFUSED = "⚠️ Only members with the **Manage Server** permission can do that."
ADMIN = 700_000_000_000_000_300  # has ADMIN_ROLE, which carries Manage Server
BRONZE = 700_000_000_000_000_201
GOLD = 700_000_000_000_000_202
BRONZE_MEMBER = 700_000_000_000_000_110
GOLD_MEMBER = 700_000_000_000_000_111
BOTH_MEMBER = 700_000_000_000_000_112  # BRONZE and GOLD
# The server's default is $0.30: a 5 s video with audio ($0.25) fits it, a 10 s one ($0.50) not.
# GOLD's tier ($1.00) affords two 10 s videos; BRONZE's ($0.20) not even a 5 s one.
DEFAULT = "0.30"

Option = tuple[str, int, Any]  # name, Discord option type, value


def text(name: str, value: str) -> Option:
    return (name, 3, value)


def user(name: str, user_id: int) -> Option:
    return (name, 6, user_id)


def role(name: str, role_id: int) -> Option:
    """A role option (type 8), resolved to the role by the fake."""
    return (name, 8, role_id)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path, member_budget_usd=DEFAULT) as world:
        world.discord.add_role(GUILD, BRONZE, "Bronze")
        world.discord.add_role(GUILD, GOLD, "Gold")
        world.discord.add_member(GUILD, ADMIN, username="root", roles=[ADMIN_ROLE])
        world.discord.add_member(GUILD, BRONZE_MEMBER, username="bea", roles=[BRONZE])
        world.discord.add_member(GUILD, GOLD_MEMBER, username="gil", roles=[GOLD])
        world.discord.add_member(GUILD, BOTH_MEMBER, username="bo", roles=[BRONZE, GOLD])
        yield world


async def run(
    world: World, command: str, options: list[dict[str, Any]], *, user_id: int
) -> FakeMessage:
    """Invoke a slash command and return the bot's (immediate) reply."""
    interaction = await world.discord.invoke_command(
        command, guild_id=GUILD, channel_id=CHANNEL, user_id=user_id, options=options
    )
    await interaction.wait_until_acked()
    assert interaction.response_type == 4, interaction.callbacks
    assert interaction.original is not None
    return interaction.original


def typed(options: tuple[Option, ...]) -> list[dict[str, Any]]:
    return [{"name": name, "type": kind, "value": value} for name, kind, value in options]


async def budget(world: World, sub: str, *options: Option, user_id: int = MEMBER) -> FakeMessage:
    """/budget <sub> …"""
    return await run(
        world, "budget", [{"name": sub, "type": 1, "options": typed(options)}], user_id=user_id
    )


async def tiers(world: World, sub: str, *options: Option, user_id: int = ADMIN) -> FakeMessage:
    """/budget roles <sub> … (a subcommand group)"""
    group = {"name": "roles", "type": 2, "options": [{"name": sub, "type": 1, "options": []}]}
    group["options"][0]["options"] = typed(options)
    return await run(world, "budget", [group], user_id=user_id)


async def set_tier(world: World, role_id: int, amount: str) -> None:
    reply = await tiers(world, "set", role("role", role_id), text("amount", amount))
    assert reply.content.startswith(f"Members with <@&{role_id}> may now spend"), reply.content


async def video_ends(world: World, user_id: int, duration: int = 5) -> str:
    """A /video by `user_id`; what its private status says once it is done or refused."""
    interaction = await world.video(user_id=user_id, duration=duration)
    return await ending(interaction)


async def ending(interaction: FakeInteraction) -> str:
    await interaction.wait_for(
        lambda i: i.original is not None and i.original.content.startswith(("✅", "❌", "⚠️")),
        timeout=10,
    )
    assert interaction.original is not None
    return interaction.original.content


def tier_rows(world: World) -> list[tuple[int, int | None, int]]:
    """Every role_allowances row: (role, amount, who), oldest first."""
    with closing(sqlite3.connect(database_path(world.settings.database_url))) as db:
        return db.execute(
            "SELECT role_id, amount_micro, actor_id FROM role_allowances ORDER BY id"
        ).fetchall()


def assert_private(message: FakeMessage) -> None:
    assert message.flags & EPHEMERAL, message.content


# --- setting and clearing --------------------------------------------------------------------
async def test_admins_set_and_clear_tiers_and_members_cannot(world: World) -> None:
    async with world.bot() as bot:
        for sub, options in [
            ("set", (role("role", GOLD), text("amount", "1"))),
            ("clear", (role("role", GOLD),)),
            ("list", ()),
        ]:
            refused = await tiers(world, sub, *options, user_id=MEMBER)
            assert_private(refused)
            assert refused.content == REFUSED, sub
        assert tier_rows(world) == []

        reply = await tiers(world, "set", role("role", GOLD), text("amount", "$1.00"))
        assert_private(reply)
        assert reply.content == (
            f"Members with <@&{GOLD}> may now spend $1.00 per period — the highest of their "
            "roles' tiers applies, unless an admin set their own allowance."
        )
        everyone = await tiers(world, "set", role("role", GUILD), text("amount", "1"))
        assert everyone.content.startswith("⚠️ Every member holds @everyone")
        typo = await tiers(world, "set", role("role", BRONZE), text("amount", "lots"))
        assert "isn't a dollar amount" in typo.content
        assert tier_rows(world) == [(GOLD, 1_000_000, ADMIN)]

        listed = await tiers(world, "list")
        assert_private(listed)
        assert "the server's default, $0.30." in listed.content
        assert f"<@&{GOLD}> — **$1.00** · set by <@{ADMIN}> <t:" in listed.content
        assert f"<@&{BRONZE}>" not in listed.content

        cleared = await tiers(world, "clear", role("role", GOLD))
        assert cleared.content.startswith(f"<@&{GOLD}> no longer has a tier")
        again = await tiers(world, "clear", role("role", GOLD))
        assert again.content == f"<@&{GOLD}> has no tier; nothing was changed."
        # append-only: the clearing is a row of its own, with who did it
        assert tier_rows(world) == [(GOLD, 1_000_000, ADMIN), (GOLD, None, ADMIN)]
        assert "No role has a tier yet" in (await tiers(world, "list")).content
        assert await bot.services.storage.ledger(GUILD) == []  # tiers are not ledger rows


# --- spending by tier ------------------------------------------------------------------------
async def test_a_member_with_the_role_spends_up_to_its_tier(world: World) -> None:
    async with world.bot() as bot:
        await set_tier(world, GOLD, "1")
        await set_tier(world, BRONZE, "0.20")

        # without a tier, a 10 s video does not fit the default …
        refused = await video_ends(world, MEMBER, duration=10)
        assert "costs **$0.50**, but you have only $0.30 left this period" in refused
        # … with GOLD, two of them do, and then nothing more
        assert (await video_ends(world, GOLD_MEMBER, duration=10)).startswith("✅")
        assert (await video_ends(world, GOLD_MEMBER, duration=10)).startswith("✅")
        refused = await video_ends(world, GOLD_MEMBER)
        assert "costs **$0.25**, but you have only $0.00 left this period" in refused
        # a tier below the default is the role's allowance too: a 5 s video the default allows
        refused = await video_ends(world, BRONZE_MEMBER)
        assert "costs **$0.25**, but you have only $0.20 left this period" in refused

        ledger = await bot.services.storage.ledger(GUILD)
        assert [(e.kind, e.member_id, e.amount_micro) for e in ledger] == [
            ("reserve", GOLD_MEMBER, 500_000),
            ("charge", GOLD_MEMBER, 500_000),
            ("reserve", GOLD_MEMBER, 500_000),
            ("charge", GOLD_MEMBER, 500_000),
        ]
        assert len(world.wavespeed.submissions) == 2


async def test_the_highest_tier_applies_and_a_button_counts_the_clickers_roles(
    world: World,
) -> None:
    async with world.bot():
        await set_tier(world, BRONZE, "0.20")
        await set_tier(world, GOLD, "1")

        assert (await video_ends(world, BOTH_MEMBER, duration=10)).startswith("✅")
        shown = (await budget(world, "show", user_id=BOTH_MEMBER)).content
        assert "Allowance $1.00\n" in shown and "Left **$0.50**" in shown
        assert f"This is the tier of <@&{GOLD}>, the highest among your roles' tiers." in shown

        posted = await world.discord.wait_for_message(
            lambda m: any(a.filename.endswith(".mp4") for a in m.attachments), timeout=10
        )
        # Re-roll is charged to, and checked against the budget of, whoever clicks
        click = await world.discord.click_button(posted, "wanbot:reroll:1", user_id=MEMBER)
        assert "but you have only $0.30 left this period" in await ending(click)
        click = await world.discord.click_button(posted, "wanbot:reroll:1", user_id=GOLD_MEMBER)
        assert (await ending(click)).startswith("✅")
        assert len(world.wavespeed.submissions) == 2


async def test_an_own_allowance_overrides_every_tier(world: World) -> None:
    async with world.bot() as bot:
        await set_tier(world, GOLD, "1")
        await budget(
            world, "set", user("member", GOLD_MEMBER), text("amount", "0.20"), user_id=ADMIN
        )

        refused = await video_ends(world, GOLD_MEMBER)
        assert "costs **$0.25**, but you have only $0.20 left this period" in refused
        shown = (await budget(world, "show", user_id=GOLD_MEMBER)).content
        assert "Allowance $0.20\n" in shown
        assert "This is your own allowance set by an admin; it overrides role tiers." in shown
        assert world.wavespeed.submissions == []
        assert [e.kind for e in await bot.services.storage.ledger(GUILD)] == ["limit"]


async def test_budget_show_and_price_say_which_allowance_applies(world: World) -> None:
    async with world.bot():
        await set_tier(world, GOLD, "1")

        mine = await budget(world, "show")
        assert_private(mine)
        assert "Allowance $0.30\n" in mine.content
        assert (
            "This is the server's default: no role tier or allowance of your own applies."
            in mine.content
        )
        tiered = (await budget(world, "show", user_id=GOLD_MEMBER)).content
        assert "Allowance $1.00\n" in tiered
        assert f"This is the tier of <@&{GOLD}>, the highest among your roles' tiers." in tiered
        # an admin looking at the member sees the same allowance, in the third person
        seen = (await budget(world, "show", user("member", GOLD_MEMBER), user_id=ADMIN)).content
        assert "Allowance $1.00\n" in seen
        assert f"This is the tier of <@&{GOLD}>, the highest among their roles' tiers." in seen

        price = await run(
            world, "price", [{"name": "duration", "type": 4, "value": 10}], user_id=GOLD_MEMBER
        )
        assert "After it you would have **$0.50** left this period" in price.content

        await tiers(world, "clear", role("role", GOLD))
        cleared = (await budget(world, "show", user_id=GOLD_MEMBER)).content
        assert "Allowance $0.30\n" in cleared and "the server's default" in cleared


# --- after a restart ---------------------------------------------------------------------------
async def test_a_job_carried_on_after_a_restart_shows_the_balance_with_the_tier(
    world: World,
) -> None:
    """The restarted bot no longer has the interaction (nor the member's roles): the roles kept
    with the job count for the balance its status goes on showing — $0.75 left of GOLD's $1.00,
    not the default's $0.05."""
    world.wavespeed.next_task(processing_s=1.5)
    async with world.bot() as first_bot:
        await set_tier(world, GOLD, "1")
        interaction = await world.video(user_id=GOLD_MEMBER)
        await interaction.wait_for(
            lambda i: i.original is not None and "left this period" in i.original.content
        )
        await wait_until_async(lambda: job_state(first_bot.services.storage, 1), JobState.SUBMITTED)
    assert interaction.original is not None
    edits_before = len(interaction.original.history)

    async with world.bot():
        assert (await ending(interaction)).startswith("✅")
    shown = [snapshot["content"] for snapshot in interaction.original.history[edits_before:]]
    resumed = [text for text in shown if "left this period" in text]
    assert resumed, shown  # the resumed job showed its status before it was done
    assert all("you have $0.75 left this period" in text for text in resumed), resumed
