"""The variation buttons under a result (1080p, With audio / Silent, Longer), end to end: the real
discord.py client and wanbot's cogs against the loopback fakes of Discord and WaveSpeed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.domain.job import LedgerEntry
from bot.domain.server_settings import VIDEO_ROLES
from storage.server_settings import save_setting
from tests.discord_world import (
    ADMIN_ROLE,
    GUILD,
    MEMBER,
    OTHER_MEMBER,
    World,
    ledger_kinds,
    make_world,
)
from tests.fakes.discord_models import FakeInteraction, FakeMessage
from tests.fakes.images import wav
from tests.test_discord_confirm import (
    ADMIN,
    click,
    has_video,
    nothing_started,
    prompt_of,
    says,
    set_confirm_above,
)

EPHEMERAL = 64
ROW = {"wanbot:reroll:{}", "wanbot:same:{}", "wanbot:delete:{}"}
MAKER_ROLE = 700_000_000_000_000_201


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as world:
        world.discord.add_member(GUILD, ADMIN, username="root", roles=[ADMIN_ROLE])
        yield world


def buttons(message: FakeMessage) -> dict[str, str]:
    """A message's buttons: custom_id → label."""
    return {
        c["custom_id"]: c.get("label", "")
        for c in message.iter_components()
        if c.get("type") == 2 and "custom_id" in c
    }


def expected(job_id: int, *variations: str) -> set[str]:
    """The custom_ids under job `job_id`'s video: the usual row, and these variations."""
    return {i.format(job_id) for i in ROW} | {f"wanbot:vary:{v}:{job_id}" for v in variations}


async def result(world: World, job_id: int) -> FakeMessage:
    """The posted video of job `job_id` (its buttons name the job)."""
    return await world.discord.wait_for_message(
        lambda m: has_video(m) and f"wanbot:delete:{job_id}" in buttons(m), timeout=10
    )


async def made(world: World, prompt: str = "the cat waves", **options: Any) -> FakeMessage:
    """A /video by MEMBER (seed 7 unless given), once posted; it is job 1 of the test."""
    await world.video(prompt, **{"seed": 7, **options})
    return await result(world, 1)


async def vary(
    world: World, message: FakeMessage, action: str, job_id: int, user_id: int = MEMBER
) -> tuple[FakeInteraction, FakeMessage]:
    """Click a variation button; the click and the price prompt it was answered with."""
    clicked = await world.discord.click_button(
        message, f"wanbot:vary:{action}:{job_id}", user_id=user_id
    )
    prompt = await prompt_of(clicked)
    return clicked, prompt


async def varied_run(
    world: World, message: FakeMessage, action: str, job_id: int, user_id: int = MEMBER
) -> tuple[str, dict[str, Any]]:
    """Click a variation, confirm its price; the prompt's text and the body WaveSpeed got."""
    submitted = len(world.wavespeed.submissions)
    _, prompt = await vary(world, message, action, job_id, user_id)
    text = prompt.content
    confirmed = await click(world, prompt, "yes", user_id)
    await confirmed.wait_for(says("Done"), timeout=10)
    assert len(world.wavespeed.submissions) == submitted + 1
    return text, world.wavespeed.submissions[-1]


def only_changed(before: dict[str, Any], after: dict[str, Any], **change: Any) -> None:
    """`after` is `before` with exactly `change`: same prompt, image, seed and the rest."""
    assert after == {**before, **change}


async def test_each_variation_reruns_with_exactly_that_change(world: World) -> None:
    async with world.bot() as bot:
        first = await made(world)  # 720p · 5 s · generated audio · seed 7: $0.25
        assert set(buttons(first)) == expected(1, "hd", "silent", "longer")
        labels = buttons(first)
        assert labels["wanbot:vary:hd:1"] == "1080p" and labels["wanbot:vary:silent:1"] == "Silent"
        assert labels["wanbot:vary:longer:1"] == "Longer (10 s)"
        original = world.wavespeed.submissions[0]

        text, body = await varied_run(world, first, "hd", 1)
        assert text.startswith("💵 The 1080p version of this video costs **$0.375**.")
        assert "1080p · 5 s · audio · seed 7" in text
        only_changed(original, body, resolution="1080p")
        assert set(buttons(await result(world, 2))) == expected(2, "silent", "longer")

        text, body = await varied_run(world, first, "silent", 1)
        assert text.startswith("💵 The silent version of this video costs **$0.125**.")
        only_changed(original, body, enable_audio=False)
        assert set(buttons(await result(world, 3))) == expected(3, "hd", "audio", "longer")

        text, body = await varied_run(world, first, "longer", 1)
        assert text.startswith("💵 The 10 s version of this video costs **$0.50**.")
        only_changed(original, body, duration=10)
        ten = await result(world, 4)
        assert buttons(ten)["wanbot:vary:longer:4"] == "Longer (15 s)"

        text, body = await varied_run(world, ten, "longer", 4)
        assert "The 15 s version of this video costs **$0.75**" in text
        only_changed(original, body, duration=15)
        assert set(buttons(await result(world, 5))) == expected(5, "hd", "silent")  # no Longer

        assert len(world.wavespeed.uploads) == 1  # every variation reused the uploaded image
        assert [kind for kind, _ in await ledger_kinds(bot)].count("charge") == 5


