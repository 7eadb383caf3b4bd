"""The Cancel button on the private status of a job waiting in the local queue.

Cancelling moves the job from `queued` to `failed` (kind `cancelled`), which refunds its whole
price in the same transaction: nothing was sent to WaveSpeed, so nothing was billed. The
process following the job notices that it left the queue and tells the member, like any other
ending. A job whose turn came first is past cancelling: the lifecycle refuses the move.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord

from bot.domain.lifecycle import FailureKind, IllegalTransition, JobState
from bot.domain.outcomes import failure
from bot.domain.pricing import format_usd
from bot.i18n import EN, Language, language_of, t

if TYPE_CHECKING:
    from bot.app import WanBot


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"wanbot:cancel:(?P<job>\d+)",
):
    """Cancel a queued job; its custom_id names the job, so it survives restarts."""

    def __init__(self, job_id: int, lang: Language = EN) -> None:
        super().__init__(
            discord.ui.Button(
                label=t(lang, "button.cancel"),
                emoji="✖️",
                style=discord.ButtonStyle.secondary,
                custom_id=f"wanbot:cancel:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button[Any], match: re.Match[str]
    ) -> CancelButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        bot: WanBot = interaction.client  # type: ignore[assignment]
        storage = bot.services.storage
        job = await storage.get_job(self.job_id)
        lang = language_of(interaction.locale)
        if job is None or job.guild_id != interaction.guild_id:
            await interaction.response.send_message(t(lang, "video.unknown"), ephemeral=True)
            return
        if interaction.user.id != job.member_id:
            await interaction.response.send_message(t(lang, "cancel.not_yours"), ephemeral=True)
            return
        if job.state is not JobState.QUEUED:  # only the queue's jobs: nothing is in flight
            await interaction.response.send_message(t(lang, "cancel.too_late"), ephemeral=True)
            return
        cancelled = failure(FailureKind.CANCELLED)
        try:
            await storage.advance(
                job.id,
                JobState.FAILED,
                failure_kind=cancelled.kind.value,
                error_message=cancelled.message,
            )
        except IllegalTransition:  # its turn came meanwhile
            await interaction.response.send_message(t(lang, "cancel.too_late"), ephemeral=True)
            return
        done = t(lang, "cancel.done", price=format_usd(job.price_micro))
        await interaction.response.send_message(done, ephemeral=True)


def waiting_view(job_id: int, lang: Language = EN) -> discord.ui.View:
    """The buttons of a status while the job waits in the local queue, labelled in `lang`."""
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id, lang))
    return view
