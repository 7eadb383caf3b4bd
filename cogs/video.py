"""/video and the buttons on its results (Re-roll, Same seed, Delete, and the variations:
1080p, With audio / Silent, Longer), restart-safe; prices over the server's confirm_above, and
every variation's, are confirmed first (cogs/confirm.py)."""

from __future__ import annotations

import asyncio
import random
import re
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.domain.access import check_access
from bot.domain.budget import CLI_GUILD_ID, BudgetError
from bot.domain.job import InteractionToken, JobOwner, JobRecord, Stage
from bot.domain.media import (
    MAX_AUDIO_BYTES,
    MAX_IMAGE_BYTES,
    InvalidMedia,
    MediaFile,
    check_audio,
    check_declared_size,
    check_image,
)
from bot.domain.pricing import MAX_DURATION_S, MIN_DURATION_S, Resolution
from bot.domain.request import (
    MAX_PROMPT_CHARS,
    MAX_SEED,
    RANDOM_SEED,
    GenerationRequest,
    InvalidRequest,
)
from bot.domain.server_settings import CONFIRM_ABOVE, needs_confirmation
from bot.domain.variations import NotApplicable, Variation, variations_of, varied
from bot.i18n import EN, Language, language_of, say, t
from cogs import texts
from cogs.alerts import refuse_without_credit
from cogs.cancel import CancelButton
from cogs.confirm import Confirmations, ConfirmButton
from cogs.delivery import NO_MENTIONS, DiscordDelivery
from cogs.pricing_options import (
    DEFAULT_DURATION_S,
    DEFAULT_ENABLE_AUDIO,
    DEFAULT_RESOLUTION,
    DESCRIPTIONS,
)
from cogs.roles import role_ids
from storage.server_settings import load_setting, load_video_access

if TYPE_CHECKING:
    from bot.app import WanBot


BUTTON_EMOJI = {"reroll": "🎲", "same": "🌱", "delete": "🗑️"}  # labels: button.<action>


