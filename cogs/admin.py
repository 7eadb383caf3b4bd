"""Admin commands (Manage Server): /usage with a CSV export, and /wanbot-settings."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.budget import period_key
from bot.pricing import format_usd
from cogs.delivery import LOG_CHANNEL_KEY, NSFW_POLICY_KEY
from storage.base import LedgerEntry

if TYPE_CHECKING:
    from bot.app import WanBot

TOP_MEMBERS = 10
CSV_COLUMNS = (
    "id",
    "created_at",
    "period",
    "member_id",
    "kind",
    "amount_usd",
    "job_id",
    "actor_id",
    "note",
)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(text: str) -> str:
    """Free text for a spreadsheet cell: a leading ' keeps `=HYPERLINK(...)` from running."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def ledger_csv(entries: Sequence[LedgerEntry]) -> bytes:
    """The ledger rows as CSV, amounts in exact dollars."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        writer.writerow(
            [
                e.id,
                e.created_at.isoformat(),
                e.period_key,
                e.member_id,
                e.kind,
                format_usd(e.amount_micro).replace("$", "").replace(",", ""),
                e.job_id or "",
                e.actor_id or "",
                safe_cell(e.note or ""),
            ]
        )
    return out.getvalue().encode()


def can_post(channel: discord.TextChannel) -> bool:
    """Whether the bot may send messages in `channel`."""
    permissions = channel.permissions_for(channel.guild.me)
    return permissions.view_channel and permissions.send_messages


class AdminCog(commands.Cog, name="Admin"):
    """Server-wide spend and per-server settings."""

    def __init__(self, bot: WanBot) -> None:
        self.bot = bot

    @app_commands.command(name="usage", description="Server-wide video spend this period (admins)")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def usage(self, interaction: discord.Interaction) -> None:
        """Spend this period, the top members, and the period's ledger as CSV."""
        assert interaction.guild_id is not None
        storage = self.bot.services.storage
        server = await storage.server_balance(interaction.guild_id)
        members = await storage.usage(interaction.guild_id)
        period = period_key(discord.utils.utcnow(), self.bot.settings.budget_period)
        entries = await storage.ledger(interaction.guild_id, period)
        lines = [
            f"**Video spend this period ({period})**",
            f"Spent {format_usd(server.spent)} · held {format_usd(server.held)} · "
            f"left {format_usd(max(server.available, 0))} of "
            f"{format_usd(server.allowance + server.granted)}",
        ]
        if members:
            lines.append("**Top members**")
            lines += [
                f"{rank}. <@{m.member_id}> — {format_usd(m.spent_micro)} "
                f"({m.jobs} video{'' if m.jobs == 1 else 's'})"
                for rank, m in enumerate(members[:TOP_MEMBERS], start=1)
            ]
        else:
            lines.append("Nobody has made a video this period.")
        file = discord.File(io.BytesIO(ledger_csv(entries)), f"wanbot-ledger-{period}.csv")
        await interaction.response.send_message(
            "\n".join(lines),
            file=file,
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @app_commands.command(
        name="wanbot-settings", description="Bot settings for this server (admins)"
    )
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(
        log_channel="Where admin notices go (e.g. the WaveSpeed account is out of credit)",
        nsfw_videos="Videos flagged NSFW in channels that aren't age-restricted",
    )
    async def settings(
        self,
        interaction: discord.Interaction,
        log_channel: discord.TextChannel | None = None,
        nsfw_videos: Literal["spoiler", "withhold"] | None = None,
    ) -> None:
        """Change the given settings, then show all of them."""
        assert interaction.guild_id is not None
        storage = self.bot.services.storage
        if log_channel is not None:
            await storage.set_guild_setting(
                interaction.guild_id, LOG_CHANNEL_KEY, str(log_channel.id)
            )
        if nsfw_videos is not None:
            await storage.set_guild_setting(interaction.guild_id, NSFW_POLICY_KEY, nsfw_videos)
        log_id = await storage.get_guild_setting(interaction.guild_id, LOG_CHANNEL_KEY)
        policy = await storage.get_guild_setting(interaction.guild_id, NSFW_POLICY_KEY)
        where = f"<#{log_id}>" if log_id else "nowhere yet (set log_channel)"
        if log_channel is not None and not can_post(log_channel):
            where += " — ⚠️ but I can't post there: give me View Channel and Send Messages in it"
        await interaction.response.send_message(
            f"Admin notices go to {where}.\n"
            "NSFW-flagged videos outside age-restricted channels: "
            f"**{policy or 'spoiler'}**.",
            ephemeral=True,
        )


async def setup(bot: WanBot) -> None:
    """Extension entry point."""
    await bot.add_cog(AdminCog(bot))
