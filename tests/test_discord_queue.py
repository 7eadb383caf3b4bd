"""The local queue through the real bot: the real discord.py client against the loopback fake
Discord, the fake WaveSpeed API, a real SQLite file.

Positions shown and updated, Cancel, fairness across members and servers, a restart keeping the
order, a burst of thirty on a small account, a 429 and a temporary task failure that the member
never sees as a failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from bot.domain.lifecycle import FailureKind, JobState
from tests.discord_world import CHANNEL, GUILD, MEMBER, OTHER_MEMBER, World, make_world
from tests.fakes.discord_server import FakeInteraction

EPHEMERAL = 1 << 6
GUILD_2, CHANNEL_2, MEMBER_2 = (
    700_000_000_000_000_501,
    700_000_000_000_000_510,
    700_000_000_000_000_600,
)
THIRD_MEMBER = 700_000_000_000_000_102


def says(text: str) -> Callable[[FakeInteraction], bool]:
    return lambda i: i.original is not None and text in (i.original.content or "")


def status_history(interaction: FakeInteraction) -> list[str]:
    assert interaction.original is not None
    return [h.get("content") or "" for h in interaction.original.history]


def cancel_id(interaction: FakeInteraction) -> str | None:
    assert interaction.original is not None
    ids = [c["custom_id"] for row in interaction.original.components for c in row["components"]]
    return next((i for i in ids if i.startswith("wanbot:cancel:")), None)


def submitted_prompts(world: World) -> list[str]:
    return [body["prompt"] for body in world.wavespeed.submissions]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_a_waiting_member_sees_the_place_and_can_cancel_for_a_full_refund(
    tmp_path: Path,
) -> None:
    async with make_world(tmp_path, wavespeed_max_concurrent="1") as world:
        world.discord.add_member(GUILD, THIRD_MEMBER, username="linus")
        world.wavespeed.next_task(processing_s=1.5)  # the first video holds the only slot
        async with world.bot() as bot:
            first = await world.video("first", user_id=MEMBER)
            await until(lambda: len(world.wavespeed.submissions) == 1)
            second = await world.video("second", user_id=OTHER_MEMBER)
            await second.wait_for(says("yours is next"), timeout=5)
            third = await world.video("third", user_id=THIRD_MEMBER)
            await third.wait_for(says("1 video ahead of yours"), timeout=5)
            button = cancel_id(second)
            assert button is not None and cancel_id(third) is not None

            stranger = await world.discord.click_button(
                second.original, button, user_id=THIRD_MEMBER
            )
            await stranger.wait_for(lambda i: i.callbacks, timeout=5)
            assert "Only the member" in stranger.callbacks[0]["data"]["content"]

            click = await world.discord.click_button(second.original, button, user_id=OTHER_MEMBER)
            await click.wait_for(lambda i: i.callbacks, timeout=5)
            answer = click.callbacks[0]["data"]
            assert "Cancelled" in answer["content"] and answer["flags"] & EPHEMERAL
            await second.wait_for(says("cancelled"), timeout=5)
            await third.wait_for(says("yours is next"), timeout=5)

            await first.wait_for(says("Done"), timeout=10)
            await third.wait_for(says("Done"), timeout=10)
            storage = bot.services.storage
            cancelled = next(j for j in await storage.recent_jobs(GUILD, OTHER_MEMBER))
            assert cancelled.state is JobState.CLOSED
            assert cancelled.failure_kind is FailureKind.CANCELLED
            rows = [(e.kind, e.amount_micro) for e in await storage.ledger(GUILD)]
            assert ("refund", cancelled.price_micro) in rows
            assert (await storage.member_balance(GUILD, OTHER_MEMBER)).spent == 0
            # nothing of the cancelled job reached WaveSpeed
            assert submitted_prompts(world) == ["first", "third"]
            assert cancel_id(third) is None  # the button goes once its turn came


async def test_servers_and_members_take_turns(tmp_path: Path) -> None:
    """One member queues three more while their first video runs; another member of the same
    server and a member of a second server ask after them, and still go first."""
    async with make_world(tmp_path, wavespeed_max_concurrent="1", max_jobs_per_member="5") as world:
        world.discord.add_guild(GUILD_2, "Other studio")
        world.discord.add_channel(GUILD_2, CHANNEL_2, "clips")
        world.discord.add_member(GUILD_2, MEMBER_2, username="ken")
        world.wavespeed.next_task(processing_s=1.5)
        async with world.bot():
            await world.video("a1", user_id=MEMBER)
            await until(lambda: len(world.wavespeed.submissions) == 1)
            # each joins the queue before the next is asked (the order they asked in)
            for prompt, member, channel in (
                ("a2", MEMBER, CHANNEL),
                ("a3", MEMBER, CHANNEL),
                ("b1", OTHER_MEMBER, CHANNEL),
                ("c1", MEMBER_2, CHANNEL_2),
            ):
                last = await world.video(prompt, user_id=member, channel_id=channel)
                await last.wait_for(says("waiting for a turn"), timeout=5)
            await until(lambda: len(world.wavespeed.submissions) == 5, timeout=20)
            await last.wait_for(says("Done"), timeout=10)
        # a1 ran first; then the server never served, then the member never served
        assert submitted_prompts(world) == ["a1", "c1", "b1", "a2", "a3"]


async def test_the_queue_keeps_its_order_across_a_restart(tmp_path: Path) -> None:
    async with make_world(tmp_path, wavespeed_max_concurrent="1") as world:
        world.discord.add_member(GUILD, THIRD_MEMBER, username="linus")
        world.wavespeed.next_task(processing_s=1.5)
        async with world.bot() as bot:
            await world.video("first", user_id=MEMBER)
            await until(lambda: len(world.wavespeed.submissions) == 1)
            second = await world.video("second", user_id=OTHER_MEMBER)
            await second.wait_for(says("yours is next"), timeout=5)  # queued before the third
            third = await world.video("third", user_id=THIRD_MEMBER)
            await third.wait_for(says("1 video ahead of yours"), timeout=5)
            states = [job.state for job in await bot.services.storage.unfinished_jobs()]
            assert states.count(JobState.QUEUED) == 2
        async with world.bot():  # a restart: the queued jobs kept their places
            await third.wait_for(says("Done"), timeout=15)
        assert submitted_prompts(world) == ["first", "second", "third"]


async def test_a_burst_of_thirty_on_a_two_task_account_all_arrive(tmp_path: Path) -> None:
    """Thirty members press /video at once; the account runs two tasks at a time and refuses
    more than thirty submits a minute. Nobody sees a failure; WaveSpeed never runs more than
    two of them, nor refuses a submit."""
    members = [700_000_000_000_001_000 + n for n in range(30)]
    async with make_world(
        tmp_path, wavespeed_max_concurrent="2", wavespeed_max_per_minute="30"
    ) as world:
        world.wavespeed.max_per_minute = 30
        world.wavespeed.processing_s = 0.1
        for member in members:
            world.discord.add_member(GUILD, member)
        async with world.bot():
            asked = await asyncio.gather(
                *(world.video(f"clip {n}", user_id=m) for n, m in enumerate(members))
            )
            for interaction in asked:
                await interaction.wait_for(says("Done"), timeout=60)
        assert len(world.wavespeed.submissions) == 30
        assert world.wavespeed.peak_unfinished <= 2
        waited = [
            i
            for i in asked
            if any("ahead of yours" in t or "yours is next" in t for t in status_history(i))
        ]
        assert waited  # most of them waited their turn, and saw it
        assert not any("⚠️" in text or "failed" in text for i in asked for text in status_history(i))


async def test_a_429_and_a_temporary_task_failure_are_ridden_through(tmp_path: Path) -> None:
    async with make_world(tmp_path) as world:
        world.wavespeed.fail_next("submit", 429, retry_after=0.2)
        world.wavespeed.next_task("failed", error_code=5003)
        async with world.bot() as bot:
            interaction = await world.video("the cat blinks")
            await interaction.wait_for(says("Done"), timeout=15)
            shown = status_history(interaction)
            assert any("retrying" in text for text in shown)
            assert not any("failed" in text.lower() for text in shown)
            [job] = await bot.services.storage.recent_jobs(GUILD, MEMBER)
            assert job.state is JobState.DELIVERED and job.attempts == 3
            kinds = [e.kind for e in await bot.services.storage.ledger(GUILD)]
            assert kinds == ["reserve", "charge"]
        # the 429 created nothing; the failed task and its retry are the two tasks
        assert len(world.wavespeed.calls("submit")) == 3 and len(world.wavespeed.tasks) == 2
        message = await world.discord.wait_for_message(
            lambda m: m.channel_id == CHANNEL and bool(m.attachments), timeout=5
        )
        assert f"<@{MEMBER}>" in message.content
