"""Languages end to end: the real discord.py client and wanbot's cogs against the loopback
Discord, with members and servers whose Discord speaks English, Spanish or Brazilian
Portuguese. Private answers follow the member's locale, public results the server's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from bot.domain.lifecycle import JobState
from tests.discord_world import (
    CHANNEL,
    GUILD,
    MEMBER,
    NSFW_CHANNEL,
    World,
    ledger_kinds,
    make_world,
)
from tests.fakes.discord_gateway import shard_of
from tests.fakes.discord_models import FakeInteraction, FakeMessage
from tests.test_discord_video import has_video, job_state, wait_until_async

EPHEMERAL = 64
LOCALES = ["en-US", "es-ES", "pt-BR"]
# A sentence each answer has in each language (from bot/locales/*.json).
UNREADABLE = {
    "en-US": "`cat.png` isn't an image I can open",
    "es-ES": "`cat.png` no es una imagen que yo pueda abrir",
    "pt-BR": "`cat.png` não é uma imagem que eu consiga abrir",
}
NO_BUDGET = {
    "en-US": "This video costs **$0.25**, but you have only $0.10 left this period.",
    "es-ES": "Este vídeo cuesta **$0.25**, pero solo te quedan $0.10 en este periodo.",
    "pt-BR": "Este vídeo custa **$0.25**, mas você só tem $0.10 neste período.",
}
BUDGET_SHOW = {
    "en-US": ("**Your video budget this period**", "Allowance $5.00", "Left **$5.00**"),
    "es-ES": (
        "**Tu presupuesto de vídeo en este periodo**",
        "Asignación: $5.00",
        "Quedan **$5.00**",
    ),
    "pt-BR": ("**Seu orçamento de vídeo neste período**", "Cota: $5.00", "Restam **$5.00**"),
}
READY = {
    "en-US": "your video is ready",
    "es-ES": "tu vídeo está listo",
    "pt-BR": "seu vídeo está pronto",
}
DONE = {
    "en-US": "✅ Done — $0.25 charged.",
    "es-ES": "✅ Listo — se han cobrado $0.25.",
    "pt-BR": "✅ Pronto — $0.25 cobrados.",
}
RESULT_BUTTONS = {  # Re-roll, Same seed, Delete; Silent and Longer for a 720p · 5 s · audio one
    "en-US": {"Re-roll", "Same seed", "Delete", "1080p", "Silent", "Longer (10 s)"},
    "es-ES": {
        "Volver a generar",
        "Misma semilla",
        "Borrar",
        "1080p",
        "Sin sonido",
        "Más largo (10 s)",
    },
    "pt-BR": {"Gerar de novo", "Mesma semente", "Apagar", "1080p", "Sem som", "Mais longo (10 s)"},
}


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as world:
        yield world


def says(text: str) -> object:
    """A condition: the interaction's original response contains `text`."""
    return lambda i: i.original is not None and text in (i.original.content or "")


def labels(message: FakeMessage) -> set[str]:
    """The labels of a message's buttons."""
    return {c.get("label") for row in message.components for c in row["components"]}


@pytest.mark.parametrize("locale", LOCALES)
async def test_a_broken_image_is_refused_in_the_members_language(world: World, locale: str) -> None:
    async with world.bot() as bot:
        interaction = await world.video(image=b"%PDF-1.7 not a picture", locale=locale)
        await interaction.wait_for(says(UNREADABLE[locale]))
        assert interaction.original is not None and interaction.original.flags & EPHEMERAL
        assert await ledger_kinds(bot) == []


@pytest.mark.parametrize("locale", LOCALES)
async def test_no_budget_left_is_said_in_the_members_language(tmp_path: Path, locale: str) -> None:
    async with make_world(tmp_path, member_budget_usd="0.10") as world, world.bot() as bot:
        interaction = await world.video(locale=locale)
        await interaction.wait_for(says(NO_BUDGET[locale]))
        assert interaction.original is not None and interaction.original.flags & EPHEMERAL
        assert "<t:" in interaction.original.content  # when it resets: Discord's own words
        assert await ledger_kinds(bot) == []


