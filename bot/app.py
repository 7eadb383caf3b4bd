"""WanBot: the discord.py bot that hosts the cogs and the job runner."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import logging
import signal

import discord
from discord import app_commands
from discord.ext import commands

from bot.config import ConfigError, Settings
from bot.i18n import CatalogueTranslator, LocalizedError, language_of, t
from bot.monitoring import MonitoringServer
from bot.services import Services, Tuning

log = logging.getLogger(__name__)

EXTENSIONS = (
    "cogs.video",
    "cogs.budget",
    "cogs.admin",
    "cogs.price",
    "cogs.history",
    "cogs.alerts",  # starts the WaveSpeed balance watch; Services.close stops it
)
COMMAND_DIGEST_KEY = "synced_command_digest"  # a bot-wide setting
GC_THRESHOLD_GEN0 = 50_000  # allocations between young collections (Python's default: 700)


class FriendlyTree(app_commands.CommandTree["WanBot"]):
    """Tells members, privately, why a command was refused; logs what was unexpected."""

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        lang = language_of(interaction.locale)  # a private answer: the member's language
        if isinstance(error, app_commands.MissingPermissions):
            text = t(lang, "error.manage_server")
        elif isinstance(error, app_commands.NoPrivateMessage):
            text = t(lang, "error.guild_only")
        elif isinstance(error, LocalizedError):  # raised by our cogs with a catalogue key
            text = error.text(lang)
        elif type(error) is app_commands.AppCommandError:  # raised by our cogs with a message
            text = str(error)
        else:
            log.error("command %s failed", interaction.command, exc_info=error)
            text = t(lang, "error.unexpected")
        if interaction.response.is_done():
            await interaction.followup.send(f"⚠️ {text}", ephemeral=True)
        else:
            await interaction.response.send_message(f"⚠️ {text}", ephemeral=True)


class WanBot(commands.AutoShardedBot):
    """The bot: opens services in `setup_hook`, loads the cogs (the video cog resumes jobs).

    It runs the gateway shards SHARD_IDS of SHARD_COUNT (every shard of SHARD_COUNT without
    SHARD_IDS). With neither set it runs every shard Discord recommends (one for a small bot), so
    one process serves every server as before, and still does past 2,500 servers, where Discord
    refuses an unsharded connection.
    """

    def __init__(self, settings: Settings, tuning: Tuning | None = None) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            tree_cls=FriendlyTree,
            chunk_guilds_at_startup=False,
            # Every message states its mentions: none, unless a message names the member it pings.
            allowed_mentions=discord.AllowedMentions.none(),
            shard_count=settings.shard_count,  # None: ask Discord (GET /gateway/bot)
            shard_ids=settings.shard_ids,
        )
        self.settings = settings
        self.tuning = tuning
        self._services: Services | None = None
        self.monitoring: MonitoringServer | None = None  # /healthz and /metrics (METRICS_LISTEN)

    @property
    def services(self) -> Services:
        """Storage, WaveSpeed client and job runner; available from `setup_hook` on."""
        if self._services is None:
            raise RuntimeError("services are opened in setup_hook")
        return self._services

    async def setup_hook(self) -> None:
        self._services = await Services.open(self.settings, self.tuning)
        if self.settings.metrics_address is not None:
            storage, client = self._services.storage, self._services.client
            self.monitoring = await MonitoringServer.open(
                self, storage, client, self.settings.metrics_address
            )
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        # the commands' names and descriptions in every language of bot/locales, synced below
        await self.tree.set_translator(CatalogueTranslator())
        await self._sync_commands()

    @property
    def runs_first_shard(self) -> bool:
        """Whether this process runs shard 0: true unless SHARD_IDS leaves it to another process."""
        return self.settings.shard_ids is None or 0 in self.settings.shard_ids

    async def _sync_commands(self) -> None:
        """Sync to DEV_GUILD_ID at once; globally only when the command set has changed.

        Commands belong to the application, not to a shard, so only the process running shard 0
        syncs them; the others would race it for the same bot-wide digest and Discord's rate limit.
        """
        if not self.runs_first_shard:
            log.info(
                "shards %s of %s: slash commands are synced by the process running shard 0",
                self.settings.shard_ids,
                self.settings.shard_count,
            )
            return
        if self.settings.dev_guild_id is not None:
            guild = discord.Object(id=self.settings.dev_guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
            return
        # what tree.sync sends, translations included: a changed translation syncs again
        translator = self.tree.translator
        assert translator is not None  # set in setup_hook
        payload = [
            await command.get_translated_payload(self.tree, translator)
            for command in self.tree.get_commands()
        ]
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        storage = self.services.storage
        if await storage.get_bot_setting(COMMAND_DIGEST_KEY) != digest:
            await self.tree.sync()
            await storage.set_bot_setting(COMMAND_DIGEST_KEY, digest)
            log.info("slash commands changed: synced globally")

    async def close(self) -> None:
        if self.monitoring is not None:  # first: its checks use the services
            await self.monitoring.close()
            self.monitoring = None
        if self._services is not None:
            await self._services.close()
            self._services = None
        await super().close()


def run(settings: Settings, token: str, tuning: Tuning | None = None) -> None:
    """Run the bot until Ctrl-C or SIGTERM (`docker stop`), then close it cleanly.

    Logging is already set up by the caller; `tuning` shortens the timings in tests.
    """
    # Thousands of jobs in flight keep many objects alive, and the default thresholds then run
    # full collections that stall the event loop for up to 0.8 s; rarer ones keep it under
    # 0.2 s (bench/bench_inflight.py, docs/PERFORMANCE.md).
    gc.set_threshold(GC_THRESHOLD_GEN0, 20, 20)
    try:
        asyncio.run(_serve(WanBot(settings, tuning), token))
    except KeyboardInterrupt:
        pass
    except discord.LoginFailure:
        raise ConfigError(
            "DISCORD_TOKEN was rejected by Discord: reset it in the developer portal"
        ) from None


async def _serve(bot: WanBot, token: str) -> None:
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows; not the main thread
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with bot:  # closes the bot (and so the job runner and the database) on the way out
        serving = asyncio.create_task(bot.start(token))
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if serving in done:
            stopping.cancel()
            serving.result()  # a login or connection error
        else:
            log.info("SIGTERM: shutting down; unfinished jobs resume at the next start")
            await bot.close()
            await serving
