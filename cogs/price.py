"""/price: what a video would cost and what would be left after it, without making one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.domain.pricing import MAX_DURATION_S, MIN_DURATION_S, Resolution, price_micro
from bot.i18n import language_of
from cogs import texts
from cogs.pricing_options import (
    DEFAULT_DURATION_S,
    DEFAULT_ENABLE_AUDIO,
    DEFAULT_RESOLUTION,
    DESCRIPTIONS,
)
from cogs.roles import role_ids

if TYPE_CHECKING:
    from bot.app import WanBot


class PriceCog(commands.Cog, name="Price"):
    """A private quote with /video's pricing options; nothing is reserved or written."""

    def __init__(self, bot: WanBot) -> None:
        self.bot = bot

    @app_commands.command(name="price", description="What a video would cost, and what you'd keep")
    @app_commands.guild_only()
    @app_commands.describe(
        **DESCRIPTIONS,
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
