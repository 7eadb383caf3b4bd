"""/usage's chart: the pure chart and spend-per-day code, and the PNG that /usage attaches,
fetched back from the loopback fake Discord's CDN and decoded with Pillow."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from bot.charts import BAR_COLOR, CHART_HEIGHT_PX, CHART_WIDTH_PX, usage_chart
from bot.domain.budget import BudgetPeriod, period_key
from bot.domain.job import JobOwner, LedgerEntry
from bot.domain.request import GenerationRequest
from bot.domain.spend import daily_spend, period_starts_at
from bot.i18n import EN, t
from cogs import texts
from cogs.admin import member_name
from tests.discord_world import (
    ADMIN_ROLE,
    CHANNEL,
    GUILD,
    MEMBER,
    OTHER_MEMBER,
    World,
    make_world,
)
from tests.fakes.discord_server import FakeMessage
from tests.fakes.images import PNG_SIGNATURE

ADMIN = 700_000_000_000_000_300
NOW = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)  # a Wednesday


def blurple_pixels(png: bytes) -> int:
    """How many pixels have the colour of the spend-per-day bars."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    target = tuple(int(BAR_COLOR[i : i + 2], 16) for i in (1, 3, 5))
    return sum(count for count, colour in image.getcolors(1 << 20) or [] if colour == target)


def entry(kind: str, micro: int, at: datetime, member_id: int = MEMBER) -> LedgerEntry:
    """A ledger row as storage returns it."""
    return LedgerEntry(0, GUILD, member_id, kind, micro, "p", 1, None, None, at)


# --- the pure parts -------------------------------------------------------------------------------


def test_the_chart_is_a_png_of_the_fixed_size_with_bars() -> None:
    days = [(date(2026, 11, 1) + timedelta(days=n), n % 4 * 125_000) for n in range(30)]
    members = [("ada", 2_500_000), ("$5 $10 \\frac{a}{b} " + "x" * 60, 1_125_000)]
    png = usage_chart("2026-11", days, members)
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.size) == ("PNG", (CHART_WIDTH_PX, CHART_HEIGHT_PX))
    assert blurple_pixels(png) > 1000


def test_an_empty_chart_still_draws_at_the_same_size() -> None:
    png = usage_chart("2026-W48", [], [])
    assert Image.open(io.BytesIO(png)).size == (CHART_WIDTH_PX, CHART_HEIGHT_PX)
    assert blurple_pixels(png) == 0


def test_one_day_of_spend_draws_a_bar() -> None:
    png = usage_chart("2026-11-25", [(date(2026, 11, 25), 250_000)], [("member 1", 250_000)])
    assert blurple_pixels(png) > 1000


@pytest.mark.parametrize(
    ("period", "start"),
    [
        (BudgetPeriod.DAY, datetime(2026, 11, 25, tzinfo=UTC)),
        (BudgetPeriod.WEEK, datetime(2026, 11, 23, tzinfo=UTC)),  # the Monday
        (BudgetPeriod.MONTH, datetime(2026, 11, 1, tzinfo=UTC)),
        (BudgetPeriod.NONE, None),
    ],
)
def test_period_starts(period: BudgetPeriod, start: datetime | None) -> None:
    assert period_starts_at(NOW, period) == start
    if start is not None:  # the same period as now, and the day before is not
        assert period_key(start, period) == period_key(NOW, period)
        assert period_key(start - timedelta(microseconds=1), period) != period_key(NOW, period)


def test_daily_spend_counts_charges_per_utc_day_over_the_whole_period() -> None:
    entries = [
        entry("limit", 9_000_000, NOW.replace(day=2)),
        entry("grant", 1_000_000, NOW.replace(day=3)),
        entry("reserve", 250_000, NOW.replace(day=3, hour=23, minute=59)),
        entry("charge", 250_000, NOW.replace(day=4, hour=0, minute=1)),  # settled after midnight
        entry("reserve", 500_000, NOW.replace(day=4)),
        entry("refund", 500_000, NOW.replace(day=4)),  # a hold released: nothing was spent
        entry("reserve", 125_000, NOW.replace(day=4)),
        entry("charge", 125_000, NOW.replace(day=4), member_id=OTHER_MEMBER),
        entry("charge", 1_125_000, NOW.replace(day=20)),
    ]
    days = daily_spend(entries, NOW, BudgetPeriod.MONTH)
    assert [d for d, _ in days] == [date(2026, 11, n) for n in range(1, 26)]
    spent = dict(days)
    assert spent[date(2026, 11, 4)] == 375_000 and spent[date(2026, 11, 20)] == 1_125_000
    assert spent[date(2026, 11, 3)] == 0
    assert sum(spent.values()) == 1_500_000  # what the period's `spent` balance says


