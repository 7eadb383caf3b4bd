"""/budget: a member's own balance, and the admin commands that change budgets."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.domain.budget import SERVER_SCOPE_MEMBER_ID
from bot.domain.job import JobRecord
from bot.domain.lifecycle import JobState, Settlement
from bot.domain.pricing import format_usd, parse_usd
from bot.domain.request import GenerationRequest
from cogs import texts

if TYPE_CHECKING:
    from bot.app import WanBot

STATE_ICONS = {JobState.DELIVERED: "✅", JobState.FAILED: "❌", JobState.CLOSED: "❌"}
MAX_AMOUNT_MICRO = 1_000_000 * 1_000_000  # $1,000,000: anything above is a typo


def parse_amount(text: str, *, allow_negative: bool = False) -> int:
    """Parse a dollar amount typed by an admin, with a friendly error."""
    try:
        micro = parse_usd(text)
    except ValueError:
        raise app_commands.AppCommandError(
            f"`{text}` isn't a dollar amount. Write it like `5`, `2.50` or `$0.125`."
        ) from None
    if micro < 0 and not allow_negative:
        raise app_commands.AppCommandError("The amount can't be negative.")
    if abs(micro) > MAX_AMOUNT_MICRO:
        raise app_commands.AppCommandError("That amount is too large.")
    return micro


def granted_text(granted: int) -> str:
    """The grants after an allowance: " + $1.50 granted" or " − $0.50 taken back"."""
    if granted > 0:
        return f" + {format_usd(granted)} granted"
    if granted < 0:
        return f" − {format_usd(-granted)} taken back"
    return ""


def job_line(job: JobRecord) -> str:
    """One line about a past job for /budget show."""
    request = GenerationRequest.model_validate_json(job.request_json)
    icon = STATE_ICONS.get(job.state, "⏳")
    prompt = request.prompt if len(request.prompt) <= 60 else request.prompt[:60] + "…"
    outcome = "refunded" if job.settlement is Settlement.REFUND else format_usd(job.price_micro)
    return (
        f"{icon} #{job.id} {texts.relative_time(job.created_at)} · "
        f"{request.resolution} {request.duration} s · {outcome} · {prompt}"
    )


class BudgetCog(commands.Cog, name="Budget"):
    """Budgets in chat: see your own; admins set, cap and grant."""

    budget = app_commands.Group(
        name="budget", description="Video budgets on this server", guild_only=True
    )

    def __init__(self, bot: WanBot) -> None:
        self.bot = bot

    @budget.command(name="show", description="What you have spent and have left this period")
    @app_commands.describe(member="Admins: someone else's budget")
    async def show(
        self, interaction: discord.Interaction, member: discord.Member | None = None
    ) -> None:
        """A member's balance, the server's, and their last videos (only the asker sees it).
        Looking at someone else's needs Manage Server."""
        assert interaction.guild_id is not None
        whose = member or interaction.user
        if whose.id != interaction.user.id and not interaction.permissions.manage_guild:
            raise app_commands.MissingPermissions(["manage_guild"])
        storage = self.bot.services.storage
        mine = await storage.member_balance(interaction.guild_id, whose.id)
        server = await storage.server_balance(interaction.guild_id)
        jobs = await storage.recent_jobs(interaction.guild_id, whose.id, limit=5)
        title = "Your" if whose.id == interaction.user.id else f"{whose.mention}'s"
        lines = [
            f"**{title} video budget this period**",
            f"Allowance {format_usd(mine.allowance)}{granted_text(mine.granted)}",
            f"Spent {format_usd(mine.spent)}"
            + (f" · {format_usd(mine.held)} held for videos in progress" if mine.held else ""),
            f"Left **{format_usd(max(mine.available, 0))}** · resets "
            + texts.relative_time(mine.resets_at),
            f"The server has {format_usd(max(server.available, 0))} left of "
            f"{format_usd(server.allowance + server.granted)}.",
        ]
        if jobs:
            lines += ["", f"**{title} last videos**", *map(job_line, jobs)]
        await interaction.response.send_message(
            "\n".join(lines), ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )

    @budget.command(name="set", description="Set a member's allowance per period (admins)")
    @app_commands.describe(member="Whose allowance", amount="Dollars per period, e.g. 2.50")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def set_member(
        self, interaction: discord.Interaction, member: discord.Member, amount: str
    ) -> None:
        """Set one member's allowance; recorded in the ledger with who did it."""
        micro = parse_amount(amount)
        await self._record_allowance(interaction, member.id, micro)
        await interaction.response.send_message(
            f"{member.mention} may now spend {format_usd(micro)} per period.",
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @budget.command(name="server", description="Set the whole server's cap per period (admins)")
    @app_commands.describe(amount="Dollars per period for all members together, e.g. 50")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def set_server(self, interaction: discord.Interaction, amount: str) -> None:
        """Set the server-wide cap; recorded in the ledger with who did it."""
        micro = parse_amount(amount)
        await self._record_allowance(interaction, SERVER_SCOPE_MEMBER_ID, micro)
        await interaction.response.send_message(
            f"The server may now spend {format_usd(micro)} per period.", ephemeral=True
        )

    @budget.command(name="grant", description="Give a member extra money this period (admins)")
    @app_commands.describe(
        member="Who gets it", amount="Dollars, e.g. 1.50 (negative takes back)", note="Why"
    )
    @app_commands.checks.has_permissions(manage_guild=True)
    async def grant(
        self,
        interaction: discord.Interaction,
        member: discord.Member,
        amount: str,
        note: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        """Add to (or take from) a member's budget for this period."""
        assert interaction.guild_id is not None
        micro = parse_amount(amount, allow_negative=True)
        storage = self.bot.services.storage
        await storage.grant(interaction.guild_id, member.id, micro, interaction.user.id, note)
        balance = await storage.member_balance(interaction.guild_id, member.id)
        done = (
            f"Took back {format_usd(-micro)} from"
            if micro < 0
            else f"Granted {format_usd(micro)} to"
        )
        await interaction.response.send_message(
            f"{done} {member.mention}; they have "
            f"{format_usd(max(balance.available, 0))} left this period.",
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    async def _record_allowance(
        self, interaction: discord.Interaction, member_id: int, micro: int
    ) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.storage.set_allowance(
            interaction.guild_id, member_id, micro, interaction.user.id
        )


async def setup(bot: WanBot) -> None:
    """Extension entry point."""
    await bot.add_cog(BudgetCog(bot))
