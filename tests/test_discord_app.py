"""WanBot start-up: command sync, and what the synced commands offer."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from bot.app import run
from bot.config import ConfigError
from tests.discord_world import GUILD, make_world, start_bot_process


async def test_global_sync_happens_only_when_the_commands_change(tmp_path: Path) -> None:
    async with make_world(tmp_path) as world:
        async with world.bot():
            pass
        async with world.bot():
            pass
        puts = world.discord.requests_to("PUT", r"/applications/\d+/commands")
        assert len(puts) == 1  # the second start found the same command set already synced
        names = {c["name"] for c in world.discord.commands[None]}
        assert names == {"video", "budget", "usage", "wanbot-settings", "price", "history"}


async def test_dev_guild_gets_an_instant_guild_sync(tmp_path: Path) -> None:
    async with make_world(tmp_path, dev_guild_id=GUILD) as world, world.bot():
        assert {c["name"] for c in world.discord.commands[GUILD]} >= {"video", "budget"}
        assert None not in world.discord.commands


async def test_video_command_offers_every_model_option(tmp_path: Path) -> None:
    async with make_world(tmp_path) as world, world.bot():
        [video] = [c for c in world.discord.commands[None] if c["name"] == "video"]
        options = {o["name"]: o for o in video["options"]}
        assert list(options) == [
            "image",
            "prompt",
            "negative_prompt",
            "resolution",
            "duration",
            "shot_type",
            "audio",
            "enable_audio",
            "prompt_expansion",
            "seed",
        ]
        assert options["image"]["type"] == 11 and options["image"]["required"]
        assert options["audio"]["type"] == 11 and not options["audio"].get("required")
        assert (options["duration"]["min_value"], options["duration"]["max_value"]) == (2, 15)
        assert (options["seed"]["min_value"], options["seed"]["max_value"]) == (-1, 2147483647)
        assert {c["value"] for c in options["resolution"]["choices"]} == {"720p", "1080p"}
        assert {c["value"] for c in options["shot_type"]["choices"]} == {"single", "multi"}
        assert options["prompt"]["max_length"] == 1500
        assert video.get("contexts") == [0] or video.get("dm_permission") is False


async def test_a_rejected_token_is_one_clear_configuration_error(tmp_path: Path) -> None:
    async with make_world(tmp_path) as world:
        with pytest.raises(ConfigError, match=r"^DISCORD_TOKEN was rejected by Discord") as caught:
            await asyncio.to_thread(run, world.settings, "not-the-bot-token")
        assert "not-the-bot-token" not in str(caught.value)


RUN_AGAINST_FAKE = """
import sys, discord.http, discord.gateway, yarl
discord.http.Route.BASE = sys.argv[1]
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(sys.argv[2])
from bot.cli import main
raise SystemExit(main(["run"]))
"""


async def test_sigterm_closes_the_bot_cleanly(tmp_path: Path) -> None:
    """`docker stop` sends SIGTERM: the bot disconnects, closes its database and exits 0."""
    async with make_world(tmp_path) as world:
        process = await start_bot_process(world, RUN_AGAINST_FAKE)
        try:
            await world.discord.wait_ready(timeout=20)
            process.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(process.communicate(), 20)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode == 0, err.decode()
        assert "SIGTERM: shutting down" in err.decode()
        assert "Traceback" not in err.decode() and world.discord.bot_token not in err.decode()
        await world.discord.wait_disconnected()
