"""Admin commands (Manage Server): /usage with a chart and a CSV export, and /wanbot-settings
(notices, NSFW policy, and where and by whom videos may be made)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.charts import usage_chart
from bot.domain.access import MAX_ENTRIES, TooManyEntries, VideoAccess, with_id, without_id
from bot.domain.budget import period_key
from bot.domain.job import LedgerEntry
from bot.domain.pricing import format_usd
from bot.domain.server_settings import (
    CONFIRM_ABOVE,
    LOG_CHANNEL,
    LOW_BALANCE,
    NSFW_POLICY,
    VIDEO_CHANNELS,
    VIDEO_ROLES,
    NsfwPolicy,
    ServerSetting,
    parse_confirm_above,
)
from bot.domain.spend import daily_spend
from bot.i18n import EN, Language, LocalizedError, language_of, t, tn
from cogs import texts
from storage.server_settings import load_setting, load_video_access, save_setting

if TYPE_CHECKING:
    from bot.app import WanBot

TOP_MEMBERS = 10
#: Where /video can be allowed: text channels (and their threads), voice channels' chat, forums
#: (their posts are threads), or one thread.
VideoPlace = discord.TextChannel | discord.VoiceChannel | discord.ForumChannel | discord.Thread
IdList = ServerSetting[tuple[int, ...]]  # VIDEO_CHANNELS or VIDEO_ROLES
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


def member_name(guild: discord.Guild | None, member_id: int, lang: Language = EN) -> str:
    """A member's display name if the guild's cache has them (the bot has no members intent,
    so it does not ask Discord), else `member <id>`."""
    member = guild.get_member(member_id) if guild else None
    return texts.member_label(member_id, member.display_name if member else None, lang=lang)


def can_post(channel: discord.TextChannel) -> bool:
    """Whether the bot may send messages in `channel`."""
    permissions = channel.permissions_for(channel.guild.me)
    return permissions.view_channel and permissions.send_messages


def can_deliver(channel: VideoPlace) -> bool:
    """Whether the bot may post videos in `channel` (for a forum: in its posts)."""
    try:
        permissions = channel.permissions_for(channel.guild.me)
    except discord.ClientException:  # a thread whose parent isn't cached: don't warn on a guess
        return True
    threaded = isinstance(channel, discord.Thread | discord.ForumChannel)
    send = permissions.send_messages_in_threads if threaded else permissions.send_messages
    return permissions.view_channel and send and permissions.attach_files


class AdminCog(commands.Cog, name="Admin"):
    """Server-wide spend and per-server settings."""

    def __init__(self, bot: WanBot) -> None:
        self.bot = bot

    @app_commands.command(name="usage", description="Server-wide video spend this period (admins)")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def usage(self, interaction: discord.Interaction) -> None:
        """Spend this period, the top members, the period's ledger as CSV, and a chart of the
        spend per day and per member (when anything was charged)."""
        assert interaction.guild_id is not None
        storage = self.bot.services.storage
        server = await storage.server_balance(interaction.guild_id)
        members = await storage.usage(interaction.guild_id)
        now = discord.utils.utcnow()
        period = period_key(now, self.bot.settings.budget_period)
        entries = await storage.ledger(interaction.guild_id, period)
        lang = language_of(interaction.locale)
        lines = [
            t(lang, "usage.title", period=period),
            t(
                lang,
                "usage.totals",
                spent=format_usd(server.spent),
                held=format_usd(server.held),
                left=format_usd(max(server.available, 0)),
                total=format_usd(server.allowance + server.granted),
            ),
        ]
        if members:
            lines.append(t(lang, "usage.top"))
            lines += [
                tn(
                    lang,
                    "usage.member",
                    m.jobs,
                    rank=rank,
                    member_id=m.member_id,
                    spent=format_usd(m.spent_micro),
                )
                for rank, m in enumerate(members[:TOP_MEMBERS], start=1)
            ]
        else:
            lines.append(t(lang, "usage.nobody"))
        files = [discord.File(io.BytesIO(ledger_csv(entries)), f"wanbot-ledger-{period}.csv")]
        days = daily_spend(entries, now, self.bot.settings.budget_period)
        if any(spent for _, spent in days):
            top = [
                (member_name(interaction.guild, m.member_id, lang), m.spent_micro)
                for m in members[:TOP_MEMBERS]
                if m.spent_micro > 0
            ]
            # drawing is CPU work: keep it off the event loop
            chart = await asyncio.to_thread(usage_chart, period, days, top, lang=lang)
            files.append(discord.File(io.BytesIO(chart), f"wanbot-usage-{period}.png"))
        elif members:  # videos in progress or refunded, nothing charged: nothing to draw
            lines.append(t(lang, "usage.no_chart"))
        await interaction.response.send_message(
            "\n".join(lines),
            files=files,
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    settings = app_commands.Group(
        name="wanbot-settings",
        description="Bot settings for this server (admins)",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )
    video_channels = app_commands.Group(
        name="video-channels",
        description="Channels where /video works (none listed: everywhere)",
        parent=settings,
    )
    video_roles = app_commands.Group(
        name="video-roles",
        description="Roles that may make videos (none listed: every member)",
        parent=settings,
    )

    @settings.command(name="show", description="Show this server's bot settings (admins)")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def show(self, interaction: discord.Interaction) -> None:
        """All settings."""
        await self._reply(interaction)

    @settings.command(
        name="set",
        description="Admin notices, NSFW policy, price confirmation, low-balance warning (admins)",
    )
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(
        log_channel="Where admin notices go (e.g. the WaveSpeed account is out of credit)",
        nsfw_videos="Videos flagged NSFW in channels that aren't age-restricted",
        confirm_above="Members confirm the price of videos over this many dollars, e.g. 0.50 "
        "(0 or off: never)",
        low_balance_usd="Warn the admins when the WaveSpeed balance falls below this many "
        "dollars, e.g. 5 (0 or off: never)",
    )
    async def set_(
        self,
        interaction: discord.Interaction,
        log_channel: discord.TextChannel | None = None,
        # a Literal of NsfwPolicy's values: an enum here would show its member names as choices
        nsfw_videos: Literal["spoiler", "withhold"] | None = None,
        confirm_above: app_commands.Range[str, 1, 20] | None = None,
        low_balance_usd: app_commands.Range[str, 1, 20] | None = None,
    ) -> None:
        """Change the given settings, then show all of them."""
        assert interaction.guild_id is not None
        storage = self.bot.services.storage
        if low_balance_usd is not None:  # checked first: a bad amount changes nothing
            try:
                # the same form as confirm_above: dollars, or 0 / off
                low_balance = parse_confirm_above(low_balance_usd)
            except ValueError:
                raise LocalizedError("alerts.low_balance_invalid") from None
        if confirm_above is not None:  # checked first: a bad amount changes nothing
            try:
                threshold = parse_confirm_above(confirm_above)
            except ValueError:
                raise LocalizedError("settings.confirm_invalid") from None
            await save_setting(storage, interaction.guild_id, CONFIRM_ABOVE, threshold)
        if low_balance_usd is not None:
            await save_setting(storage, interaction.guild_id, LOW_BALANCE, low_balance)
        if log_channel is not None:
            await save_setting(storage, interaction.guild_id, LOG_CHANNEL, log_channel.id)
        if nsfw_videos is not None:
            await save_setting(storage, interaction.guild_id, NSFW_POLICY, NsfwPolicy(nsfw_videos))
        unreachable = log_channel is not None and not can_post(log_channel)
        await self._reply(interaction, log_unreachable=unreachable)

    @video_channels.command(name="add", description="Allow /video in a channel (admins)")
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(
        channel="Once any channel is listed, /video works only in listed ones and their threads"
    )
    async def add_channel(self, interaction: discord.Interaction, channel: VideoPlace) -> None:
        """Add a channel to the allowed list."""
        before = (await self._access(interaction)).channel_ids
        after = await self._add(interaction, VIDEO_CHANNELS, before, channel.id, "channels")
        lang = language_of(interaction.locale)
        if after == before:
            change = t(lang, "settings.channel.already", channel=channel.mention)
        else:
            added = "added_thread" if isinstance(channel, discord.Thread) else "added"
            change = t(lang, f"settings.channel.{added}", channel=channel.mention)
        if not before:
            change += " " + t(lang, "settings.channel.first")
        if not can_deliver(channel):
            change += "\n" + t(lang, "settings.channel.cannot_post", channel=channel.mention)
        await self._reply(interaction, change=change)

    @video_channels.command(name="remove", description="Stop allowing /video in a channel (admins)")
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(channel="A listed channel")
    async def remove_channel(self, interaction: discord.Interaction, channel: VideoPlace) -> None:
        """Remove a channel from the allowed list."""
        before = (await self._access(interaction)).channel_ids
        await self._remove(
            interaction,
            VIDEO_CHANNELS,
            before,
            channel.id,
            channel.mention,
            kind="channels",
        )

    @video_channels.command(
        name="clear", description="Allow /video in every channel again (admins)"
    )
    @app_commands.checks.has_permissions(manage_guild=True)
    async def clear_channels(self, interaction: discord.Interaction) -> None:
        """Empty the allowed-channel list."""
        await self._store(interaction, VIDEO_CHANNELS, ())
        cleared = t(language_of(interaction.locale), "settings.channels.cleared")
        await self._reply(interaction, change=cleared)

    @video_roles.command(name="add", description="Let members with a role make videos (admins)")
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(
        role="Once any role is listed, only members with a listed role can make videos"
    )
    async def add_role(self, interaction: discord.Interaction, role: discord.Role) -> None:
        """Add a role to the required list."""
        before = (await self._access(interaction)).role_ids
        after = await self._add(interaction, VIDEO_ROLES, before, role.id, "roles")
        lang = language_of(interaction.locale)
        if after == before:
            change = t(lang, "settings.role.already", role=role.mention)
        else:
            change = t(lang, "settings.role.added", role=role.mention)
            if not before:
                change += " " + t(lang, "settings.role.first")
        await self._reply(interaction, change=change)

    @video_roles.command(name="remove", description="Stop letting a role make videos (admins)")
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(role="A listed role")
    async def remove_role(self, interaction: discord.Interaction, role: discord.Role) -> None:
        """Remove a role from the required list."""
        before = (await self._access(interaction)).role_ids
        await self._remove(
            interaction,
            VIDEO_ROLES,
            before,
            role.id,
            role.mention,
            kind="roles",
        )

    @video_roles.command(name="clear", description="Let every member make videos again (admins)")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def clear_roles(self, interaction: discord.Interaction) -> None:
        """Empty the required-role list."""
        await self._store(interaction, VIDEO_ROLES, ())
        cleared = t(language_of(interaction.locale), "settings.roles.cleared")
        await self._reply(interaction, change=cleared)

    async def _add(
        self,
        interaction: discord.Interaction,
        setting: IdList,
        before: tuple[int, ...],
        new_id: int,
        things: str,
    ) -> tuple[int, ...]:
        """Store `before` with `new_id` added (within the cap); return the new list."""
        try:
            after = with_id(before, new_id)
        except TooManyEntries:
            raise LocalizedError(f"settings.too_many.{things}", max=MAX_ENTRIES) from None
        await self._store(interaction, setting, after)
        return after

    async def _remove(
        self,
        interaction: discord.Interaction,
        setting: IdList,
        before: tuple[int, ...],
        old_id: int,
        mention: str,
        *,
        kind: str,
    ) -> None:
        """Store `before` without `old_id` and say what changed; `kind`: channels or roles."""
        after = without_id(before, old_id)
        await self._store(interaction, setting, after)
        if after == before:
            key = "settings.not_listed"
        elif after:
            key = "settings.removed"
        else:
            key = f"settings.removed_last.{kind}"
        await self._reply(
            interaction, change=t(language_of(interaction.locale), key, mention=mention)
        )

    async def _access(self, interaction: discord.Interaction) -> VideoAccess:
        assert interaction.guild_id is not None
        return await load_video_access(self.bot.services.storage, interaction.guild_id)

    async def _store(
        self, interaction: discord.Interaction, setting: IdList, ids: tuple[int, ...]
    ) -> None:
        """Store a channel or role list (an empty one is deleted: back to no restriction)."""
        assert interaction.guild_id is not None
        await save_setting(self.bot.services.storage, interaction.guild_id, setting, ids)

    async def _reply(
        self, interaction: discord.Interaction, *, change: str = "", log_unreachable: bool = False
    ) -> None:
        """What changed (if anything), then every setting, privately."""
        assert interaction.guild_id is not None and interaction.guild is not None
        guild = interaction.guild
        storage = self.bot.services.storage
        log_id = await load_setting(storage, guild.id, LOG_CHANNEL)
        policy = await load_setting(storage, guild.id, NSFW_POLICY)
        access = await load_video_access(storage, guild.id)
        gone = {i for i in access.channel_ids if guild.get_channel_or_thread(i) is None}
        gone |= {i for i in access.role_ids if guild.get_role(i) is None}
        lang = language_of(interaction.locale)
        where = f"<#{log_id}>" if log_id is not None else t(lang, "settings.log_nowhere")
        if log_unreachable:
            where = t(lang, "settings.log_unreachable", where=where)
        confirm_above = await load_setting(storage, guild.id, CONFIRM_ABOVE)
        lines = [change] if change else []
        lines += [
            t(lang, "settings.log_channel", where=where),
            # the policy as the set command's choice names it in this language
            t(lang, "settings.nsfw", policy=t(lang, f"choice.{policy.value}")),
            texts.confirm_above_summary(confirm_above, lang=lang),
            texts.balance_summary(
                await self.bot.services.balance.latest(),
                await load_setting(storage, guild.id, LOW_BALANCE),
                lang=lang,
            ),
            texts.access_summary(access, gone, lang=lang),
        ]
        await interaction.response.send_message(
            "\n".join(lines), ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )


async def setup(bot: WanBot) -> None:
    """Extension entry point."""
    await bot.add_cog(AdminCog(bot))
