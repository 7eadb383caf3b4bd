"""A running wanbot against loopback fakes of Discord and WaveSpeed, for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.app import WanBot
from bot.config import Settings, load_settings
from bot.domain.job import LedgerEntry
from bot.services import Tuning
from bot.testing.fake_wavespeed import FakeWaveSpeed
from tests.conftest import FAST_POLL, FAST_RETRY, FAST_TIMEOUTS, TEST_API_KEY
from tests.fakes.discord_server import FakeDiscord, FakeInteraction, running_bot
from tests.fakes.images import tiny_png

GUILD = 700_000_000_000_000_001
CHANNEL = 700_000_000_000_000_010
NSFW_CHANNEL = 700_000_000_000_000_011
LOG_CHANNEL = 700_000_000_000_000_012
MEMBER = 700_000_000_000_000_100
OTHER_MEMBER = 700_000_000_000_000_101
ADMIN_ROLE = 700_000_000_000_000_200
MANAGE_GUILD = 1 << 5
FIVE_SECONDS_WITH_AUDIO = 250_000  # micro-dollars


@dataclass
class World:
    """The fakes, the settings, and helpers to act as a member."""

    discord: FakeDiscord
    wavespeed: FakeWaveSpeed
    settings: Settings

    @contextlib.asynccontextmanager
    async def bot(self, **tuning_changes: Any) -> AsyncIterator[WanBot]:
        """Run a fresh WanBot (real cogs, real storage) until the block ends; `tuning_changes`
        override fields of its Tuning (e.g. balance_every_s)."""
        tuning = Tuning(
            poll=FAST_POLL,
            retry=FAST_RETRY,
            timeouts=FAST_TIMEOUTS,
            reconcile_every_s=0.1,
            download_pause_s=0.05,
            queue_tick_s=0.05,
            **tuning_changes,
        )
        async with running_bot(self.discord, lambda: WanBot(self.settings, tuning)) as bot:
            yield bot

    async def video(
        self,
        prompt: str = "the cat turns its head",
        *,
        image: bytes | None = None,
        filename: str = "cat.png",
        content_type: str | None = "image/png",
        audio: tuple[str, bytes] | None = None,
        channel_id: int = CHANNEL,
        user_id: int = MEMBER,
        attachment_size_limit: int = 10 * 1024 * 1024,
        locale: str = "en-US",
        **options: Any,
    ) -> FakeInteraction:
        """Invoke /video with an image, optionally an audio file (filename, bytes), and options,
        as a member whose Discord speaks `locale`."""
        data = tiny_png() if image is None else image
        attachment = self.discord.add_attachment(filename, data, content_type)
        typed = [
            {"name": "image", "type": 11, "value": attachment},
            {"name": "prompt", "type": 3, "value": prompt},
        ]
        if audio is not None:
            track = self.discord.add_attachment(*audio, None)
            typed.append({"name": "audio", "type": 11, "value": track})
        for name, value in options.items():
            kind = 5 if isinstance(value, bool) else 4 if isinstance(value, int) else 3
            typed.append({"name": name, "type": kind, "value": value})
        return await self.discord.invoke_command(
            "video",
            guild_id=GUILD,
            channel_id=channel_id,
            user_id=user_id,
            options=typed,
            attachment_size_limit=attachment_size_limit,
            locale=locale,
        )


async def ledger_kinds(bot: WanBot) -> list[tuple[str, int]]:
    """The server's ledger as (kind, amount) pairs, oldest first."""
    entries: list[LedgerEntry] = await bot.services.storage.ledger(GUILD)
    return [(e.kind, e.amount_micro) for e in entries]


@contextlib.asynccontextmanager
async def make_world(
    tmp_path: Path, *, video: bytes | None = None, **settings: Any
) -> AsyncIterator[World]:
    """Start both fakes with one server, its channels and members, and the settings for a bot.
    `video`: what WaveSpeed serves as every output (default: a small real mp4)."""
    async with (
        FakeWaveSpeed(
            api_key=TEST_API_KEY, queue_s=0.05, processing_s=0.15, video=video
        ) as wavespeed,
        FakeDiscord() as discord,
    ):
        discord.add_guild(GUILD, "Studio")
        discord.add_role(GUILD, ADMIN_ROLE, "Admins", permissions=MANAGE_GUILD)
        for channel_id, name, nsfw in [
            (CHANNEL, "videos", False),
            (NSFW_CHANNEL, "after-dark", True),
            (LOG_CHANNEL, "bot-log", False),
        ]:
            discord.add_channel(GUILD, channel_id, name, nsfw=nsfw)
        discord.add_member(GUILD, MEMBER, username="ada")
        discord.add_member(GUILD, OTHER_MEMBER, username="grace")
        values: dict[str, Any] = {
            "discord_token": discord.bot_token,
            "wavespeed_api_key": TEST_API_KEY,
            "wavespeed_base_url": wavespeed.base_url,
            "database_url": f"sqlite:///{tmp_path / 'wanbot.db'}",
            "member_budget_usd": "5.00",
            "server_budget_usd": "50.00",
            "dev_guild_id": "",
            # roomy account limits: the tests of the local queue set their own
            "wavespeed_max_concurrent": "1000",
            "wavespeed_max_per_minute": "1000",
            **settings,
        }
        yield World(discord, wavespeed, load_settings(**values))


ROOT = str(Path(__file__).resolve().parents[1])


async def start_bot_process(
    world: World, script: str, *, capture: bool = True, **env: str
) -> asyncio.subprocess.Process:
    """Run `script` in a new Python process pointed at the world's fakes: argv[1] is Discord's
    REST base, argv[2] its gateway; the settings come from the environment (`env` added).
    With `capture` its output is piped (read it with `communicate()`), else discarded."""
    output = asyncio.subprocess.PIPE if capture else asyncio.subprocess.DEVNULL
    environment = {
        **{k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields},
        "PYTHONPATH": ROOT,
        "DISCORD_TOKEN": world.discord.bot_token,
        "WAVESPEED_API_KEY": TEST_API_KEY,
        "WAVESPEED_BASE_URL": world.wavespeed.base_url,
        "DATABASE_URL": world.settings.database_url,
        "WAVESPEED_MAX_CONCURRENT": str(world.settings.wavespeed_max_concurrent),
        "WAVESPEED_MAX_PER_MINUTE": str(world.settings.wavespeed_max_per_minute),
        **env,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        f"{world.discord.base_url}/api/v10",
        world.discord.gateway_url,
        env=environment,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=output,
        stderr=output,
    )