def test_daily_spend_without_a_reset_starts_at_the_first_charge() -> None:
    days = daily_spend([entry("charge", 1, NOW - timedelta(days=2))], NOW, BudgetPeriod.NONE)
    assert days == [(date(2026, 11, 23), 1), (date(2026, 11, 24), 0), (date(2026, 11, 25), 0)]
    assert daily_spend([], NOW, BudgetPeriod.NONE) == [(date(2026, 11, 25), 0)]


def test_members_without_a_cached_name_are_named_by_id() -> None:
    assert texts.member_label(42, None) == "member 42"
    assert texts.member_label(42, "ada") == "ada"


# --- /usage through the fake Discord --------------------------------------------------------------


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as world:
        world.discord.add_member(GUILD, ADMIN, username="root", roles=[ADMIN_ROLE])
        yield world


async def usage(world: World) -> FakeMessage:
    """/usage by an admin; the immediate private reply."""
    interaction = await world.discord.invoke_command(
        "usage", guild_id=GUILD, channel_id=CHANNEL, user_id=ADMIN
    )
    await interaction.wait_until_acked()
    assert interaction.response_type == 4, interaction.callbacks
    assert interaction.original is not None and interaction.original.flags & 64
    return interaction.original


async def finished_video(world: World, user_id: int) -> None:
    """A /video by `user_id` that has ended (delivered, so charged)."""
    interaction = await world.video(user_id=user_id)
    await interaction.wait_for(
        lambda i: i.original is not None and i.original.content.startswith(("✅", "❌")),
        timeout=10,
    )
    assert interaction.original is not None and interaction.original.content.startswith("✅")


async def download(url: str) -> bytes:
    """GET an attachment URL from the fake's CDN, as any Discord client would."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return await response.read()


async def test_usage_attaches_a_chart_beside_the_csv(world: World) -> None:
    async with world.bot() as bot:
        await finished_video(world, MEMBER)
        await finished_video(world, MEMBER)
        await finished_video(world, OTHER_MEMBER)
        reply = await usage(world)
        period = period_key(datetime.now(UTC), bot.settings.budget_period)
        guild = bot.get_guild(GUILD)
        assert guild is not None and bot.user is not None
        # members are not cached (no members intent): named by id; the bot itself is cached
        assert member_name(guild, MEMBER) == f"member {MEMBER}"
        assert member_name(guild, bot.user.id) == guild.me.display_name

    assert "Spent $0.75" in reply.content and t(EN, "usage.no_chart") not in reply.content
    csv_file, chart = reply.attachments
    assert csv_file.filename == f"wanbot-ledger-{period}.csv"
    assert chart.filename == f"wanbot-usage-{period}.png"
    png = await download(chart.url)
    assert png == chart.data and png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.size) == ("PNG", (CHART_WIDTH_PX, CHART_HEIGHT_PX))
    assert blurple_pixels(png) > 100  # today's bar


async def test_a_period_with_nothing_charged_answers_without_a_chart(world: World) -> None:
    async with world.bot() as bot:
        quiet = await usage(world)
        assert "Nobody has made a video this period." in quiet.content
        assert [a.filename.endswith(".csv") for a in quiet.attachments] == [True]

        # a video still in progress: a member with a job, but nothing charged
        request = GenerationRequest.parse(image="https://example.invalid/a.png", prompt="a fox")
        await bot.services.storage.reserve(
            JobOwner(GUILD, CHANNEL, MEMBER),
            request.model_dump_json(),
            250_000,
            5,
            lease_owner="elsewhere",  # another live process follows it; this bot leaves it
            lease_s=600,
        )
        held = await usage(world)
    assert "held $0.25" in held.content and f"<@{MEMBER}> — $0.00 (1 video)" in held.content
    assert held.content.endswith(t(EN, "usage.no_chart"))
    assert [a.filename.endswith(".csv") for a in held.attachments] == [True]
