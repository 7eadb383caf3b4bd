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
from bot.i18n import EN, Language, LocalizedError, language_of, t
from cogs import texts
from cogs.roles import role_ids

if TYPE_CHECKING:
    from bot.app import WanBot

STATE_ICONS = {JobState.DELIVERED: "✅", JobState.FAILED: "❌", JobState.CLOSED: "❌"}
MAX_AMOUNT_MICRO = 1_000_000 * 1_000_000  # $1,000,000: anything above is a typo


def parse_amount(text: str, *, allow_negative: bool = False) -> int:
    """Parse a dollar amount typed by an admin, with a friendly error."""
    try:
        micro = parse_usd(text)
    except ValueError:
        raise LocalizedError("amount.invalid", text=text) from None
    if micro < 0 and not allow_negative:
        raise LocalizedError("amount.negative")
    if abs(micro) > MAX_AMOUNT_MICRO:
        raise LocalizedError("amount.too_large")
    return micro


def allowance_text(allowance: int, granted: int, *, lang: Language = EN) -> str:
    """The allowance and what was granted on top: "Allowance $5.00 + $1.50 granted"."""
    key = "budget.allowance"
    if granted:
        key = "budget.allowance_granted" if granted > 0 else "budget.allowance_taken_back"
    return t(lang, key, allowance=format_usd(allowance), amount=format_usd(abs(granted)))


def job_line(job: JobRecord, *, lang: Language = EN) -> str:
    """One line about a past job for /budget show."""
    request = GenerationRequest.model_validate_json(job.request_json)
    icon = STATE_ICONS.get(job.state, "⏳")
    prompt = request.prompt if len(request.prompt) <= 60 else request.prompt[:60] + "…"
    outcome = (
        t(lang, "budget.refunded")
        if job.settlement is Settlement.REFUND
        else format_usd(job.price_micro)
    )
    seconds = t(lang, "shape.seconds", seconds=request.duration)
    return (
        f"{icon} #{job.id} {texts.relative_time(job.created_at, lang=lang)} · "
        f"{request.resolution} {seconds} · {outcome} · {prompt}"
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
        # the allowance that applies to them: their roles' tiers count (only Discord knows them)
        mine = await storage.member_balance(interaction.guild_id, whose.id, roles=role_ids(whose))
        server = await storage.server_balance(interaction.guild_id)
        jobs = await storage.recent_jobs(interaction.guild_id, whose.id, limit=5)
        lang = language_of(interaction.locale)
        whom = "own" if whose.id == interaction.user.id else "other"
        spent, held = format_usd(mine.spent), format_usd(mine.held)
        lines = [
            t(lang, f"budget.title.{whom}", member=whose.mention),
            allowance_text(mine.allowance, mine.granted, lang=lang),
            texts.allowance_reason(mine, own=whose.id == interaction.user.id, lang=lang),
            t(lang, "budget.spent_held", spent=spent, held=held)
            if mine.held
            else t(lang, "budget.spent", spent=spent),
            t(
                lang,
                "budget.left",
                left=format_usd(max(mine.available, 0)),
                resets=texts.relative_time(mine.resets_at, lang=lang),
            ),
            t(
                lang,
                "budget.server_left",
                left=format_usd(max(server.available, 0)),
                total=format_usd(server.allowance + server.granted),
            ),
        ]
        if jobs:
            last = t(lang, f"budget.last.{whom}", member=whose.mention)
            lines += ["", last, *(job_line(job, lang=lang) for job in jobs)]
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
        lang = language_of(interaction.locale)
        await interaction.response.send_message(
            t(lang, "budget.set", member=member.mention, amount=format_usd(micro)),
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
        done = t(language_of(interaction.locale), "budget.server_set", amount=format_usd(micro))
        await interaction.response.send_message(done, ephemeral=True)

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
        balance = await storage.member_balance(
            interaction.guild_id, member.id, roles=role_ids(member)
        )
        done = t(
            language_of(interaction.locale),
            "budget.took_back" if micro < 0 else "budget.granted_to",
            amount=format_usd(abs(micro)),
            member=member.mention,
            left=format_usd(max(balance.available, 0)),
        )
        await interaction.response.send_message(
            done,
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    # --- role tiers: members holding a role get its allowance (the highest of their roles') ---
    roles = app_commands.Group(
        name="roles", description="Allowances per role (admins)", parent=budget
    )

    @roles.command(name="set", description="Members with this role get this allowance (admins)")
    @app_commands.describe(role="Which role", amount="Dollars per period, e.g. 10")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def set_role(
        self, interaction: discord.Interaction, role: discord.Role, amount: str
    ) -> None:
        """Set a role's tier; recorded (append-only) with who did it."""
        assert interaction.guild_id is not None
        if role.is_default():
            raise LocalizedError("tiers.everyone")
        micro = parse_amount(amount)
        await self.bot.services.storage.set_role_allowance(
            interaction.guild_id, role.id, micro, interaction.user.id
        )
        await interaction.response.send_message(
            texts.role_tier_set(role.id, micro, lang=language_of(interaction.locale)),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @roles.command(name="clear", description="Remove a role's allowance (admins)")
    @app_commands.describe(role="Which role")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def clear_role(self, interaction: discord.Interaction, role: discord.Role) -> None:
        """Clear a role's tier (an append-only row with who did it); a role without one is
        left alone, writing nothing."""
        assert interaction.guild_id is not None
        storage = self.bot.services.storage
        tiers = await storage.role_tiers(interaction.guild_id)
        had_tier = any(tier.role_id == role.id for tier in tiers)
        if had_tier:
            await storage.set_role_allowance(
                interaction.guild_id, role.id, None, interaction.user.id
            )
        await interaction.response.send_message(
            texts.role_tier_cleared(role.id, had_tier, lang=language_of(interaction.locale)),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @roles.command(name="list", description="Every role's allowance (admins)")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def list_roles(self, interaction: discord.Interaction) -> None:
        """The server's role tiers, largest first, with who set each and when."""
        assert interaction.guild_id is not None
        tiers = await self.bot.services.storage.role_tiers(interaction.guild_id)
        await interaction.response.send_message(
            texts.role_tiers_list(
                tiers,
                self.bot.settings.budget_policy.member_allowance,
                lang=language_of(interaction.locale),
            ),
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
