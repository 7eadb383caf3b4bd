"""/budget, /usage and /wanbot-settings end to end: real client, cogs and SQLite via the fakes."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import WanBot
from bot.domain.budget import SERVER_SCOPE_MEMBER_ID, period_key
from bot.domain.job import JobOwner, LedgerEntry
from bot.domain.lifecycle import FailureKind, JobState
from bot.domain.request import GenerationRequest
from bot.domain.server_settings import LOG_CHANNEL as LOG_CHANNEL_SETTING
from bot.domain.server_settings import NSFW_POLICY, REGISTRY, NsfwPolicy
from storage.server_settings import load_setting
from tests.discord_world import (
    ADMIN_ROLE,
    CHANNEL,
    FIVE_SECONDS_WITH_AUDIO,
    GUILD,
    LOG_CHANNEL,
    MANAGE_GUILD,
    MEMBER,
    OTHER_MEMBER,
    World,
    make_world,
)
from tests.fakes.discord_server import MEMBER_PERMISSIONS, FakeInteraction, FakeMessage

EPHEMERAL = 64
ADMIN = 700_000_000_000_000_300  # has ADMIN_ROLE, which carries Manage Server
LOCKED_CHANNEL = 700_000_000_000_000_013  # the bot may not post here
RESET = re.compile(r"<t:\d+:R>")
REFUSED = "Only members with the **Manage Server** permission can do that."

Option = tuple[str, int, Any]  # name, Discord option type, value


def text(name: str, value: str) -> Option:
    """A string option (type 3)."""
    return (name, 3, value)


def user(name: str, user_id: int) -> Option:
    """A user option (type 6), resolved to the member by the fake."""
    return (name, 6, user_id)


def channel(name: str, channel_id: int) -> Option:
    """A channel option (type 7), resolved to the channel by the fake."""
    return (name, 7, channel_id)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as world:
        world.discord.add_member(GUILD, ADMIN, username="root", roles=[ADMIN_ROLE])
        world.discord.add_channel(GUILD, LOCKED_CHANNEL, "locked", bot_can_send=False)
        yield world


async def run(
    world: World,
    command: str,
    *options: Option,
    sub: str | None = None,
    user_id: int = MEMBER,
    permissions: int | None = None,
) -> FakeMessage:
    """Invoke a slash command (optionally a subcommand) and return the bot's reply to it."""
    typed: list[dict[str, Any]] = [
        {"name": name, "type": kind, "value": value} for name, kind, value in options
    ]
    if sub is not None:
        typed = [{"name": sub, "type": 1, "options": typed}]
    interaction = await world.discord.invoke_command(
        command,
        guild_id=GUILD,
        channel_id=CHANNEL,
        user_id=user_id,
        options=typed,
        permissions=permissions,
    )
    await interaction.wait_until_acked()
    assert interaction.response_type == 4, interaction.callbacks
    assert interaction.original is not None
    return interaction.original


async def budget(world: World, sub: str, *options: Option, user_id: int = MEMBER) -> FakeMessage:
    """/budget <sub> ..., as `user_id` (admins are ADMIN; their role carries Manage Server)."""
    return await run(world, "budget", *options, sub=sub, user_id=user_id)


async def ledger(bot: WanBot) -> list[LedgerEntry]:
    """The server's ledger rows, oldest first."""
    return await bot.services.storage.ledger(GUILD)


async def finished_video(world: World, prompt: str = "the cat turns its head") -> FakeInteraction:
    """A /video by MEMBER, once its status message says how it ended."""
    interaction = await world.video(prompt)
    await interaction.wait_for(
        lambda i: i.original is not None and i.original.content.startswith(("✅", "❌")),
        timeout=10,
    )
    return interaction


async def refused_video(world: World) -> str:
    """A /video by MEMBER that the budget refuses; returns what the member was told."""
    interaction = await world.video()
    await interaction.wait_for(
        lambda i: i.original is not None and "⚠️" in i.original.content, timeout=10
    )
    assert interaction.original is not None
    return interaction.original.content


