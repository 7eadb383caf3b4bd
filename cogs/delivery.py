"""DiscordDelivery: shows a job's progress and outcome in Discord.

While the interaction token is fresh it edits the member's private status message and posts the
video as a follow-up. The token is kept with the job (storage), so whichever process follows the
job — the one that took the command, another that took the job over, or either after a restart —
answers through the same interaction; REST needs no shard. Tokens live 15 minutes (Discord's
interaction docs), so every post falls back: follow-up → channel message → direct message; a
failure notice falls back further, to the server's log channel. A token Discord refuses is
forgotten, in memory and in the database. Channel and direct messages carry a nonce that Discord
enforces, so a post repeated after a restart is answered with the first one, and a restarted job
first looks for its post in the channel before posting again.

Every message states its allowed mentions: at most the member who asked is pinged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import discord

from bot.domain.job import InteractionToken, JobRecord, Stage
from bot.domain.lifecycle import FailureKind, Settlement
from bot.domain.outcomes import JobFailure
from bot.domain.pricing import format_usd
from bot.domain.request import GenerationRequest
from bot.domain.server_settings import NSFW_POLICY, NsfwPolicy
from bot.i18n import EN, Language, language_of, server_language, t
from bot.runner import Posted, Progress, Undeliverable, Video
from cogs import texts
from cogs.alerts import check_spend, tell_admins
from cogs.cancel import waiting_view
from cogs.roles import role_ids
from storage.server_settings import load_setting

if TYPE_CHECKING:
    from bot.app import WanBot

log = logging.getLogger(__name__)

TOKEN_MARGIN = timedelta(minutes=1)  # stop using a token this long before it dies
EDIT_INTERVAL_S = 5.0  # at most one progress edit per job this often (Discord rate limits)
GATEWAY_WAIT_S = 60.0  # how long a resumed job's delivery waits for the gateway at start-up
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
DM_UPLOAD_LIMIT = DEFAULT_UPLOAD_LIMIT
TOKEN_ERRORS = (50027, 10015, 10062)  # invalid webhook token, unknown webhook, unknown interaction
ORIGINAL = "@original"  # the message id of an interaction's response, in its webhook's routes
HISTORY_LOOKBACK = 100  # messages read when looking for a post an earlier run may have made
# What can go wrong sending to Discord: its errors, and the connection itself.
SEND_ERRORS = (discord.HTTPException, aiohttp.ClientError, TimeoutError)
NO_MENTIONS = discord.AllowedMentions.none()
T = TypeVar("T")
# The buttons under a finished video, from its job id and request (what applies to it), in a
# language.
ResultView = Callable[[int, GenerationRequest, Language], discord.ui.View]


def member_only(member_id: int) -> discord.AllowedMentions:
    """Ping the member who asked, and nobody else."""
    return discord.AllowedMentions(
        everyone=False, roles=False, replied_user=False, users=[discord.Object(member_id)]
    )


def post_nonce(job_id: int) -> str:
    """The nonce of a job's post: the same on every attempt, so Discord answers a repeat with
    the message it already made (enforced for a few minutes; at most 25 characters)."""
    return f"wanbot{job_id}"


@dataclass(frozen=True)
class Outgoing:
    """A message to send: text, optionally the video and the result buttons."""

    text: str
    video: Path | None = None  # the file to attach; None: no video, or only its link
    size: int = 0  # the video's bytes (for a video only linked, as much as is known)
    filename: str = ""
    spoiler: bool = False
    view: discord.ui.View | None = None
    link: str | None = None  # where the video can be fetched, if it can't be attached
    lang: Language = EN  # the language of `text`, for what within() and direct() add to it

    def kwargs(self, member_id: int) -> dict[str, Any]:
        """Arguments for `send`, mentioning only the member (a new File each time: discord.py
        streams it from disk while uploading, and closes it once sent)."""
        extra: dict[str, Any] = {"content": self.text, "allowed_mentions": member_only(member_id)}
        if self.view is not None:
            extra["view"] = self.view
        if self.video is not None:
            extra["file"] = discord.File(self.video, self.filename, spoiler=self.spoiler)
        return extra

    def within(self, limit: int) -> Outgoing:
        """The same, with the link instead of a video over `limit` bytes or not downloaded."""
        if self.link is None or (self.video is not None and self.size <= limit):
            return self
        mb = limit / 2**20
        if self.video is not None:
            what = t(self.lang, "result.too_big", size=self.size / 2**20, limit=mb)
        elif self.size > limit:  # not downloaded: its size may be only a lower bound
            what = t(self.lang, "result.over_limit", limit=mb)
        else:
            what = t(self.lang, "result.not_attached")
        note = t(self.lang, "result.link", why=what, link=self.link)
        return replace(self, text=f"{self.text}\n{note}", video=None)

    def direct(self, channel_id: int) -> Outgoing:
        """The same for a direct message: no server buttons."""
        text = f"{t(self.lang, 'result.direct', channel_id=channel_id)}\n{self.text}"
        return replace(self, text=text, view=None)


@dataclass(frozen=True)
class ServerFacts:
    """What a delivery needs to know of the job's server and channel, fetched over REST when
    this process's cache lacks them (its shards do not include the server)."""

    language: Language
    upload_limit: int
    channel_nsfw: bool


