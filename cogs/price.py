"""/price: what a video would cost and what would be left after it, without making one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.domain.pricing import MAX_DURATION_S, MIN_DURATION_S, Resolution, price_micro
from bot.domain.request import GenerationRequest
from bot.i18n import language_of
from cogs import texts
from cogs.roles import role_ids

if TYPE_CHECKING:
    from bot.app import WanBot

# /video's defaults are the request model's: taken from it, so the quote can't drift from them
_DEFAULTS = GenerationRequest.model_fields
DEFAULT_RESOLUTION: Resolution = _DEFAULTS["resolution"].default
DEFAULT_DURATION_S: int = _DEFAULTS["duration"].default
DEFAULT_ENABLE_AUDIO: bool = _DEFAULTS["enable_audio"].default


class PriceCog(commands.Cog, name="Price"):
    """A private quote with /video's pricing options; nothing is reserved or written."""

    def __init__(self, bot: WanBot) -> None:
        self.bot = bot

    @app_commands.command(name="price", description="What a video would cost, and what you'd keep")
    @app_commands.guild_only()
    @app_commands.describe(
        resolution="720p, or 1080p at 1.5× the price",
        duration="Length in seconds, 2–15 (default 5)",
        enable_audio="Generate sound (doubles the price; default on)",
        custom_audio="You would attach your own soundtrack (doubles the price, like sound)",
    )
    async def price(
        self,
        interaction: discord.Interaction,
        resolution: Resolution = DEFAULT_RESOLUTION,
        duration: app_commands.Range[int, MIN_DURATION_S, MAX_DURATION_S] = DEFAULT_DURATION_S,
        enable_audio: bool = DEFAULT_ENABLE_AUDIO,
        custom_audio: bool = False,
    ) -> None:
        """The exact price and both balances after it, answered at once and privately."""
        assert interaction.guild_id is not None
        # what GenerationRequest.price_micro charges: sound is generated or a custom track
        price = price_micro(duration, resolution, has_audio=enable_audio or custom_audio)
        storage = self.bot.services.storage
        member = await storage.member_balance(
            interaction.guild_id, interaction.user.id, roles=role_ids(interaction.user)
        )
        server = await storage.server_balance(interaction.guild_id)
        lang = language_of(interaction.locale)
        sound = texts.sound_label(custom_audio, enable_audio, lang=lang)
        await interaction.response.send_message(
            texts.price_text(resolution, duration, sound, price, member, server, lang=lang),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )


async def setup(bot: WanBot) -> None:
    """Extension entry point."""
    await bot.add_cog(PriceCog(bot))