def assert_private(message: FakeMessage) -> None:
    """Only the invoking member sees it."""
    assert message.flags & EPHEMERAL, message.content


def assert_nothing_sent(world: World) -> None:
    """Nothing was uploaded to or submitted at WaveSpeed."""
    assert not world.wavespeed.uploads and not world.wavespeed.submissions


def request_json(prompt: str) -> str:
    """A stored request (5 s, 720p, audio: $0.25) for jobs made through storage."""
    return GenerationRequest.parse(
        image="https://example.invalid/a.png", prompt=prompt
    ).model_dump_json()


# --- /budget show ---------------------------------------------------------------------------------


async def test_show_a_fresh_member_their_allowance_privately(world: World) -> None:
    async with world.bot():
        reply = await budget(world, "show")
    assert_private(reply)
    assert "Allowance $5.00\n" in reply.content
    assert "Spent $0.00\n" in reply.content and "held" not in reply.content
    assert "Left **$5.00** · resets " in reply.content and RESET.search(reply.content)
    assert "The server has $50.00 left of $50.00." in reply.content
    assert "Your last videos" not in reply.content


async def test_show_lists_spent_held_and_last_jobs(world: World) -> None:
    async with world.bot() as bot:
        await finished_video(world, "a fox jumps over the fence")
        storage = bot.services.storage
        owner = JobOwner(GUILD, CHANNEL, MEMBER)
        refunded = await storage.reserve(owner, request_json("rain on glass"), 250_000, 5)
        await storage.advance(
            refunded.id, JobState.FAILED, failure_kind=FailureKind.TIMED_OUT, error_message="test"
        )
        await storage.reserve(owner, request_json("a slow zoom"), 250_000, 5)  # still in flight
        reply = await budget(world, "show")
    assert_private(reply)
    lines = reply.content.splitlines()
    assert "Spent $0.25 · $0.25 held for videos in progress" in lines
    assert "The server has $49.50 left of $50.00." in lines
    assert any(line.startswith("Left **$4.50** · resets <t:") for line in lines)
    jobs = lines[lines.index("**Your last videos**") + 1 :]
    assert len(jobs) == 3
    assert jobs[0].startswith("⏳ #3 ") and jobs[0].endswith("· $0.25 · a slow zoom")
    assert jobs[1].startswith("❌ #2 ") and jobs[1].endswith("· refunded · rain on glass")
    assert jobs[2].startswith("✅ #1 ") and "720p 5 s · $0.25 · a fox jumps" in jobs[2]
    assert RESET.search(jobs[2])  # when it was made


async def test_show_is_per_member(world: World) -> None:
    async with world.bot():
        await finished_video(world)
        reply = await budget(world, "show", user_id=OTHER_MEMBER)
    assert "Spent $0.00" in reply.content and "Your last videos" not in reply.content
    assert "The server has $49.75 left" in reply.content  # but the server's money is shared


async def test_admins_can_look_at_a_members_budget_and_members_cannot(world: World) -> None:
    async with world.bot():
        await finished_video(world)
        seen = await budget(world, "show", user("member", MEMBER), user_id=ADMIN)
        assert_private(seen)
        assert seen.content.startswith(f"**<@{MEMBER}>'s video budget this period**")
        assert "Spent $0.25" in seen.content and f"**<@{MEMBER}>'s last videos**" in seen.content
        refused = await budget(world, "show", user("member", MEMBER), user_id=OTHER_MEMBER)
        assert_private(refused)
        assert "Manage Server" in refused.content and "Spent" not in refused.content


# --- who may change budgets -----------------------------------------------------------------------

ADMIN_COMMANDS: list[tuple[str, str | None, tuple[Option, ...]]] = [
    ("budget", "set", (user("member", MEMBER), text("amount", "100"))),
    ("budget", "server", (text("amount", "1000"),)),
    ("budget", "grant", (user("member", MEMBER), text("amount", "100"), text("note", "me"))),
    ("usage", None, ()),
    ("wanbot-settings", "set", (channel("log_channel", CHANNEL), text("nsfw_videos", "withhold"))),
    ("wanbot-settings", "show", ()),
]


