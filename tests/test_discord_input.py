"""Uploaded input end to end: broken files and invisible or reversing prompts, through the real
discord.py client and wanbot's cogs against loopback fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.discord_world import World, ledger_kinds, make_world
from tests.fakes.discord_models import FakeInteraction
from tests.fakes.images import png_signature_then_garbage, tiny_png, truncated_png, wav

EPHEMERAL = 64


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as world:
        yield world


def original_says(text: str) -> Callable[[FakeInteraction], bool]:
    """A condition: the interaction's original response contains `text`."""
    return lambda i: i.original is not None and text in (i.original.content or "")


async def assert_refused_privately(world: World, interaction: FakeInteraction, text: str) -> None:
    """The member alone reads `text`, and nothing was uploaded, submitted or charged."""
    await interaction.wait_for(original_says(text))
    assert interaction.original.flags & EPHEMERAL
    assert world.wavespeed.submissions == [] and world.wavespeed.uploads == {}


@pytest.mark.parametrize(
    ("image", "text"),
    [
        (png_signature_then_garbage(), "isn't an image I can open"),
        (truncated_png(), "isn't an image I can open"),
        (tiny_png(200, 150), "at least 240 px on each side"),
    ],
    ids=["png-signature-then-garbage", "truncated-png", "too-small"],
)
async def test_unusable_images_are_refused_before_anything_is_spent(
    world: World, image: bytes, text: str
) -> None:
    async with world.bot() as bot:
        interaction = await world.video(image=image, filename="cat.png")
        await assert_refused_privately(world, interaction, text)
        assert await ledger_kinds(bot) == []


async def test_too_short_custom_audio_is_refused(world: World) -> None:
    async with world.bot() as bot:
        interaction = await world.video(audio=("beat.wav", wav(1)))
        await assert_refused_privately(world, interaction, "lasts 1.00 s")
        assert "3–30 seconds" in interaction.original.content
        assert await ledger_kinds(bot) == []


async def test_a_prompt_of_zero_width_characters_is_refused(world: World) -> None:
    async with world.bot() as bot:
        interaction = await world.video("\u200b\u2060\ufeff\u200d")
        await interaction.wait_until_acked()
        [callback] = interaction.callbacks
        assert callback["type"] == 4 and callback["data"]["flags"] & EPHEMERAL
        assert "The prompt has no visible text." in callback["data"]["content"]
        assert world.wavespeed.submissions == [] and await ledger_kinds(bot) == []


async def test_bidi_overrides_and_controls_are_cleaned_before_they_travel(world: World) -> None:
    async with world.bot():
        await world.video("the cat \u202eswaw\u202c\x07 @everyone\x00 *slowly*")
        result = await world.discord.wait_for_message(
            lambda m: any(a.filename.endswith(".mp4") for a in m.attachments), timeout=10
        )
        [body] = world.wavespeed.submissions
        assert body["prompt"] == "the cat swaw @everyone *slowly*"
        assert not {"\u202e", "\u202c", "\x07", "\x00"} & set(result.content)
        assert "> the cat swaw \\@everyone \\*slowly\\*" in result.content
