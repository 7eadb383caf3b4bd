"""Money alerts in Discord: each server's log channel hears when its spend passes 50, 80 and 100 %
of its budget in a period, and when the WaveSpeed account's balance falls below the server's
`low_balance_usd`; a request the last known balance cannot pay for is refused before anything is
reserved. The rules are bot.domain.alerts; "once" is a marker the store claims atomically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import aiohttp
import discord
from discord.ext import commands

from bot.domain.alerts import (
    LOW_BALANCE_MARKER,
    NO_CREDIT_MARKER,
    BalanceReading,
    LowBalanceStep,
    budget_period_of,
    can_pay,
    low_balance_step,
    spend_alert_key,
    thresholds_reached,
    topped_up,
)
from bot.domain.server_settings import LOG_CHANNEL, LOW_BALANCE
from bot.i18n import language_of, server_language, t
from cogs import texts
from storage.server_settings import load_setting

if TYPE_CHECKING:
    from bot.app import WanBot

log = logging.getLogger(__name__)

# What can go wrong sending to Discord: its errors, and the connection itself.
_SEND_ERRORS = (discord.HTTPException, aiohttp.ClientError, TimeoutError)
GATEWAY_WAIT_S = 60.0  # the first reading comes at start-up: wait this long for the servers


async def tell_admins(bot: WanBot, guild_id: int, text: str, *, level: int = logging.ERROR) -> None:
    """Post `text` in the server's log channel; without one (or if Discord refuses), log it at
    `level` instead. Never raises for Discord's sake."""
    channel_id = await load_setting(bot.services.storage, guild_id, LOG_CHANNEL)
    if channel_id is None:
        log.log(level, "guild %s: %s (no log channel configured)", guild_id, text)
        return
    channel = bot.get_partial_messageable(channel_id, guild_id=guild_id)
    try:
        await channel.send(text, allowed_mentions=discord.AllowedMentions.none())
    except _SEND_ERRORS as error:
        log.error("guild %s: could not reach the log channel: %s", guild_id, error)


async def check_spend(bot: WanBot, guild_id: int) -> None:
    """After a job of the server was charged: tell the admins of every spend threshold reached
    this period and not told yet (once, at the highest, when one charge passes several).
    Reads after the charge, so two jobs settling at once both see it; the claim decides which
    tells. Never raises: the video is delivered already."""
    try:
        storage = bot.services.storage
        balance = await storage.server_balance(guild_id)
        period = budget_period_of(balance, bot.settings.budget_period)
        claimed = [
            pct
            for pct in thresholds_reached(balance.spent, balance.allowance + balance.granted)
            if await storage.claim_alert(guild_id, spend_alert_key(period, pct))
        ]
        if claimed:
            lang = server_language(bot, guild_id)  # the log channel: the server's language
            text = texts.spend_alert(max(claimed), balance, lang=lang)
            await tell_admins(bot, guild_id, text, level=logging.WARNING)
    except Exception:
        log.exception("guild %s: the spend alerts could not be checked", guild_id)


async def refuse_without_credit(bot: WanBot, interaction: discord.Interaction, price: int) -> bool:
    """Whether the last known WaveSpeed balance cannot pay `price`; if so the member is told
    privately (the interaction was deferred ephemerally) and the admins once until the balance
    goes up. Nothing is reserved either way."""
    assert interaction.guild_id is not None
    reading = await bot.services.balance.latest()
    if can_pay(reading, price):
        return False
    assert reading is not None
    refusal = t(language_of(interaction.locale), "alerts.no_credit_refusal")
    await interaction.edit_original_response(
        content=refusal, allowed_mentions=discord.AllowedMentions.none()
    )
    if await bot.services.storage.claim_alert(interaction.guild_id, NO_CREDIT_MARKER):
        lang = server_language(bot, interaction.guild_id)
        notice = texts.no_credit_notice(price, reading, lang=lang)
        await tell_admins(bot, interaction.guild_id, notice)
    return True


class AlertsCog(commands.Cog, name="Alerts"):
    """Starts the balance watch with the bot (Services stops it on close) and acts on each
    reading."""

    def __init__(self, bot: WanBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        watch = self.bot.services.balance
        watch.add_listener(self.on_balance)
        watch.start()

    async def on_balance(self, reading: BalanceReading, previous: BalanceReading | None) -> None:
        """Warn or re-arm each server's low-balance warning; a top-up re-arms "out of credit"."""
        storage = self.bot.services.storage
        if not self.bot.is_ready():  # which servers are this process's is known only then
            # asyncio.timeout, not wait_for: on 3.11 wait_for may swallow a cancellation that
            # comes as the wait ends, and the bot closing would wait for this forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(GATEWAY_WAIT_S):
                    await self.bot.wait_until_ready()
        if topped_up(previous.micro if previous else None, reading.micro):
            # every server's, not only this process's: the next reading, by whichever process,
            # no longer sees the rise
            for guild_id in await storage.guilds_with_setting(NO_CREDIT_MARKER):
                await storage.set_guild_setting(guild_id, NO_CREDIT_MARKER, None)
        levels = await storage.guilds_with_setting(LOW_BALANCE.key)
        warned = await storage.guilds_with_setting(LOW_BALANCE_MARKER)
        for guild_id in sorted(levels.keys() | warned.keys()):
            if self.bot.get_guild(guild_id) is None:
                continue  # not a server of this process's shards: its own process sees to it
            threshold = LOW_BALANCE.read(levels.get(guild_id))
            step = low_balance_step(reading.micro, threshold, guild_id in warned)
            if step is LowBalanceStep.WARN and threshold is not None:
                if await storage.claim_alert(guild_id, LOW_BALANCE_MARKER):
                    lang = server_language(self.bot, guild_id)
                    text = texts.low_balance_warning(reading, threshold, lang=lang)
                    await tell_admins(self.bot, guild_id, text, level=logging.WARNING)
            elif step is LowBalanceStep.REARM:
                await storage.set_guild_setting(guild_id, LOW_BALANCE_MARKER, None)


async def setup(bot: WanBot) -> None:
    """Extension entry point."""
    await bot.add_cog(AlertsCog(bot))