async def test_members_without_manage_server_are_refused_and_nothing_is_written(
    world: World,
) -> None:
    async with world.bot() as bot:
        for command, sub, options in ADMIN_COMMANDS:
            reply = await run(world, command, *options, sub=sub)
            assert_private(reply)
            assert reply.content == f"⚠️ {REFUSED}", (command, sub)
            assert not reply.attachments  # no CSV for /usage either
        assert await ledger(bot) == []
        assert (await bot.services.storage.member_balance(GUILD, MEMBER)).available == 5_000_000
        storage = bot.services.storage
        for setting in REGISTRY:
            assert await storage.get_guild_setting(GUILD, setting.key) is None


async def test_set_member_allowance_is_a_ledger_row_and_blocks_a_dear_video(world: World) -> None:
    async with world.bot() as bot:
        reply = await budget(
            world, "set", user("member", MEMBER), text("amount", "$0.10"), user_id=ADMIN
        )
        assert_private(reply)
        assert reply.content == f"<@{MEMBER}> may now spend $0.10 per period."
        [row] = await ledger(bot)
        assert (row.kind, row.member_id, row.amount_micro, row.actor_id) == (
            "limit",
            MEMBER,
            100_000,
            ADMIN,
        )

        refusal = await refused_video(world)
        assert "This video costs **$0.25**, but you have only $0.10 left this period." in refusal
        assert RESET.search(refusal)
        assert_nothing_sent(world)
        assert [e.kind for e in await ledger(bot)] == ["limit"]  # no reserve

        shown = (await budget(world, "show")).content
        assert "Allowance $0.10\n" in shown and "Left **$0.10**" in shown
        other = (await budget(world, "show", user_id=OTHER_MEMBER)).content
        assert "Allowance $5.00\n" in other  # only that member changed


async def test_the_latest_allowance_wins(world: World) -> None:
    async with world.bot() as bot:
        for amount in ("0.10", "3"):
            await budget(
                world, "set", user("member", MEMBER), text("amount", amount), user_id=ADMIN
            )
        balance = await bot.services.storage.member_balance(GUILD, MEMBER)
        assert balance.allowance == 3_000_000
        assert [e.amount_micro for e in await ledger(bot)] == [100_000, 3_000_000]


async def test_server_cap_set_with_the_manage_server_permission(world: World) -> None:
    async with world.bot() as bot:
        reply = await run(
            world,
            "budget",
            text("amount", "0.20"),
            sub="server",
            user_id=OTHER_MEMBER,
            permissions=MEMBER_PERMISSIONS | MANAGE_GUILD,  # no admin role: the bit alone
        )
        assert_private(reply)
        assert reply.content == "The server may now spend $0.20 per period."
        [row] = await ledger(bot)
        assert (row.kind, row.member_id, row.amount_micro, row.actor_id) == (
            "limit",
            SERVER_SCOPE_MEMBER_ID,
            200_000,
            OTHER_MEMBER,
        )
        refusal = await refused_video(world)
        assert "costs **$0.25**, but this server has only $0.20 left this period." in refusal
        assert RESET.search(refusal)
        assert_nothing_sent(world)
        shown = (await budget(world, "show")).content
        assert "Left **$5.00**" in shown and "The server has $0.20 left of $0.20." in shown


async def test_grant_adds_money_and_a_negative_grant_takes_it_back(world: World) -> None:
    async with world.bot() as bot:
        given = await budget(
            world,
            "grant",
            user("member", MEMBER),
            text("amount", "1.50"),
            text("note", "contest winner"),
            user_id=ADMIN,
        )
        assert_private(given)
        assert given.content == f"Granted $1.50 to <@{MEMBER}>; they have $6.50 left this period."
        taken = await budget(
            world, "grant", user("member", MEMBER), text("amount", "-2"), user_id=ADMIN
        )
        assert (
            taken.content == f"Took back $2.00 from <@{MEMBER}>; they have $4.50 left this period."
        )

        rows = [
            (e.kind, e.member_id, e.amount_micro, e.actor_id, e.note) for e in await ledger(bot)
        ]
        assert rows == [
            ("grant", MEMBER, 1_500_000, ADMIN, "contest winner"),
            ("grant", MEMBER, -2_000_000, ADMIN, None),
        ]
        balance = await bot.services.storage.member_balance(GUILD, MEMBER)
        assert (balance.allowance, balance.granted, balance.available) == (
            5_000_000,
            -500_000,
            4_500_000,
        )
        shown = (await budget(world, "show")).content
        assert "Allowance $5.00 − $0.50 taken back\n" in shown and "Left **$4.50**" in shown