@pytest.mark.parametrize("locale", LOCALES)
async def test_budget_show_answers_in_the_members_language(world: World, locale: str) -> None:
    async with world.bot():
        interaction = await world.discord.invoke_command(
            "budget",
            guild_id=GUILD,
            channel_id=CHANNEL,
            user_id=MEMBER,
            options=[{"name": "show", "type": 1, "options": []}],
            locale=locale,
        )
        await interaction.wait_until_acked()
        assert interaction.original is not None and interaction.original.flags & EPHEMERAL
        for phrase in BUDGET_SHOW[locale]:
            assert phrase in interaction.original.content


async def finished(world: World, locale: str) -> tuple[FakeInteraction, FakeMessage]:
    """A /video by a member whose Discord speaks `locale`: their interaction once its status
    says Done, and the posted video."""
    interaction = await world.video("the cat turns its head", locale=locale)
    result = await world.discord.wait_for_message(has_video, timeout=10)
    await interaction.wait_for(lambda i: i.original is not None and "✅" in i.original.content)
    return interaction, result


@pytest.mark.parametrize(
    ("server", "member"), [("pt-BR", "es-ES"), ("en-US", "pt-BR"), ("es-ES", "en-US")]
)
async def test_the_video_is_posted_in_the_servers_language_the_status_in_the_members(
    world: World, server: str, member: str
) -> None:
    world.discord.guilds[GUILD].preferred_locale = server
    async with world.bot():
        interaction, result = await finished(world, member)
        assert READY[server] in result.content and READY[member] not in result.content
        assert not result.flags & EPHEMERAL and result.channel_id == CHANNEL
        assert "$0.25" in result.content  # dollars, written the same way in every language
        assert labels(result) == RESULT_BUTTONS[server]
        assert interaction.original is not None
        assert interaction.original.content == DONE[member]


async def test_a_job_carried_on_after_a_restart_keeps_both_languages(world: World) -> None:
    """The restarted bot no longer has the interaction: the server's preferred locale (from
    its GUILD_CREATE) chooses the language of the post, and the member's locale, kept with the
    job, the language of their private status."""
    world.discord.guilds[GUILD].preferred_locale = "pt-BR"
    world.wavespeed.next_task(processing_s=1.0)
    async with world.bot() as first_bot:
        interaction = await world.video(locale="es-ES")
        storage = first_bot.services.storage
        await wait_until_async(lambda: job_state(storage, 1), JobState.SUBMITTED)
    async with world.bot():
        result = await world.discord.wait_for_message(has_video, timeout=10)
        assert READY["pt-BR"] in result.content
        assert labels(result) == RESULT_BUTTONS["pt-BR"]
        await interaction.wait_for(says(DONE["es-ES"]))


async def test_a_job_taken_over_by_another_shards_process_still_knows_its_server(
    world: World,
) -> None:
    """The process that carries the job on runs a shard that does not include the server, so
    its cache has neither the server nor the channel: it fetches them, and posts in the
    server's language, without a spoiler in an age-restricted channel — not in English, hidden
    as though the channel were not."""
    world.discord.guilds[GUILD].preferred_locale = "pt-BR"
    world.wavespeed.next_task(nsfw=True, processing_s=1.0)
    async with world.bot() as first_bot:
        await world.video(locale="es-ES", channel_id=NSFW_CHANNEL)
        storage = first_bot.services.storage
        await wait_until_async(lambda: job_state(storage, 1), JobState.SUBMITTED)
    other_shard = 1 - shard_of(GUILD, 2)
    elsewhere = replace(
        world,
        settings=world.settings.model_copy(update={"shard_count": 2, "shard_ids": [other_shard]}),
    )
    async with elsewhere.bot() as bot:
        result = await world.discord.wait_for_message(has_video, timeout=10)
        assert bot.get_guild(GUILD) is None  # not this process's server
        assert READY["pt-BR"] in result.content
        assert labels(result) == RESULT_BUTTONS["pt-BR"]
        assert result.channel_id == NSFW_CHANNEL
        assert not result.attachments[0].filename.startswith("SPOILER_")
        assert world.discord.requests_to("GET", rf"/guilds/{GUILD}")


async def test_the_prompt_is_never_translated(world: World) -> None:
    world.discord.guilds[GUILD].preferred_locale = "es-ES"
    async with world.bot():
        await world.video("the cat turns its head", locale="pt-BR")
        result = await world.discord.wait_for_message(has_video, timeout=10)
        assert "> the cat turns its head" in result.content
        [body] = world.wavespeed.submissions
        assert body["prompt"] == "the cat turns its head"