class InteractionLink:
    """The member's interaction, as a delivery uses it: its webhook (the interaction's token) to
    edit the private status and send follow-ups, until the token expires. Made from the
    interaction in hand, or from the token stored with the job — the same requests either way."""

    def __init__(
        self,
        webhook: discord.Webhook,
        expires_at: datetime,
        upload_limit: int,
        *,
        from_token: bool = False,
    ) -> None:
        self._webhook = webhook
        self.expires_at = expires_at
        self.upload_limit = upload_limit
        self.from_token = from_token  # made from a stored token, not the interaction in hand

    @classmethod
    def of_interaction(cls, interaction: discord.Interaction) -> InteractionLink:
        return cls(interaction.followup, interaction.expires_at, interaction.filesize_limit)

    @classmethod
    def of_token(cls, bot: WanBot, token: InteractionToken, upload_limit: int) -> InteractionLink:
        # What discord.py's Interaction.followup builds: an application webhook (which may send
        # ephemeral messages) bound to the bot's state (so result buttons are dispatched).
        # Webhook.partial would make an incoming webhook, which can't.
        webhook = discord.Webhook.from_state(
            {"id": token.application_id, "type": 3, "token": token.token},
            state=bot._connection,
        )
        return cls(webhook, token.expires_at, upload_limit, from_token=True)

    def usable(self) -> bool:
        """Whether the token still has time to be used (by the bot's clock)."""
        return discord.utils.utcnow() < self.expires_at - TOKEN_MARGIN

    async def edit_status(self, text: str, view: discord.ui.View | None = None) -> None:
        """Replace the private status message (the interaction's response) and its buttons
        (none unless `view`)."""
        await self._webhook.edit_message(
            ORIGINAL,  # type: ignore[arg-type]  # the route takes this in place of an id
            content=text,
            allowed_mentions=NO_MENTIONS,
            view=view,
        )

    async def follow_up(self, message: dict[str, Any], *, ephemeral: bool) -> discord.Message:
        """Send a follow-up message (`message`: `send`'s arguments, mentions included)."""
        return await self._webhook.send(wait=True, ephemeral=ephemeral, **message)