async def test_a_grant_makes_a_refused_video_affordable(world: World) -> None:
    async with world.bot() as bot:
        await budget(world, "set", user("member", MEMBER), text("amount", "0"), user_id=ADMIN)
        assert "you have only $0.00 left" in await refused_video(world)
        await budget(world, "grant", user("member", MEMBER), text("amount", "0.25"), user_id=ADMIN)
        done = await finished_video(world)
        assert done.original is not None and done.original.content.startswith("✅")
        assert [e.kind for e in await ledger(bot)] == ["limit", "grant", "reserve", "charge"]
        assert len(world.wavespeed.submissions) == 1


@pytest.mark.parametrize(
    ("sub", "amount", "message"),
    [
        ("set", "lots", "`lots` isn't a dollar amount."),
        ("set", "-1", "The amount can't be negative."),
        ("set", "2000000", "That amount is too large."),
        ("set", "1e12", "`1e12` isn't a dollar amount."),
        ("server", "-0.01", "The amount can't be negative."),
        ("server", "NaN", "`NaN` isn't a dollar amount."),
        ("grant", "0.0000001", "`0.0000001` isn't a dollar amount."),
        ("grant", "-2000000", "That amount is too large."),
        ("grant", "1e999999999", "`1e999999999` isn't a dollar amount."),
    ],
)
async def test_bad_amounts_get_a_friendly_message_and_change_nothing(
    world: World, sub: str, amount: str, message: str
) -> None:
    options = (
        (text("amount", amount),)
        if sub == "server"
        else (user("member", MEMBER), text("amount", amount))
    )
    async with world.bot() as bot:
        reply = await budget(world, sub, *options, user_id=ADMIN)
        assert_private(reply)
        assert reply.content.startswith(f"⚠️ {message}")
        assert await ledger(bot) == []


# --- /usage ---------------------------------------------------------------------------------------


async def test_usage_shows_spend_top_members_and_the_ledger_as_csv(world: World) -> None:
    async with world.bot() as bot:
        await budget(
            world,
            "grant",
            user("member", OTHER_MEMBER),
            text("amount", "0.125"),
            text("note", "=HYPERLINK(evil)"),
            user_id=ADMIN,
        )
        await finished_video(world)
        period = period_key((await ledger(bot))[0].created_at, bot.settings.budget_period)
        reply = await run(world, "usage", user_id=ADMIN)

    assert_private(reply)
    lines = reply.content.splitlines()
    assert lines[0] == f"**Video spend this period ({period})**"
    assert lines[1] == "Spent $0.25 · held $0.00 · left $49.75 of $50.00"
    assert lines[2:] == ["**Top members**", f"1. <@{MEMBER}> — $0.25 (1 video)"]

    attachment, _chart = reply.attachments  # the chart: tests/test_discord_usage_chart.py
    assert attachment.filename == f"wanbot-ledger-{period}.csv"
    header, *rows = csv.reader(io.StringIO(attachment.data.decode()))
    assert header == [
        "id",
        "created_at",
        "period",
        "member_id",
        "kind",
        "amount_usd",
        "job_id",
        "actor_id",
        "note",
    ]
    assert [row[2:] for row in rows] == [
        [period, str(OTHER_MEMBER), "grant", "0.125", "", str(ADMIN), "'=HYPERLINK(evil)"],
        [period, str(MEMBER), "reserve", "0.25", "1", "", ""],
        [period, str(MEMBER), "charge", "0.25", "1", "", ""],
    ]
    assert [row[0] for row in rows] == ["1", "2", "3"]


