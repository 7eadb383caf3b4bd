"""Money alerts end to end: a real discord.py client against the loopback fake Discord, the fake
WaveSpeed and real SQLite — spend alerts at 50/80/100 % once per period, the WaveSpeed balance in
/wanbot-settings, the low-balance warning once per drop, and a request the account cannot pay for
refused before anything is reserved."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import bot.services as services_module
from bot.app import WanBot
from bot.domain.alerts import NO_CREDIT_MARKER
from bot.domain.server_settings import LOG_CHANNEL as LOG_CHANNEL_SETTING
from bot.domain.server_settings import LOW_BALANCE
from bot.i18n import EN, t
from cogs.alerts import check_spend
from storage.server_settings import load_setting, save_setting
from tests.discord_world import (
    ADMIN_ROLE,
    CHANNEL,
    GUILD,
    LOG_CHANNEL,
    MEMBER,
    OTHER_MEMBER,
    World,
    ledger_kinds,
    make_world,
)
from tests.fakes.discord_server import FakeInteraction, FakeMessage

ADMIN = 700_000_000_000_000_300
EPHEMERAL = 64
READ_AT = re.compile(r"\(read <t:(\d+):R>\)")
# 720p with generated audio: $0.05 a second. Against a $0.50 server budget, 5 s + 3 s + 2 s
# videos take the spend to 50 %, 80 % and 100 %, one threshold each.
PRICE_BY_DURATION = {5: 250_000, 3: 150_000, 2: 100_000}


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    """The fakes, with a $0.50 server budget; on SQLite, then on PostgreSQL."""
    async with make_world(tmp_path, server_budget_usd="0.50", database_url=database_url) as world:
        world.discord.add_member(GUILD, ADMIN, username="root", roles=[ADMIN_ROLE])
        yield world


async def with_log_channel(bot: WanBot) -> None:
    await save_setting(bot.services.storage, GUILD, LOG_CHANNEL_SETTING, LOG_CHANNEL)


def log_messages(world: World) -> list[str]:
    return [m.content for m in world.discord.messages_in(LOG_CHANNEL)]


def spend_alerts(world: World) -> list[str]:
    """The spend alerts in the log channel, oldest first, as their percentages."""
    found = (re.search(r"has used \*\*(\d+)%\*\*", text) for text in log_messages(world))
    return [match[1] for match in found if match]


async def settled(
    world: World, *, duration: int = 5, user_id: int = MEMBER
) -> tuple[FakeInteraction, str]:
    """A /video once its status says how it ended; the status."""
    interaction = await world.video(duration=duration, user_id=user_id)
    await interaction.wait_for(
        lambda i: i.original is not None and i.original.content.startswith(("✅", "❌", "🪫", "⚠️")),
        timeout=10,
    )
    assert interaction.original is not None
    return interaction, interaction.original.content


async def quiet(seconds: float = 0.3) -> None:
    """Give a late, unwanted message the time to arrive."""
    await asyncio.sleep(seconds)


async def admin_command(world: World, sub: str, *options: dict[str, Any]) -> FakeMessage:
    interaction = await world.discord.invoke_command(
        "wanbot-settings",
        guild_id=GUILD,
        channel_id=CHANNEL,
        user_id=ADMIN,
        options=[{"name": sub, "type": 1, "options": list(options)}],
    )
    await interaction.wait_until_acked()
    assert interaction.original is not None
    return interaction.original


def low_balance(value: str) -> dict[str, Any]:
    """The low_balance_usd option of /wanbot-settings set."""
    return {"name": "low_balance_usd", "type": 3, "value": value}


# --- spend alerts ---------------------------------------------------------------------------------
async def test_three_videos_cross_50_80_and_100_percent_each_told_once(world: World) -> None:
    async with world.bot() as bot:
        await with_log_channel(bot)
        for duration, pct in [(5, "50"), (3, "80"), (2, "100")]:
            _, status = await settled(world, duration=duration)
            assert status.startswith("✅")
            await world.discord.wait_for_message(
                lambda m, pct=pct: m.channel_id == LOG_CHANNEL and f"**{pct}%**" in m.content
            )
        await quiet()
        assert spend_alerts(world) == ["50", "80", "100"]
        fifty, eighty, full = log_messages(world)
        assert "($0.25 of $0.50)" in fifty and "The budget resets <t:" in fifty
        assert "($0.40 of $0.50)" in eighty
        assert "($0.50 of $0.50)" in full and "New videos are refused until" in full
        assert all(not m.ephemeral for m in world.discord.messages_in(LOG_CHANNEL))
        # the budget is spent: the next video is refused, and nothing more is told
        _, refused = await settled(world, duration=2)
        assert refused.startswith("⚠️") and "this server has only $0.00 left" in refused
        await check_spend(bot, GUILD)  # a later check (another process's delivery): nothing new
        await quiet()
    assert spend_alerts(world) == ["50", "80", "100"]


async def test_two_videos_settling_at_once_tell_a_threshold_once(
    tmp_path: Path, database_url: str
) -> None:
    async with (
        make_world(tmp_path, server_budget_usd="1.00", database_url=database_url) as world,
        world.bot() as bot,
    ):
        await with_log_channel(bot)
        # two $0.25 videos at once: $0.50 of $1.00, so 50 % is reached by whichever settles last
        interactions = await asyncio.gather(world.video(), world.video(user_id=OTHER_MEMBER))
        for interaction in interactions:
            await interaction.wait_for(
                lambda i: i.original is not None and i.original.content.startswith("✅"),
                timeout=10,
            )
        await world.discord.wait_for_message(lambda m: m.channel_id == LOG_CHANNEL)
        await quiet()
        assert spend_alerts(world) == ["50"]
        # and however many checks race on the same spend, one claims it
        await asyncio.gather(*(check_spend(bot, GUILD) for _ in range(20)))
        await quiet(0.1)
        assert spend_alerts(world) == ["50"]


async def test_the_next_period_rearms_the_spend_alerts(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's clock is moved a day on (BUDGET_PERIOD=day): the new period's spend starts
    at zero and its 50 % is told again."""
    offset = [timedelta(0)]

    def clock() -> datetime:
        return datetime.now(UTC) + offset[0]

    opened = services_module.open_storage
    monkeypatch.setattr(
        services_module,
        "open_storage",
        lambda url, policy: opened(url, policy, clock=clock),
    )
    async with (
        make_world(
            tmp_path, server_budget_usd="0.50", budget_period="day", database_url=database_url
        ) as world,
        world.bot() as wanbot,
    ):
        await with_log_channel(wanbot)
        first_day = clock().date()
        await settled(world)
        await world.discord.wait_for_message(lambda m: m.channel_id == LOG_CHANNEL)
        await settled(world, duration=2)  # $0.35: 70 %, nothing new
        await quiet()
        assert spend_alerts(world) == ["50"]

        offset[0] = timedelta(days=1)  # the next day: a new period
        _, status = await settled(world)
        assert status.startswith("✅")
        await world.discord.wait_for_message(
            lambda m: m.channel_id == LOG_CHANNEL and len(spend_alerts(world)) == 2
        )
        await quiet()
        assert spend_alerts(world) == ["50", "50"]
        storage = wanbot.services.storage
        for day in (first_day, first_day + timedelta(days=1)):
            assert await storage.get_guild_setting(GUILD, f"alert:{day.isoformat()}:50")


