"""/video end to end: the real discord.py client and wanbot's cogs against loopback fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.discord_world import (
    CHANNEL,
    FIVE_SECONDS_WITH_AUDIO,
    MEMBER,
    World,
    ledger_kinds,
    make_world,
)

EPHEMERAL = 64


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as world:
        yield world


async def test_happy_path_defers_shows_status_and_posts_the_video(world: World) -> None:
    async with world.bot() as bot:
        interaction = await world.video("the cat turns its head", seed=42)
        await interaction.wait_until_acked()
        assert interaction.callbacks[0]["type"] == 5  # deferred, within the deadline
        assert interaction.callbacks[0]["data"]["flags"] & EPHEMERAL

        result = await world.discord.wait_for_message(
            lambda m: any(a.filename.endswith(".mp4") for a in m.attachments), timeout=10
        )
        video = result.attachments[0]
        assert video.data[4:8] == b"ftyp"
        assert f"<@{MEMBER}>" in result.content
        assert "the cat turns its head" in result.content
        assert "seed 42" in result.content and "$0.25" in result.content
        assert result.channel_id == CHANNEL and not result.flags & EPHEMERAL
        assert {"wanbot:reroll:1", "wanbot:same:1", "wanbot:delete:1"} <= {
            c["custom_id"] for row in result.components for c in row["components"]
        }
        await interaction.wait_for(lambda i: "Done" in (i.original.content or ""))
        shown = [h.get("content") or "" for h in interaction.original.history]
        assert any("left this period" in text and "$0.25" in text for text in shown)

        [body] = world.wavespeed.submissions
        assert body["seed"] == 42 and body["duration"] == 5
        assert body["image"].startswith(world.wavespeed.base_url)  # uploaded, not Discord's URL
        assert await ledger_kinds(bot) == [
            ("reserve", FIVE_SECONDS_WITH_AUDIO),
            ("charge", FIVE_SECONDS_WITH_AUDIO),
        ]