async def test_usage_of_a_quiet_server(world: World) -> None:
    async with world.bot():
        reply = await run(world, "usage", user_id=ADMIN)
    assert "Nobody has made a video this period." in reply.content
    [attachment] = reply.attachments
    assert attachment.data.decode().splitlines() == [
        "id,created_at,period,member_id,kind,amount_usd,job_id,actor_id,note"
    ]


# --- /wanbot-settings -----------------------------------------------------------------------------


async def test_settings_persist_and_are_shown(world: World) -> None:
    async with world.bot() as bot:
        shown = await run(world, "wanbot-settings", sub="show", user_id=ADMIN)
        assert "Admin notices go to nowhere yet" in shown.content and "**spoiler**" in shown.content
        await bot.services.balance.refresh()  # read at start in the background: known by now
        changed = await run(
            world,
            "wanbot-settings",
            channel("log_channel", LOG_CHANNEL),
            text("nsfw_videos", "withhold"),
            sub="set",
            user_id=ADMIN,
        )
        assert_private(changed)
        # the balance's reading time is a Discord timestamp: <t:…:R> (tests/test_discord_alerts.py)
        assert RESET.sub("<t:R>", changed.content) == (
            f"Admin notices go to <#{LOG_CHANNEL}>.\n"
            "NSFW-flagged videos outside age-restricted channels: **withhold**.\n"
            "Videos start without asking members to confirm their price (confirm_above: off); "
            "variations of a result always show their price first.\n"
            "WaveSpeed account balance: **$100.00** (read <t:R>).\n"
            "No warning when it runs low (low_balance_usd: off).\n"
            "Videos can be made in **any channel**.\n"
            "**Every member** can make videos."
        )
        storage = bot.services.storage
        assert await load_setting(storage, GUILD, LOG_CHANNEL_SETTING) == LOG_CHANNEL
        assert await load_setting(storage, GUILD, NSFW_POLICY) is NsfwPolicy.WITHHOLD

    async with world.bot():  # a restart keeps them
        again = await run(world, "wanbot-settings", sub="show", user_id=ADMIN)
    assert RESET.sub("<t:R>", again.content) == RESET.sub("<t:R>", changed.content)


async def test_settings_warn_about_a_log_channel_the_bot_cannot_post_in(world: World) -> None:
    async with world.bot():
        reply = await run(
            world,
            "wanbot-settings",
            channel("log_channel", LOCKED_CHANNEL),
            sub="set",
            user_id=ADMIN,
        )
    assert f"<#{LOCKED_CHANNEL}> — ⚠️ but I can't post there" in reply.content


async def test_out_of_credit_tells_the_admins_and_refunds_the_member(world: World) -> None:
    async with world.bot() as bot:
        await run(
            world, "wanbot-settings", channel("log_channel", LOG_CHANNEL), sub="set", user_id=ADMIN
        )
        world.wavespeed.out_of_credit = True
        interaction = await finished_video(world)

        notice = await world.discord.wait_for_message(lambda m: m.channel_id == LOG_CHANNEL)
        assert not notice.ephemeral
        assert notice.content.startswith("⚠️ **wanbot needs an admin.**")
        assert "out of credit" in notice.content and "Job 1; $0.25 was refunded" in notice.content

        assert interaction.original is not None
        told = interaction.original.content
        assert told.startswith(f"❌ <@{MEMBER}> no video this time.")
        assert "out of credit" in told and "💸 $0.25 refunded." in told
        assert world.wavespeed.submissions == []
        assert [(e.kind, e.amount_micro) for e in await ledger(bot)] == [
            ("reserve", FIVE_SECONDS_WITH_AUDIO),
            ("refund", FIVE_SECONDS_WITH_AUDIO),
        ]
        assert (await bot.services.storage.member_balance(GUILD, MEMBER)).available == 5_000_000
        assert [m.content for m in world.discord.messages_in(LOG_CHANNEL)] == [notice.content]