async def test_without_a_log_channel_a_spend_alert_is_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    async with world.bot():
        await settled(world)
        await quiet()
    assert [r for r in caplog.records if "Spend alert" in r.getMessage()]
    assert "no log channel configured" in caplog.text


# --- the WaveSpeed balance ------------------------------------------------------------------------
async def test_settings_show_the_last_known_balance_and_when_it_was_read(world: World) -> None:
    async with world.bot() as bot:
        world.wavespeed.balance_usd = "12.34"
        before = datetime.now(UTC).timestamp()
        await bot.services.balance.refresh()
        shown = await admin_command(world, "show")
    assert shown.flags & EPHEMERAL
    assert "WaveSpeed account balance: **$12.34** (read <t:" in shown.content
    match = READ_AT.search(shown.content)
    assert match is not None and before - 1 <= int(match[1]) <= datetime.now(UTC).timestamp()
    assert "No warning when it runs low (low_balance_usd: off)." in shown.content


async def test_the_balance_is_read_periodically_once_the_bot_runs(world: World) -> None:
    async with world.bot(balance_every_s=0.05) as bot:
        await asyncio.sleep(0.5)
        reads = len(world.wavespeed.calls("balance"))
        assert reads >= 3
        world.wavespeed.balance_usd = 7
        await wait_for_reading(bot, lambda micro: micro == 7_000_000)
    reads = len(world.wavespeed.calls("balance"))
    await quiet(0.2)
    assert len(world.wavespeed.calls("balance")) == reads  # stopped with the bot


