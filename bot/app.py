"""WanBot: the discord.py bot that hosts the cogs and the job runner."""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.config import Settings
from bot.services import Services

log = logging.getLogger(__name__)

EXTENSIONS: tuple[str, ...] = ()


class WanBot(commands.Bot):
    """The bot: opens services in `setup_hook`, loads the cogs, resumes unfinished jobs."""

    def __init__(self, settings: Settings, *, sync_commands: bool = True) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            chunk_guilds_at_startup=False,
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
        )
        self.settings = settings
        self.sync_commands = sync_commands
        self._services: Services | None = None

    @property
    def services(self) -> Services:
        """Storage, WaveSpeed client and job runner; available from `setup_hook` on."""
        if self._services is None:
            raise RuntimeError("services are opened in setup_hook")
        return self._services

    async def setup_hook(self) -> None:
        self._services = await Services.open(self.settings)
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        if self.sync_commands and self.settings.dev_guild_id is not None:
            guild = discord.Object(id=self.settings.dev_guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        self.loop.create_task(self._resume_when_ready())

    async def _resume_when_ready(self) -> None:
        await self.wait_until_ready()
        for cog in self.cogs.values():
            resume = getattr(cog, "resume_jobs", None)
            if resume is not None:
                count = await resume()
                log.info("resumed %d unfinished job(s)", count)

    async def close(self) -> None:
        if self._services is not None:
            await self._services.close()
            self._services = None
        await super().close()


def run(settings: Settings, token: str) -> None:
    """Run the bot until interrupted (logging is already set up by the caller)."""
    WanBot(settings).run(token, log_handler=None)