async def test_with_audio_on_a_silent_video_and_a_duration_between_steps(world: World) -> None:
    async with world.bot():
        first = await made(world, enable_audio=False, duration=7)  # 720p · 7 s · silent: $0.175
        assert set(buttons(first)) == expected(1, "hd", "audio", "longer")
        original = world.wavespeed.submissions[0]

        text, body = await varied_run(world, first, "audio", 1)
        assert "The version with audio of this video costs **$0.35**" in text
        only_changed(original, body, enable_audio=True)

        text, body = await varied_run(world, first, "longer", 1)  # 7 s goes to the next step
        assert "The 10 s version of this video costs **$0.25**" in text
        only_changed(original, body, duration=10)


async def test_hidden_buttons(world: World) -> None:
    async with world.bot():
        first = await made(world, "big", resolution="1080p", duration=15)
        assert set(buttons(first)) == expected(1, "silent")  # not 1080p, not Longer

        await world.video("sung", audio=("song.wav", wav(5)), seed=3)  # custom audio, on
        sung = await result(world, 2)
        assert set(buttons(sung)) == expected(2, "hd", "longer")  # neither audio variation
        await world.video("sung quietly", audio=("song.wav", wav(5)), enable_audio=False)
        assert set(buttons(await result(world, 3))) == expected(3, "hd", "longer")
        await world.video(
            "all", audio=("song.wav", wav(5)), resolution="1080p", duration=15, seed=1
        )
        assert set(buttons(await result(world, 4))) == expected(4)  # nothing left to vary

        with pytest.raises(ValueError):  # not on the message: nobody can click it
            await world.discord.click_button(first, "wanbot:vary:hd:1", user_id=MEMBER)


async def test_custom_audio_is_kept_by_a_variation(world: World) -> None:
    async with world.bot():
        await world.video("sung", audio=("song.wav", wav(5)), seed=3)
        sung = await result(world, 1)
        original = world.wavespeed.submissions[0]
        text, body = await varied_run(world, sung, "hd", 1)
        assert "1080p · 5 s · custom audio · seed 3" in text and "**$0.375**" in text
        only_changed(original, body, resolution="1080p")
        assert body["audio"] == original["audio"]


async def test_a_variation_always_confirms_and_the_clicker_pays(world: World) -> None:
    async with world.bot() as bot:
        await set_confirm_above(world, "100")  # far above every price: /video doesn't ask
        first = await made(world)
        _, prompt = await vary(world, first, "hd", 1, user_id=OTHER_MEMBER)
        assert prompt.flags & EPHEMERAL and "**$0.375**" in prompt.content
        assert "After it you would have **$4.625** left this period." in prompt.content
        await nothing_started(world, bot, videos=1)
        await click(world, prompt, "yes", OTHER_MEMBER)
        second = await result(world, 2)
        assert f"<@{OTHER_MEMBER}>" in second.content
        entries: list[LedgerEntry] = await bot.services.storage.ledger(GUILD)
        assert [(e.kind, e.member_id, e.amount_micro) for e in entries if e.job_id == 2] == [
            ("reserve", OTHER_MEMBER, 375_000),
            ("charge", OTHER_MEMBER, 375_000),
        ]

        # Cancel on a variation's prompt changes nothing
        _, prompt = await vary(world, first, "longer", 1)
        cancelled = await click(world, prompt, "no", MEMBER)
        assert cancelled.response_type == 7 and not list(prompt.iter_components())
        await nothing_started(world, bot, videos=2, uploads=1)


async def test_a_variation_over_budget_is_refused(tmp_path: Path) -> None:
    async with make_world(tmp_path, member_budget_usd="0.30") as world, world.bot() as bot:
        first = await made(world)  # $0.25: $0.05 left
        _, prompt = await vary(world, first, "hd", 1)
        assert "**$0.375**" in prompt.content and "only $0.05 left" in prompt.content
        refused = await click(world, prompt, "yes", MEMBER)
        await refused.wait_for(says("but you have only $0.05 left"))
        assert "This video costs **$0.375**" in prompt.content
        await nothing_started(world, bot, videos=1)


async def test_variations_obey_the_access_rules(world: World) -> None:
    async with world.bot() as bot:
        first = await made(world)
        await save_setting(bot.services.storage, GUILD, VIDEO_ROLES, (MAKER_ROLE,))
        refused = await world.discord.click_button(first, "wanbot:vary:hd:1", user_id=MEMBER)
        await refused.wait_until_acked()
        assert refused.response_type == 4  # answered at once: no prompt, no price
        assert refused.original is not None and "needs the" in refused.original.content
        await nothing_started(world, bot, videos=1)


async def test_variation_buttons_work_after_a_restart(world: World) -> None:
    async with world.bot():
        first = await made(world)
        original = world.wavespeed.submissions[0]
    async with world.bot() as bot:
        text, body = await varied_run(world, first, "longer", 1)
        assert "The 10 s version of this video costs **$0.50**" in text
        only_changed(original, body, duration=10)
        await result(world, 2)
        assert [kind for kind, _ in await ledger_kinds(bot)].count("charge") == 2
