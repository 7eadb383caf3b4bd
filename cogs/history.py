"""/history: a member's videos on this server, ten a page, with Previous/Next and Use again
buttons that keep working after a restart."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.domain.request import GenerationRequest
from bot.i18n import language_of, t
from cogs import texts
from cogs.video import VideoCog

if TYPE_CHECKING:
    from bot.app import WanBot

PAGE_SIZE = 10
USE_AGAIN_PER_ROW = 5  # Discord's most buttons in one action row; the page's ten take two rows
PAGING_ROW = 2  # Previous/Next, under the Use again rows


class HistoryPageButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"wanbot:history:(?P<member>\d+):(?P<offset>\d+)",
):
    """Previous or Next: its custom_id names whose history and which page, so any run of the bot
    can show that page."""

    def __init__(
        self, member_id: int, offset: int, label: str | None = None, *, disabled: bool = False
    ) -> None:
        # a button rebuilt from a click needs no label: only its custom_id and callback matter
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=f"wanbot:history:{member_id}:{offset}",
                disabled=disabled,
                row=PAGING_ROW,
            )
        )
        self.member_id = member_id
        self.offset = offset

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button[Any], match: re.Match[str]
    ) -> HistoryPageButton:
        return cls(int(match["member"]), int(match["offset"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        cog = interaction.client.get_cog(HistoryCog.__cog_name__)
        assert isinstance(cog, HistoryCog)
        await cog.turn_page(interaction, self.member_id, self.offset)


class UseAgainButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"wanbot:again:(?P<job>\d+)",
):
    """Use again: the job's request once more, seed included, for whoever clicks."""

    def __init__(self, job_id: int, row: int | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=f"#{job_id}",
                emoji="🔁",
                style=discord.ButtonStyle.primary,
                custom_id=f"wanbot:again:{job_id}",
                row=row,
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button[Any], match: re.Match[str]
    ) -> UseAgainButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        cog = interaction.client.get_cog(HistoryCog.__cog_name__)
        assert isinstance(cog, HistoryCog)
        await cog.use_again(interaction, self.job_id)


def may_see(interaction: discord.Interaction, member_id: int) -> bool:
    """A member sees their own history; someone else's needs Manage Server."""
    return member_id == interaction.user.id or interaction.permissions.manage_guild


class HistoryCog(commands.Cog, name="History"):
    """/history and its buttons."""

    def __init__(self, bot: WanBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        # the buttons of pages shown by earlier runs keep working
        self.bot.add_dynamic_items(HistoryPageButton, UseAgainButton)

    @app_commands.command(name="history", description="Your videos on this server, newest first")
    @app_commands.guild_only()
    @app_commands.describe(member="Admins: someone else's videos")
    async def history(
        self, interaction: discord.Interaction, member: discord.User | None = None
    ) -> None:
        """The first page, privately; someone else's history needs Manage Server. A User, not
        a Member, so that admins can still look at members who left."""
        whose = member or interaction.user
        if not may_see(interaction, whose.id):
            refusal = t(language_of(interaction.locale), "history.refusal")
            await interaction.response.send_message(refusal, ephemeral=True)
            return
        embed, view = await self.page(interaction, whose.id, 0)
        await interaction.response.send_message(
            embed=embed,
            view=view,
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    async def turn_page(
        self, interaction: discord.Interaction, member_id: int, offset: int
    ) -> None:
        """Previous/Next: the page at `offset`, in place of the one shown."""
        if not may_see(interaction, member_id):  # the permission may have been taken away since
            refusal = t(language_of(interaction.locale), "history.refusal")
            await interaction.response.send_message(refusal, ephemeral=True)
            return
        embed, view = await self.page(interaction, member_id, offset)
        await interaction.response.edit_message(
            embed=embed, view=view, allowed_mentions=discord.AllowedMentions.none()
        )

    async def page(
        self, interaction: discord.Interaction, member_id: int, offset: int
    ) -> tuple[discord.Embed, discord.ui.View]:
        """The page of `member_id`'s jobs in this server that starts at `offset` (the last page
        when there are fewer jobs now), and its buttons."""
        assert interaction.guild_id is not None
        storage = self.bot.services.storage
        total = await storage.history_count(interaction.guild_id, member_id)
        pages = max(1, -(-total // PAGE_SIZE))
        offset = min(offset - offset % PAGE_SIZE, (pages - 1) * PAGE_SIZE)
        jobs = await storage.history(
            interaction.guild_id, member_id, offset=offset, limit=PAGE_SIZE
        )
        own = member_id == interaction.user.id
        page = offset // PAGE_SIZE + 1
        lang = language_of(interaction.locale)
        description, footer = texts.history_page(
            member_id, own, jobs, page, pages, total, lang=lang
        )
        embed = discord.Embed(description=description)
        if footer:
            embed.set_footer(text=footer)
        view = discord.ui.View(timeout=None)  # dynamic items: discord.py keeps nothing per page
        for index, job in enumerate(jobs):
            view.add_item(UseAgainButton(job.id, row=index // USE_AGAIN_PER_ROW))
        if total > PAGE_SIZE:
            previous = max(offset - PAGE_SIZE, 0)
            back = t(lang, "button.previous")
            view.add_item(HistoryPageButton(member_id, previous, back, disabled=page == 1))
            following = offset + PAGE_SIZE
            forward = t(lang, "button.next")
            view.add_item(HistoryPageButton(member_id, following, forward, disabled=page == pages))
        return embed, view

    async def use_again(self, interaction: discord.Interaction, job_id: int) -> None:
        """Run a job of this server once more, as the clicking member: Re-roll's access check,
        pricing and budget check (VideoCog.launch), with the job's own seed."""
        job = await self.bot.services.storage.get_job(job_id)
        lang = language_of(interaction.locale)
        if job is None or job.guild_id != interaction.guild_id:
            await interaction.response.send_message(t(lang, "video.unknown"), ephemeral=True)
            return
        if not may_see(interaction, job.member_id):
            refusal = t(lang, "history.use_again_refusal")
            await interaction.response.send_message(refusal, ephemeral=True)
            return
        video = self.bot.get_cog(VideoCog.__cog_name__)
        assert isinstance(video, VideoCog)
        if not await video.allowed(interaction):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        await video.launch(interaction, GenerationRequest.model_validate_json(job.request_json))


async def setup(bot: WanBot) -> None:
    """Extension entry point."""
    await bot.add_cog(HistoryCog(bot))
