"""DiscordDelivery: shows a job's progress and outcome in Discord.

While the interaction token is fresh it edits the member's private status message and sends
follow-ups; after that (tokens live 15 minutes, ../shared/discord-notes.md) or after a restart it
falls back to channel messages sent with the bot token, mentioning the member.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import discord

from bot.domain.outcomes import JobFailure
from bot.domain.pricing import format_usd
from bot.domain.request import GenerationRequest
from bot.runner import Progress, Stage, Video
from cogs import texts
from storage.base import JobRecord

if TYPE_CHECKING:
    from bot.app import WanBot

log = logging.getLogger(__name__)

TOKEN_SAFE_S = 14 * 60.0  # interaction tokens die after 15 minutes; leave a minute of margin
EDIT_INTERVAL_S = 5.0  # at most one progress edit per job this often (Discord rate limits)
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
DM_UPLOAD_LIMIT = DEFAULT_UPLOAD_LIMIT
NSFW_POLICY_KEY = "nsfw_policy"  # "spoiler" (default) or "withhold"
LOG_CHANNEL_KEY = "log_channel_id"
TOKEN_ERRORS = (50027, 10015, 10062)  # invalid webhook token, unknown webhook, unknown interaction


@dataclass(frozen=True)
class Outgoing:
    """A message to send: text, optionally the video and the result buttons."""

    text: str
    video: bytes | None = None
    filename: str = ""
    spoiler: bool = False
    view: discord.ui.View | None = None
    link: str | None = None  # where the video can be fetched, if it can't be attached

    def kwargs(self, member_id: int) -> dict[str, Any]:
        """Arguments for `send`, mentioning only the member (a new File each time)."""
        extra: dict[str, Any] = {
            "content": self.text,
            "allowed_mentions": discord.AllowedMentions(
                everyone=False, roles=False, users=[discord.Object(member_id)]
            ),
        }
        if self.view is not None:
            extra["view"] = self.view
        if self.video is not None:
            extra["file"] = discord.File(
                io.BytesIO(self.video), self.filename, spoiler=self.spoiler
            )
        return extra

    def direct(self, channel_id: int) -> Outgoing:
        """The same for a direct message: no server buttons, and a link for a video over the
        10 MiB that a DM accepts."""
        text = f"(I couldn't post in <#{channel_id}>, so here it is directly.)\n{self.text}"
        video = self.video
        if video is not None and len(video) > DM_UPLOAD_LIMIT:
            video = None
            text += f"\nThe video is too large for a direct message: {self.link}"
        return replace(self, text=text, video=video, view=None)


class DiscordDelivery:
    """Implements bot.runner.Delivery for one job."""

    def __init__(
        self,
        bot: WanBot,
        interaction: discord.Interaction | None = None,
        *,
        result_view: Callable[[int], discord.ui.View],
    ) -> None:
        self.bot = bot
        self.interaction = interaction
        self._result_view = result_view
        self._last_edit = float("-inf")
        self._last_stage: Stage | None = None
        self._opened = asyncio.Event()  # the first status is shown before any report
        if interaction is None:
            self._opened.set()

    async def open(self, job: JobRecord, text: str) -> None:
        """Show the first status; reports that arrive meanwhile wait for it."""
        try:
            await self._edit_status(job, text)
        finally:
            self._opened.set()

    # --- bot.runner.Delivery --------------------------------------------------------------------
    async def progress(self, job: JobRecord, progress: Progress) -> None:
        await self._opened.wait()
        now = time.monotonic()
        if progress.stage == self._last_stage and now - self._last_edit < EDIT_INTERVAL_S:
            return
        self._last_stage, self._last_edit = progress.stage, now
        balance = await self.bot.services.storage.member_balance(job.guild_id, job.member_id)
        request = GenerationRequest.model_validate_json(job.request_json)
        text = texts.status_text(
            request, job.price_micro, balance, progress.stage, progress.elapsed_s
        )
        await self._edit_status(job, text)

    async def completed(self, job: JobRecord, video: Video) -> int | None:
        await self._opened.wait()
        request = GenerationRequest.model_validate_json(job.request_json)
        hidden = video.nsfw and not self._channel_is_nsfw(job)
        policy = await self.bot.services.storage.get_guild_setting(job.guild_id, NSFW_POLICY_KEY)
        withhold = hidden and policy == "withhold"
        note, attach = self._video_note(job, video, withhold)
        if hidden and not withhold:
            note = "⚠️ WaveSpeed flagged this video as NSFW, so it is behind a spoiler.\n" + note
        outgoing = Outgoing(
            texts.result_text(job.member_id, request, job.price_micro, video.elapsed_s, note),
            video=video.data if attach else None,
            filename=f"wanbot-{job.id}.mp4",
            spoiler=hidden,
            view=self._result_view(job.id),
            link=None if withhold else video.url,
        )
        message = await self._post(job, outgoing)
        if withhold and video.data is not None:
            await self._send_privately(video.data, job.id)
        await self._edit_status(job, f"✅ Done — {format_usd(job.price_micro)} charged.")
        return message.id

    async def failed(self, job: JobRecord, failure: JobFailure, refunded: bool) -> None:
        await self._opened.wait()
        text = texts.failure_text(job.member_id, failure, job.price_micro, refunded)
        if not await self._edit_status(job, text):
            await self._post(job, Outgoing(text))
        if failure.tells_admins:
            await self._tell_admins(job, failure)

    # --- helpers -------------------------------------------------------------------------------
    def _token_fresh(self) -> bool:
        if self.interaction is None:
            return False
        age = (discord.utils.utcnow() - self.interaction.created_at).total_seconds()
        return age < TOKEN_SAFE_S

    def _drop_token(self, error: discord.HTTPException) -> bool:
        """Forget an interaction whose token Discord no longer accepts; True if that was it."""
        if error.code in TOKEN_ERRORS or error.status == 401:
            log.info("interaction token no longer valid; using channel messages")
            self.interaction = None
            return True
        return False

    def _channel_is_nsfw(self, job: JobRecord) -> bool:
        channel = self.bot.get_channel(job.channel_id)
        is_nsfw = getattr(channel, "is_nsfw", None)
        return bool(is_nsfw and is_nsfw())

    def _upload_limit(self, job: JobRecord) -> int:
        if self._token_fresh():
            assert self.interaction is not None
            return self.interaction.filesize_limit
        guild = self.bot.get_guild(job.guild_id)
        return guild.filesize_limit if guild else DEFAULT_UPLOAD_LIMIT

    def _video_note(self, job: JobRecord, video: Video, withhold: bool) -> tuple[str, bool]:
        """A note for the result message, and whether to attach the file."""
        if withhold:
            return (
                "🔞 WaveSpeed flagged this video as NSFW and this channel is not age-restricted, "
                "so it is not posted here.",
                False,
            )
        if video.data is None:
            return f"The download failed; here is WaveSpeed's link (it expires): {video.url}", False
        limit = self._upload_limit(job)
        if len(video.data) > limit:
            return (
                f"The video is {len(video.data) / 2**20:.1f} MB, over this channel's "
                f"{limit / 2**20:.0f} MB upload limit. Download it from WaveSpeed soon "
                f"(the link expires): {video.url}",
                False,
            )
        return "", True

    async def _edit_status(self, job: JobRecord, text: str) -> bool:
        """Edit the private status message while the token lives; False when that can't be done."""
        if not self._token_fresh():
            return False
        assert self.interaction is not None
        try:
            await self.interaction.edit_original_response(content=text)
            return True
        except discord.HTTPException as error:
            if not self._drop_token(error):
                log.warning("job %s: status edit failed: %s", job.id, error)
            return False

    async def _post(self, job: JobRecord, outgoing: Outgoing) -> discord.Message:
        """Send a new message mentioning the member: a follow-up while the token lives, else a
        channel message, else (the bot may not post there) a direct message."""
        if self._token_fresh():
            assert self.interaction is not None
            try:
                return await self.interaction.followup.send(
                    wait=True, **outgoing.kwargs(job.member_id)
                )
            except discord.HTTPException as error:
                if not self._drop_token(error):
                    raise
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        try:
            return await channel.send(**outgoing.kwargs(job.member_id))
        except (discord.Forbidden, discord.NotFound) as error:
            log.warning(
                "job %s: can't post in its channel (%s); messaging the member", job.id, error
            )
        direct = await self.bot.create_dm(discord.Object(id=job.member_id))
        return await direct.send(**outgoing.direct(job.channel_id).kwargs(job.member_id))

    async def _send_privately(self, data: bytes, job_id: int) -> None:
        if not self._token_fresh():
            return
        assert self.interaction is not None
        file = discord.File(io.BytesIO(data), f"wanbot-{job_id}.mp4", spoiler=True)
        try:
            await self.interaction.followup.send(
                "Here is your flagged video, visible only to you.", file=file, ephemeral=True
            )
        except discord.HTTPException as error:
            log.info("job %s: private copy not sent: %s", job_id, error)

    async def _tell_admins(self, job: JobRecord, failure: JobFailure) -> None:
        storage = self.bot.services.storage
        channel_id = await storage.get_guild_setting(job.guild_id, LOG_CHANNEL_KEY)
        if channel_id is None:
            log.error("guild %s: %s (no log channel configured)", job.guild_id, failure.message)
            return
        channel = self.bot.get_partial_messageable(int(channel_id), guild_id=job.guild_id)
        try:
            await channel.send(texts.admin_notice(failure, job.id))
        except discord.HTTPException as error:
            log.error("guild %s: could not reach the log channel: %s", job.guild_id, error)