class DiscordDelivery:
    """Implements bot.runner.Delivery for one job."""

    def __init__(
        self,
        bot: WanBot,
        interaction: discord.Interaction | None = None,
        *,
        result_view: ResultView,
    ) -> None:
        self.bot = bot
        # how to reach the member's interaction; None without one, or once it is gone
        self._link = None if interaction is None else InteractionLink.of_interaction(interaction)
        # the member's roles, whose tiers count for the balance the status shows (a job followed
        # without its interaction has them from the database: see for_job)
        self._roles: tuple[int, ...] = () if interaction is None else role_ids(interaction.user)
        # Private messages are in the member's language, public ones in the server's; a job
        # followed without its interaction reads the server's from Guild.preferred_locale.
        self._member_lang = None if interaction is None else language_of(interaction.locale)
        self._server_lang = (
            None
            if interaction is None or interaction.guild_locale is None
            else language_of(interaction.guild_locale)
        )
        self._result_view = result_view
        self._fetched: ServerFacts | None = None  # see _learn_server
        self._last_edit = float("-inf")
        self._last_shown: tuple[Stage, int | None] | None = None
        self._withheld = False

    @classmethod
    def for_job(cls, bot: WanBot, job: JobRecord, *, result_view: ResultView) -> DiscordDelivery:
        """A delivery for a job followed without its interaction in hand (resumed after a
        restart, or taken over from another process): it answers through the interaction token
        stored with the job while that lasts, in the member's language, with their role tiers."""
        delivery = cls(bot, result_view=result_view)
        delivery._roles = job.member_roles
        if job.member_locale is not None:
            delivery._member_lang = language_of(job.member_locale)
        if job.interaction is not None:
            limit = delivery._upload_limit(job)
            delivery._link = InteractionLink.of_token(bot, job.interaction, limit)
        return delivery

    async def open(self, job: JobRecord, text: str) -> None:
        """Show the first status (before the runner starts reporting)."""
        await self._edit_status(job, text)

    # --- bot.runner.Delivery ------------------------------------------------------------------
    async def attach_limit(self, job: JobRecord) -> int:
        """The upload limit of the route post_video tries first: the interaction's follow-up
        while its token lasts (on a first attempt), else the channel's server, or the direct
        message for a withheld video. A later route whose limit is lower links the video."""
        await self._gateway(job)
        if self._link is not None and self._link.usable() and job.post_attempts == 0:
            return self._link.upload_limit
        if await self._withholds(job, job.has_nsfw):
            return DM_UPLOAD_LIMIT
        return self._upload_limit(job)

    async def progress(self, job: JobRecord, progress: Progress) -> None:
        now = time.monotonic()
        # a new stage or place in the queue shows at once; the same one at most every few seconds
        shown = (progress.stage, progress.ahead)
        if shown == self._last_shown and now - self._last_edit < EDIT_INTERVAL_S:
            return
        self._last_shown, self._last_edit = shown, now
        balance = await self.bot.services.storage.member_balance(
            job.guild_id, job.member_id, roles=self._roles
        )
        request = GenerationRequest.model_validate_json(job.request_json)
        text = texts.status_text(
            request,
            job.price_micro,
            balance,
            progress.stage,
            progress.elapsed_s,
            ahead=progress.ahead,
            eta_s=progress.eta_s,
            lang=self._private_lang(job),
        )
        waiting = progress.stage is Stage.WAITING
        view = waiting_view(job.id, self._private_lang(job)) if waiting else None
        await self._edit_status(job, text, view)

    async def post_video(self, job: JobRecord, video: Video) -> Posted:
        await self._gateway(job)
        request = GenerationRequest.model_validate_json(job.request_json)
        hidden = video.nsfw and not self._channel_is_nsfw(job)
        self._withheld = await self._withholds(job, video.nsfw)
        # a withheld video goes to the member alone, in their language; else the server's
        lang = self._private_lang(job) if self._withheld else self._public_lang(job)
        note = t(lang, "result.nsfw_spoiler") if hidden else ""
        outgoing = Outgoing(  # a video not downloaded gets its link from within()
            texts.result_text(
                job.member_id, request, job.price_micro, video.elapsed_s, note, lang=lang
            ),
            video=video.path,
            size=video.size,
            filename=f"wanbot-{job.id}.mp4",
            spoiler=hidden,
            view=self._result_view(job.id, request, lang),
            link=video.url,
            lang=lang,
        )
        if self._withheld:  # only the member may see it: privately, or in a direct message
            private = replace(outgoing, view=None)
            followup = self._followup(job, private, ephemeral=True)
            others = [self._direct(job, private)]
        else:
            followup = self._followup(job, outgoing)
            others = [self._channel(job, outgoing), self._direct(job, outgoing)]
        # A repeated attempt (an earlier one may have landed unseen: find_post found nothing,
        # perhaps unable to read the channel) skips the follow-up: only channel and direct
        # messages carry the nonce that Discord answers a repeat with.
        routes = [followup, *others] if job.post_attempts <= 1 else others
        message = await self._first_that_works(job, routes)
        return Posted(message.channel.id, message.id)

    async def find_post(self, job: JobRecord) -> Posted | None:
        await self._gateway(job)
        for channel in (
            self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id),
            await self._dm_channel(job),
        ):
            if channel is None:
                continue
            message = await self._find_in(channel, job)
            if message is not None:
                log.info("job %s: found the post an earlier run made (%s)", job.id, message.id)
                return Posted(message.channel.id, message.id)
        return None

    async def delivered(self, job: JobRecord, video: Video) -> None:
        if self._withheld:
            notice = texts.withheld_notice(job.member_id, lang=self._public_lang(job))
            try:
                channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
                await channel.send(notice, allowed_mentions=member_only(job.member_id))
            except SEND_ERRORS as error:
                log.info("job %s: withheld notice not posted: %s", job.id, error)
        done = t(self._private_lang(job), "result.done", price=format_usd(job.price_micro))
        await self._edit_status(job, done)
        await check_spend(self.bot, job.guild_id)  # the charge is recorded; never raises

    async def failed(self, job: JobRecord, failure: JobFailure) -> None:
        if failure.kind is FailureKind.OUT_OF_CREDIT:  # refuse the next requests before reserving
            self.bot.services.balance.refresh_soon()
        await self._gateway(job)
        refunded = job.settlement is not Settlement.CHARGE
        private, public = self._private_lang(job), self._public_lang(job)
        text = texts.failure_text(job.member_id, failure, job.price_micro, refunded, lang=private)
        told = await self._edit_status(job, text)
        if not told:  # told in the channel: in the server's language
            text = texts.failure_text(
                job.member_id, failure, job.price_micro, refunded, lang=public
            )
            outgoing = Outgoing(text, lang=public)
            try:
                await self._first_that_works(
                    job, [self._channel(job, outgoing), self._direct(job, outgoing)]
                )
                told = True
            except Undeliverable:
                log.warning("job %s: the member could not be told of the failure", job.id)
        if failure.tells_admins or not told:
            await self._tell_admins(job, texts.admin_notice(failure, job, lang=public))

    async def undecided(self, job: JobRecord, candidate_ids: list[str]) -> None:
        await self._gateway(job)
        notice = texts.undecided_notice(job, candidate_ids, lang=self._public_lang(job))
        await self._tell_admins(job, notice)

    # --- routes: each sends one message, or raises ---------------------------------------------
    def _followup(self, job: JobRecord, outgoing: Outgoing, *, ephemeral: bool = False) -> Route:
        async def send() -> discord.Message:
            link = self._fresh_link()
            message = outgoing.within(link.upload_limit).kwargs(job.member_id)
            return await self._with_token(job, link.follow_up(message, ephemeral=ephemeral))

        return Route("private follow-up" if ephemeral else "follow-up", send)

    def _channel(self, job: JobRecord, outgoing: Outgoing) -> Route:
        async def send() -> discord.Message:
            channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
            message = outgoing.within(self._upload_limit(job)).kwargs(job.member_id)
            return await channel.send(nonce=post_nonce(job.id), **message)

        return Route("channel message", send)

    def _direct(self, job: JobRecord, outgoing: Outgoing) -> Route:
        async def send() -> discord.Message:
            direct = await self.bot.create_dm(discord.Object(id=job.member_id))
            message = outgoing.direct(job.channel_id).within(DM_UPLOAD_LIMIT).kwargs(job.member_id)
            return await direct.send(nonce=post_nonce(job.id), **message)

        return Route("direct message", send)

    async def _first_that_works(self, job: JobRecord, routes: list[Route]) -> discord.Message:
        """Send through the first route that works; Undeliverable if none does."""
        errors = []
        for route in routes:
            try:
                return await route.send()
            except _NoToken:
                continue
            except SEND_ERRORS as error:
                log.warning("job %s: %s failed: %s", job.id, route.name, error)
                errors.append(f"{route.name}: {error}")
        raise Undeliverable("; ".join(errors) or "no route")

    # --- helpers -------------------------------------------------------------------------------
    def _public_lang(self, job: JobRecord) -> Language:
        """The server's language, for what others read: the channel and the log channel."""
        if self._server_lang is not None:
            return self._server_lang
        if self._fetched is not None:
            return self._fetched.language
        return server_language(self.bot, job.guild_id)

    def _upload_limit(self, job: JobRecord) -> int:
        """The job's server's upload limit, as far as this process knows it."""
        guild = self.bot.get_guild(job.guild_id)
        if guild is not None:
            return guild.filesize_limit
        return self._fetched.upload_limit if self._fetched else DEFAULT_UPLOAD_LIMIT

    def _private_lang(self, job: JobRecord) -> Language:
        """The member's language, for their private status; the server's when not known."""
        return self._member_lang if self._member_lang is not None else self._public_lang(job)

    async def _gateway(self, job: JobRecord) -> None:
        """Wait (a while at most) for the gateway, then make sure the server is known: a job
        resumed at start-up polls WaveSpeed at once, but what it posts depends on the server's
        language, channels and limits, known only then (or fetched: see _learn_server)."""
        if not self.bot.is_ready():
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for may swallow a cancellation
            # (the bot closing) that arrives just as the wait ends
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(GATEWAY_WAIT_S):
                    await self.bot.wait_until_ready()
        await self._learn_server(job)
        if self._link is not None and self._link.from_token:
            self._link.upload_limit = self._upload_limit(job)  # the server is known now

    async def _learn_server(self, job: JobRecord) -> None:
        """A job taken over by a process whose shards do not include its server finds neither
        the server nor the channel in the cache: fetch them once over REST, rather than guess
        English, 10 MiB and a channel that is not age-restricted."""
        if self._fetched is not None or self.bot.get_guild(job.guild_id) is not None:
            return
        try:
            guild = await self.bot.fetch_guild(job.guild_id)
        except SEND_ERRORS as error:
            log.warning("job %s: its server could not be fetched: %s", job.id, error)
            return
        try:
            channel = await self.bot.fetch_channel(job.channel_id)
        except SEND_ERRORS as error:
            log.warning("job %s: its channel could not be fetched: %s", job.id, error)
            channel = None
        nsfw = getattr(channel, "is_nsfw", None)
        self._fetched = ServerFacts(
            language_of(guild.preferred_locale), guild.filesize_limit, bool(nsfw and nsfw())
        )

    def _fresh_link(self) -> InteractionLink:
        """The member's interaction while its token can be used, else _NoToken."""
        if self._link is None or not self._link.usable():
            raise _NoToken
        return self._link

    async def _with_token(self, job: JobRecord, request: Awaitable[T]) -> T:
        """Await a request made with the interaction token, forgetting a token Discord no
        longer accepts, here and in the job (so later steps, and any process that follows the
        job next, go straight to the bot's own routes)."""
        try:
            return await request
        except discord.HTTPException as error:
            if error.code in TOKEN_ERRORS or error.status == 401:
                log.info(
                    "job %s: interaction token no longer valid; using channel messages", job.id
                )
                self._link = None
                await self.bot.services.storage.forget_interaction(job.id)
            raise

    async def _withholds(self, job: JobRecord, nsfw: bool) -> bool:
        """Whether an NSFW-flagged video is sent only to the member (the server's setting)."""
        if not nsfw or self._channel_is_nsfw(job):
            return False
        policy = await load_setting(self.bot.services.storage, job.guild_id, NSFW_POLICY)
        return policy is NsfwPolicy.WITHHOLD

    def _channel_is_nsfw(self, job: JobRecord) -> bool:
        channel = self.bot.get_channel(job.channel_id)
        if channel is None and self._fetched is not None:
            return self._fetched.channel_nsfw
        is_nsfw = getattr(channel, "is_nsfw", None)
        return bool(is_nsfw and is_nsfw())

    async def _edit_status(
        self, job: JobRecord, text: str, view: discord.ui.View | None = None
    ) -> bool:
        """Edit the private status message while the token lives; False when that can't be done."""
        try:
            link = self._fresh_link()
            await self._with_token(job, link.edit_status(text, view))
            return True
        except _NoToken:
            return False
        except SEND_ERRORS as error:
            log.warning("job %s: status edit failed: %s", job.id, error)
            return False

    async def _dm_channel(self, job: JobRecord) -> discord.DMChannel | None:
        try:
            return await self.bot.create_dm(discord.Object(id=job.member_id))
        except SEND_ERRORS:
            return None

    async def _find_in(
        self, channel: discord.abc.Messageable, job: JobRecord
    ) -> discord.Message | None:
        """This job's post among the channel's messages since the job began, if readable."""
        since = discord.Object(id=discord.utils.time_snowflake(job.created_at))
        try:
            async for message in channel.history(limit=HISTORY_LOOKBACK, after=since):
                if self._is_post_of(message, job):
                    return message
        except SEND_ERRORS as error:
            log.info("job %s: could not read %s: %s", job.id, channel, error)
        return None

    def _is_post_of(self, message: discord.Message, job: JobRecord) -> bool:
        """A message of this bot that carries this job's buttons or video file."""
        if self.bot.user is None or message.author.id != self.bot.user.id:
            return False
        marker = f":{job.id}"
        for row in message.components:
            for child in getattr(row, "children", ()):
                custom_id = getattr(child, "custom_id", None) or ""
                if custom_id.startswith("wanbot:") and custom_id.endswith(marker):
                    return True
        return any(a.filename == f"wanbot-{job.id}.mp4" for a in message.attachments)

    async def _tell_admins(self, job: JobRecord, text: str) -> None:
        await tell_admins(self.bot, job.guild_id, text)


@dataclass(frozen=True)
class Route:
    """One way to send a message."""

    name: str
    send: Callable[[], Awaitable[discord.Message]]


class _NoToken(Exception):
    """The interaction token is gone or too old: skip the routes that need it."""