def concrete_seed(seed: int) -> int:
    """A random seed made explicit, so that it can be shown and reused."""
    return random.randint(0, MAX_SEED) if seed == RANDOM_SEED else seed


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"wanbot:(?P<action>reroll|same|delete):(?P<job>\d+)",
):
    """A result button whose custom_id names the action and the job, so it survives restarts."""

    def __init__(self, action: str, job_id: int, lang: Language = EN) -> None:
        style = discord.ButtonStyle.danger if action == "delete" else discord.ButtonStyle.secondary
        super().__init__(
            discord.ui.Button(
                label=t(lang, f"button.{action}"),
                emoji=BUTTON_EMOJI[action],
                style=style,
                custom_id=f"wanbot:{action}:{job_id}",
            )
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button[Any], match: re.Match[str]
    ) -> JobButton:
        return cls(match["action"], int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        cog = interaction.client.get_cog(VideoCog.__cog_name__)
        assert isinstance(cog, VideoCog)
        await cog.on_button(interaction, self.action, self.job_id)


class VariationButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"wanbot:vary:(?P<variation>hd|audio|silent|longer):(?P<job>\d+)",
):
    """Re-run a result with one change (bot.domain.variations), after confirming its price; the
    custom_id names the variation and the job, so it survives restarts."""

    def __init__(self, variation: Variation, job_id: int, label: str | None = None) -> None:
        # a button rebuilt from a click needs no label: only its custom_id and callback matter
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=texts.VARIATION_EMOJI[variation],
                style=discord.ButtonStyle.primary,
                custom_id=f"wanbot:vary:{variation}:{job_id}",
                row=1,  # under Re-roll / Same seed / Delete
            )
        )
        self.variation = variation
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button[Any], match: re.Match[str]
    ) -> VariationButton:
        return cls(Variation(match["variation"]), int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        cog = interaction.client.get_cog(VideoCog.__cog_name__)
        assert isinstance(cog, VideoCog)
        await cog.on_variation(interaction, self.variation, self.job_id)


def result_view(
    job_id: int, request: GenerationRequest | None = None, lang: Language = EN
) -> discord.ui.View:
    """The buttons under a finished video, labelled in `lang` (the server's: everyone sees
    them): with its request, the variations that apply to it."""
    view = discord.ui.View(timeout=None)
    for action in BUTTON_EMOJI:
        view.add_item(JobButton(action, job_id, lang))
    for variation in variations_of(request) if request is not None else ():
        label = texts.variation_button(variation, request, lang=lang)
        view.add_item(VariationButton(variation, job_id, label))
    return view


class SameSeedModal(discord.ui.Modal):
    """Lets the member edit the prompt before re-running with the same seed."""

    def __init__(self, cog: VideoCog, request: GenerationRequest, lang: Language = EN) -> None:
        super().__init__(title=t(lang, "modal.same_seed.title"), timeout=900)
        self.cog = cog
        self.request = request
        self.prompt = discord.ui.TextInput(
            label=t(lang, "modal.same_seed.prompt"),
            style=discord.TextStyle.paragraph,
            default=request.prompt[:MAX_PROMPT_CHARS],
            max_length=MAX_PROMPT_CHARS,
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        if not await self.cog.allowed(interaction):  # the rules may have changed meanwhile
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            request = GenerationRequest.parse(
                **{**self.request.model_dump(), "prompt": self.prompt.value}
            )
        except InvalidRequest as error:
            text = say(language_of(interaction.locale), error)
            await interaction.edit_original_response(content=f"⚠️ {text}")
            return
        await self.cog.launch(interaction, request)


class VideoCog(commands.Cog, name="Video"):
    """The /video command and its result buttons."""

    def __init__(self, bot: WanBot) -> None:
        self.bot = bot
        self.confirmations = Confirmations()  # price prompts waiting for Confirm or Cancel

    async def cog_load(self) -> None:
        # buttons of earlier runs keep working (a price prompt's answer that it expired)
        self.bot.add_dynamic_items(JobButton, CancelButton, VariationButton, ConfirmButton)
        # Follow what a previous run left unfinished, and from then on the jobs of any process
        # that died (through the interaction token kept with each job while it lasts, then the
        # channel); the runner stops watching on close. At once, not after the gateway is ready
        # (seconds later): polling needs only WaveSpeed, and a delivery waits for the gateway
        # itself (DiscordDelivery).
        self.bot.services.runner.watch(
            self.delivery_for_job, include=lambda job: job.guild_id != CLI_GUILD_ID
        )

    def delivery(self, interaction: discord.Interaction | None = None) -> DiscordDelivery:
        """A Delivery that reports through `interaction` while it lasts, then the channel."""
        return DiscordDelivery(self.bot, interaction, result_view=result_view)

    def delivery_for_job(self, job: JobRecord) -> DiscordDelivery:
        """A Delivery for a job followed without its interaction in hand (resumed, or taken
        over): it reports through the interaction token stored with the job while it lasts."""
        return DiscordDelivery.for_job(self.bot, job, result_view=result_view)

    @app_commands.command(name="video", description="Turn a picture into a short video")
    @app_commands.guild_only()
    @app_commands.describe(
        image="The picture to animate (JPEG, PNG, BMP or WebP, up to 10 MB)",
        prompt="Describe the motion you want",
        negative_prompt="What to avoid in the video",
        **DESCRIPTIONS,
        shot_type="One continuous shot, or several with scene cuts",
        audio="Your own soundtrack to sync to (WAV or MP3, up to 15 MB)",
        prompt_expansion="Let the model expand your prompt",
        seed="Random seed for reproducibility (-1 = random)",
    )
    async def video(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
        negative_prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS] | None = None,
        resolution: Resolution = DEFAULT_RESOLUTION,
        duration: app_commands.Range[int, MIN_DURATION_S, MAX_DURATION_S] = DEFAULT_DURATION_S,
        shot_type: Literal["single", "multi"] = "single",
        audio: discord.Attachment | None = None,
        enable_audio: bool = DEFAULT_ENABLE_AUDIO,
        prompt_expansion: bool = False,
        seed: app_commands.Range[int, RANDOM_SEED, MAX_SEED] = RANDOM_SEED,
    ) -> None:
        """Validate, price, reserve and start a video; progress shows in a private message."""
        if not await self.allowed(interaction):
            return
        try:  # cheap checks first: nothing downloaded, nothing spent
            check_declared_size("image", image.size, MAX_IMAGE_BYTES)
            if audio is not None:
                check_declared_size("audio file", audio.size, MAX_AUDIO_BYTES)
            request = GenerationRequest.parse(
                image=image.url,
                prompt=prompt,
                audio=audio.url if audio else None,
                negative_prompt=negative_prompt,
                resolution=resolution,
                duration=duration,
                shot_type=shot_type,
                enable_prompt_expansion=prompt_expansion,
                enable_audio=enable_audio,
                seed=concrete_seed(seed),
            )
        except (InvalidMedia, InvalidRequest) as error:
            lang = language_of(interaction.locale)
            await interaction.response.send_message(f"⚠️ {say(lang, error)}", ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            limits = self.bot.settings.media_limits
            image_data = await image.read()
            # decoding is CPU work: keep it off the event loop
            checked = await asyncio.to_thread(check_image, image.filename, image_data, limits)
            uploads = {"image": checked}
            if audio is not None:
                audio_data = await audio.read()
                uploads["audio"] = await asyncio.to_thread(
                    check_audio, audio.filename, audio_data, limits
                )
        except InvalidMedia as error:
            text = say(language_of(interaction.locale), error)
            await interaction.edit_original_response(content=f"⚠️ {text}")
            return
        except discord.HTTPException:
            lang = language_of(interaction.locale)
            await interaction.edit_original_response(content=t(lang, "video.download_failed"))
            return
        await self.launch(interaction, request, uploads)

    async def allowed(self, interaction: discord.Interaction) -> bool:
        """Whether the server's rules let this member make a video here; if not, says so privately.

        Runs before anything is downloaded, reserved or submitted, and before the interaction is
        acknowledged.
        """
        assert interaction.guild_id is not None and interaction.channel_id is not None
        access = await load_video_access(self.bot.services.storage, interaction.guild_id)
        channel = interaction.channel
        member = interaction.user
        roles = [role.id for role in member.roles] if isinstance(member, discord.Member) else []
        denial = check_access(
            access,
            channel_id=interaction.channel_id,
            parent_id=channel.parent_id if isinstance(channel, discord.Thread) else None,
            role_ids=[interaction.guild_id, *roles],  # @everyone's id is the server's
        )
        if denial is None:
            return True
        await interaction.response.send_message(
            texts.access_refusal(denial, lang=language_of(interaction.locale)),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        return False

    async def cog_unload(self) -> None:
        self.confirmations.close()

    async def launch(
        self,
        interaction: discord.Interaction,
        request: GenerationRequest,
        uploads: dict[str, MediaFile] | None = None,
        *,
        confirm: bool = False,
        title: str | None = None,
    ) -> None:
        """Reserve and start a job for an interaction that was deferred ephemerally — first
        asking the member to confirm the price when it is over the server's confirm_above, or
        always with `confirm`. `title` names what is made in that prompt ("The 1080p version").
        """
        assert interaction.guild_id is not None
        storage = self.bot.services.storage
        price = request.price_micro
        if not confirm:
            threshold = await load_setting(storage, interaction.guild_id, CONFIRM_ABOVE)
            confirm = needs_confirmation(price, threshold)
        if not confirm:
            await self._start(interaction, request, uploads)
            return
        balance = await storage.member_balance(
            interaction.guild_id, interaction.user.id, roles=role_ids(interaction.user)
        )

        async def on_confirm(click: discord.Interaction) -> None:
            if not await self.allowed(click):  # the rules may have changed meanwhile
                return
            starting = t(language_of(click.locale), "confirm.starting")
            await click.response.edit_message(content=starting, view=None)
            # the budget is checked now: the balance may have changed since the prompt
            await self._start(click, request, uploads)

        lang = language_of(interaction.locale)
        text = texts.confirm_text(request, price, balance, title, lang=lang)
        await self.confirmations.ask(interaction, text, on_confirm)

    async def _start(
        self,
        interaction: discord.Interaction,
        request: GenerationRequest,
        uploads: dict[str, MediaFile] | None,
    ) -> None:
        """Reserve and start a job; its status replaces the interaction's (private) response."""
        assert interaction.guild_id is not None and interaction.channel_id is not None
        if await refuse_without_credit(self.bot, interaction, request.price_micro):
            return  # the account can't pay for it: nothing reserved, the admins told
        owner = JobOwner(interaction.guild_id, interaction.channel_id, interaction.user.id)
        delivery = self.delivery(interaction)
        runner = self.bot.services.runner
        # kept with the job, so that whichever process follows it can answer through it
        token = InteractionToken(
            interaction.application_id, interaction.token, interaction.expires_at
        )
        # the member's role tiers count for their allowance: the roles of whoever asked, or
        # clicked Re-roll / a variation / Use again / Confirm (each a new interaction)
        roles = role_ids(interaction.user)
        try:
            job = await runner.reserve(
                owner, request, interaction=token, roles=roles, locale=interaction.locale.value
            )
        except BudgetError as error:
            await interaction.edit_original_response(
                content=f"⚠️ {texts.refusal_text(error, lang=language_of(interaction.locale))}",
                allowed_mentions=NO_MENTIONS,
            )
            return
        try:  # the job is reserved: it runs whatever happens to the first status
            balance = await self.bot.services.storage.member_balance(
                owner.guild_id, owner.member_id, roles=roles
            )
            status = texts.status_text(
                request,
                job.price_micro,
                balance,
                Stage.UPLOADING,
                0.0,
                lang=language_of(interaction.locale),
            )
            await delivery.open(job, status)
        finally:
            runner.run(job, delivery, uploads)

    async def on_button(self, interaction: discord.Interaction, action: str, job_id: int) -> None:
        """Re-roll, Same seed or Delete on a result message."""
        job = await self.bot.services.storage.get_job(job_id)
        lang = language_of(interaction.locale)
        if job is None or job.guild_id != interaction.guild_id:
            await interaction.response.send_message(t(lang, "video.unknown"), ephemeral=True)
            return
        request = GenerationRequest.model_validate_json(job.request_json)
        if action in ("reroll", "same") and not await self.allowed(interaction):
            return
        match action:
            case "reroll":
                await interaction.response.defer(ephemeral=True, thinking=True)
                rerolled = request.model_copy(update={"seed": concrete_seed(RANDOM_SEED)})
                await self.launch(interaction, rerolled)
            case "same":
                await interaction.response.send_modal(SameSeedModal(self, request, lang))
            case "delete":
                await self._delete(interaction, job)

    async def on_variation(
        self, interaction: discord.Interaction, variation: Variation, job_id: int
    ) -> None:
        """A variation of a result: its price confirmed first, charged to whoever clicks."""
        job = await self.bot.services.storage.get_job(job_id)
        lang = language_of(interaction.locale)
        if job is None or job.guild_id != interaction.guild_id:
            await interaction.response.send_message(t(lang, "video.unknown"), ephemeral=True)
            return
        if not await self.allowed(interaction):
            return
        request = GenerationRequest.model_validate_json(job.request_json)
        try:
            changed = varied(request, variation)
        except NotApplicable:  # a button of an older layout: nothing would change
            await interaction.response.send_message(t(lang, "variation.gone"), ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        title = texts.variation_title(variation, changed, lang=lang)
        await self.launch(interaction, changed, confirm=True, title=title)

    async def _delete(self, interaction: discord.Interaction, job: JobRecord) -> None:
        permissions = interaction.permissions
        lang = language_of(interaction.locale)
        if interaction.user.id != job.member_id and not permissions.manage_messages:
            await interaction.response.send_message(t(lang, "video.delete_refused"), ephemeral=True)
            return
        await interaction.response.send_message(t(lang, "video.deleted"), ephemeral=True)
        if interaction.message is not None:
            await interaction.message.delete()


async def setup(bot: WanBot) -> None:
    """Extension entry point."""
    await bot.add_cog(VideoCog(bot))