async def test_low_balance_warns_once_per_drop(world: World) -> None:
    async with world.bot() as bot:
        await with_log_channel(bot)
        bad = await admin_command(world, "set", low_balance("x"))
        assert bad.content == "⚠️ " + t(EN, "alerts.low_balance_invalid")
        assert await load_setting(bot.services.storage, GUILD, LOW_BALANCE) is None
        changed = await admin_command(world, "set", low_balance("$5"))
        assert "Admins are warned when it falls below **$5.00**." in changed.content
        assert await load_setting(bot.services.storage, GUILD, LOW_BALANCE) == 5_000_000

        refresh = bot.services.balance.refresh
        for balance in ("100", "4.99", "4.50", "3", "5", "20", "2.75", "1"):
            world.wavespeed.balance_usd = balance
            await refresh()
        await quiet(0.1)
        warnings = [text for text in log_messages(world) if "warning level" in text]
        assert len(warnings) == 2  # 4.99 (a drop), then 2.75 (after 5 re-armed it)
        assert "balance is $4.99, below this server's warning level of $5.00" in warnings[0]
        assert "balance is $2.75" in warnings[1]

        off = await admin_command(world, "set", low_balance("0"))
        assert "No warning when it runs low (low_balance_usd: off)." in off.content
        world.wavespeed.balance_usd = "0.5"
        await refresh()
        await quiet(0.1)
        assert len([text for text in log_messages(world) if "warning level" in text]) == 2


async def test_the_periodic_check_warns_of_a_low_balance_once(world: World) -> None:
    async with world.bot(balance_every_s=0.05) as bot:
        await with_log_channel(bot)
        await save_setting(bot.services.storage, GUILD, LOW_BALANCE, 5_000_000)
        world.wavespeed.balance_usd = 1
        await world.discord.wait_for_message(
            lambda m: m.channel_id == LOG_CHANNEL and "warning level" in m.content
        )
        await quiet(0.5)  # about ten more readings, all below
        assert len(log_messages(world)) == 1


# --- refused before anything is reserved ----------------------------------------------------------
def nothing_reserved_or_sent(world: World) -> None:
    assert not world.wavespeed.uploads and not world.wavespeed.submissions


async def wait_for_reading(bot: WanBot, test: Callable[[int], bool]) -> None:
    async with asyncio.timeout(5):
        while (reading := await bot.services.balance.latest()) is None or not test(reading.micro):
            await asyncio.sleep(0.02)


async def test_a_video_the_account_cannot_pay_is_refused_before_anything_is_reserved(
    world: World,
) -> None:
    async with world.bot() as bot:
        await with_log_channel(bot)
        world.wavespeed.balance_usd = "0.10"  # a 5 s video with audio costs $0.25
        await bot.services.balance.refresh()
        for _ in range(2):
            interaction, told = await settled(world)
            assert told == t(EN, "alerts.no_credit_refusal")
            assert interaction.original is not None and interaction.original.flags & EPHEMERAL
            assert "the admins have been told" in told
        assert await ledger_kinds(bot) == []  # nothing reserved
        nothing_reserved_or_sent(world)
        [notice] = log_messages(world)  # told once, not once per refusal
        assert notice.startswith("⚠️ **wanbot needs an admin.** The WaveSpeed account is out of")
        assert "it had $0.10 when last read" in notice and "a $0.25 video" in notice

        # a cheaper video fits the balance: it is made
        _, status = await settled(world, duration=2)  # $0.10
        assert status.startswith("✅")

        world.wavespeed.balance_usd = "50"  # topped up: videos work, the notice is re-armed
        await bot.services.balance.refresh()
        assert await bot.services.storage.get_guild_setting(GUILD, NO_CREDIT_MARKER) is None
        _, status = await settled(world)
        assert status.startswith("✅")
        world.wavespeed.balance_usd = "0"
        await bot.services.balance.refresh()
        _, told = await settled(world)
        assert told == t(EN, "alerts.no_credit_refusal")
        await quiet(0.1)
        notices = [text for text in log_messages(world) if "out of credit" in text]
        assert len(notices) == 2


async def test_an_out_of_credit_error_reads_the_balance_at_once(world: World) -> None:
    async with world.bot() as bot:
        await with_log_channel(bot)
        await bot.services.balance.refresh()  # the reading at start: $100
        world.wavespeed.out_of_credit = True
        world.wavespeed.balance_usd = "0.02"
        _, status = await settled(world)
        assert status.startswith("❌") and "out of credit" in status  # refunded (the runner)
        await wait_for_reading(bot, lambda micro: micro == 20_000)

        uploads = len(world.wavespeed.uploads)  # the failed job's image
        _, told = await settled(world)
        assert told == t(EN, "alerts.no_credit_refusal")
        assert await ledger_kinds(bot) == [("reserve", 250_000), ("refund", 250_000)]
        assert world.wavespeed.submissions == [] and len(world.wavespeed.uploads) == uploads
        await quiet(0.1)
        # the failed job's notice, then the refusal's
        assert [("Job 1" in t, "it had $0.02" in t) for t in log_messages(world)] == [
            (True, False),
            (False, True),
        ]
