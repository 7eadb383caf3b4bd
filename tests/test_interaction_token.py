"""The interaction token kept with a job: any process that follows the job — the one that took the
command, another that took it over, or either after a restart — answers through the member's
interaction while Discord accepts its token (15 minutes), then falls back to the channel.

First the stores (both backends): the token round-trips, is cleared when the job reaches a final
state or is forgotten, never shows in a repr, and the schema refuses half a token or one left on a
final job. Then end to end, the real discord.py client against the loopback fakes: a bot
restarted mid-job finishes the member's private status and sends the video as a follow-up of the
original interaction; with the token expired (by Discord's clock, or by the bot's), the video
goes to the channel.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.domain.job import InteractionToken, JobOwner, JobRecord
from bot.domain.lifecycle import FailureKind, JobState
from storage import PostgresStorage, SqliteStorage, database_path
from storage.transfer import transfer_database
from tests.discord_world import CHANNEL, GUILD, MEMBER, World, ledger_kinds, make_world
from tests.storage_backends import CHECK_FAILED, INTEGRITY_ERRORS, POLICY, START, execute_raw
from tests.test_discord_video import has_video, job_state, wait_until, wait_until_async
from tests.test_storage import PATHS, move

Store = SqliteStorage | PostgresStorage

APP_ID = 1_300_000_000_000_000_001  # snowflake-sized: only a 64-bit column holds it
TOKEN = "aW50ZXJhY3Rpb24tdG9rZW4tc2VjcmV0"  # distinctive enough to search a repr for
EXPIRES = START + timedelta(minutes=15)
INTERACTION = InteractionToken(APP_ID, TOKEN, EXPIRES)
OWNER = JobOwner(1001, 2002, 3003)
FOLLOW_UP = r"/webhooks/\d+/[^/]+"
CHANNEL_POST = r"/channels/\d+/messages"


ROLES = (1_300_000_000_000_000_101, 1_300_000_000_000_000_102)  # snowflakes too
LOCALE = "es-ES"


async def reserve(store: Store, interaction: InteractionToken | None = INTERACTION) -> JobRecord:
    return await store.reserve(
        OWNER, "{}", 125_000, 1000, interaction=interaction, roles=ROLES, locale=LOCALE
    )


async def walk_to(store: Store, job: JobRecord, to: JobState) -> JobRecord:
    for state in PATHS[to]:
        job = await move(store, job.id, state)
    return job


# --- the stores ---------------------------------------------------------------------------------
async def test_the_token_round_trips_with_the_job(store: Store) -> None:
    job = await reserve(store)
    assert job.interaction == INTERACTION
    assert job.interaction_expires_at is not None
    assert job.interaction_expires_at.utcoffset() == timedelta(0)
    assert await store.get_job(job.id) == job
    [unfinished] = await store.unfinished_jobs()
    assert unfinished.interaction == INTERACTION
    claimed = await store.claim(job.id, "process-b", 30.0)
    assert claimed is not None and claimed.interaction == INTERACTION


@pytest.mark.parametrize("state", [JobState.SUBMITTED, JobState.CLOSED])
async def test_the_members_locale_and_roles_stay_with_the_job(
    store: Store, state: JobState
) -> None:
    """What the bot says to the member depends on them: unlike the token, they outlast the job
    (a withheld video goes to the member's direct messages, in their language, at any time)."""
    job = await walk_to(store, await reserve(store), state)
    assert (job.member_locale, job.member_roles) == (LOCALE, ROLES)
    assert await store.get_job(job.id) == job
    plain = await store.reserve(OWNER, "{}", 125_000, 1000)  # `wanbot generate`: no Discord
    assert (plain.member_locale, plain.member_roles) == (None, ())
    assert await store.get_job(plain.id) == plain


async def test_the_schema_refuses_roles_not_in_a_list(store: Store, database_url: str) -> None:
    job = await reserve(store)
    with pytest.raises(INTEGRITY_ERRORS, match=CHECK_FAILED):
        await execute_raw(database_url, f"UPDATE jobs SET member_roles = '7' WHERE id = {job.id}")
    assert await store.get_job(job.id) == job


async def test_a_job_without_an_interaction_has_no_token(store: Store) -> None:
    job = await reserve(store, interaction=None)
    assert job.interaction is None
    assert (job.interaction_app_id, job.interaction_token, job.interaction_expires_at) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize("state", [JobState.SUBMITTED, JobState.POSTING, JobState.FAILED])
async def test_the_token_stays_while_the_job_is_unfinished(store: Store, state: JobState) -> None:
    job = await walk_to(store, await reserve(store), state)
    assert job.interaction == INTERACTION
    assert (await store.get_job(job.id)) == job


@pytest.mark.parametrize("state", [JobState.DELIVERED, JobState.CLOSED])
async def test_a_final_state_clears_the_token(store: Store, state: JobState) -> None:
    job = await walk_to(store, await reserve(store), state)
    assert job.state is state and job.interaction is None
    stored = await store.get_job(job.id)
    assert stored is not None and stored.interaction is None
    assert stored.interaction_token is None and stored.interaction_app_id is None


async def test_a_refused_token_is_forgotten_without_changing_the_state(store: Store) -> None:
    job = await walk_to(store, await reserve(store), JobState.SUBMITTED)
    await store.forget_interaction(job.id)
    stored = await store.get_job(job.id)
    assert stored is not None and stored.interaction is None
    assert stored.state is JobState.SUBMITTED and stored.lease_owner == job.lease_owner


async def test_the_token_is_never_in_a_repr(store: Store) -> None:
    job = await reserve(store)
    assert job.interaction_token == TOKEN
    for shown in (repr(job), str(job), repr(job.interaction), repr([job])):
        assert TOKEN not in shown
    assert str(APP_ID) in repr(job)  # the rest is shown as before


async def test_the_schema_refuses_half_a_token(store: Store, database_url: str) -> None:
    job = await reserve(store)
    with pytest.raises(INTEGRITY_ERRORS, match=CHECK_FAILED):
        await execute_raw(
            database_url, f"UPDATE jobs SET interaction_token = NULL WHERE id = {job.id}"
        )
    assert await store.get_job(job.id) == job


async def test_the_schema_refuses_a_token_on_a_final_job(store: Store, database_url: str) -> None:
    job = await walk_to(store, await reserve(store), JobState.CLOSED)
    with pytest.raises(INTEGRITY_ERRORS, match=CHECK_FAILED):
        await execute_raw(
            database_url,
            f"UPDATE jobs SET interaction_app_id = 1, interaction_token = 'x', "
            f"interaction_expires_at = created_at WHERE id = {job.id}",
        )
    assert await store.get_job(job.id) == job


@pytest.mark.postgres
async def test_migrate_db_carries_the_token_over(tmp_path: Path, fresh_postgres_url: str) -> None:
    source = tmp_path / "wanbot.db"
    async with await SqliteStorage.open(str(source), POLICY) as sqlite_store:
        unfinished = await reserve(sqlite_store)
        finished = await walk_to(sqlite_store, await reserve(sqlite_store), JobState.CLOSED)
    await transfer_database(str(source), fresh_postgres_url)
    async with await PostgresStorage.open(fresh_postgres_url, POLICY) as pg_store:
        assert await pg_store.get_job(unfinished.id) == unfinished
        assert await pg_store.get_job(finished.id) == finished
        moved = await pg_store.get_job(unfinished.id)
        assert moved is not None and moved.interaction == INTERACTION
        assert (moved.member_locale, moved.member_roles) == (LOCALE, ROLES)


# --- end to end: the real bot, restarted mid-job ------------------------------------------------
@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as world:
        yield world


def stored_job(world: World) -> dict[str, object]:
    """Job 1 as the database holds it (any process would read it so)."""
    with contextlib.closing(sqlite3.connect(database_path(world.settings.database_url))) as db:
        db.row_factory = sqlite3.Row
        return dict(db.execute("SELECT * FROM jobs WHERE id = 1").fetchone())


async def stop_mid_job(world: World) -> None:
    """A member asks for a video; the bot stops (cleanly) while WaveSpeed generates it."""
    world.wavespeed.next_task(processing_s=1.5)
    async with world.bot() as first_bot:
        interaction = await world.video()
        await interaction.wait_for(
            lambda i: i.original is not None and "left this period" in i.original.content
        )
        await wait_until_async(lambda: job_state(first_bot.services.storage, 1), JobState.SUBMITTED)
    assert not [m for m in world.discord.messages.values() if has_video(m)]


async def test_a_restarted_bot_answers_through_the_original_interaction(world: World) -> None:
    await stop_mid_job(world)
    [interaction] = world.discord.interactions.values()
    job = stored_job(world)
    assert job["interaction_token"] == interaction.token  # kept with the job
    edits_before = len(interaction.original.history)

    async with world.bot() as bot:
        await interaction.wait_for(
            lambda i: i.original is not None and "Done" in i.original.content, timeout=10
        )
        [video] = interaction.followups  # a follow-up of the original interaction
        assert has_video(video) and not video.flags & 64  # public, in the channel
        assert f"<@{MEMBER}>" in video.content and video.channel_id == CHANNEL
        assert len(interaction.original.history) > edits_before  # the status went on
        assert "✅ Done" in interaction.original.content
        await wait_until(lambda: not bot.services.runner._tasks)
        assert [m for m in world.discord.messages.values() if has_video(m)] == [video]
        assert not world.discord.requests_to("POST", rf"/channels/{CHANNEL}/messages")
        assert [k for k, _ in await ledger_kinds(bot)] == ["reserve", "charge"]
    job = stored_job(world)
    assert job["state"] == JobState.DELIVERED and job["result_message_id"] == video.id
    assert job["interaction_token"] is None  # delivered: the credential is gone


async def test_a_token_discord_refuses_sends_the_video_to_the_channel(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await stop_mid_job(world)
    [interaction] = world.discord.interactions.values()
    world.discord.advance_time(16 * 60)  # Discord's clock: the token is dead

    async with world.bot() as bot:
        result = await world.discord.wait_for_message(has_video, timeout=10)
        assert result not in interaction.followups and result.channel_id == CHANNEL
        assert f"<@{MEMBER}>" in result.content
        await wait_until(lambda: not bot.services.runner._tasks)
        assert [m for m in world.discord.messages.values() if has_video(m)] == [result]
        # tried once with the token, which Discord refused; forgotten then, never tried again
        refused = [r for r in world.discord.requests if r.status == 401]
        assert len(refused) == 1
        assert [k for k, _ in await ledger_kinds(bot)] == ["reserve", "charge"]
    assert stored_job(world)["interaction_token"] is None
    assert "interaction token no longer valid" in caplog.text
    # a credential: never logged by the bot (the fake Discord's own access log aside)
    logged = [r.getMessage() for r in caplog.records if r.name != "aiohttp.access"]
    assert not [line for line in logged if interaction.token in line]


async def test_a_token_past_its_stored_expiry_is_not_used(world: World) -> None:
    await stop_mid_job(world)
    [interaction] = world.discord.interactions.values()
    # By the bot's own clock the token has run out (Discord would still take it): not tried.
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="microseconds")
    await execute_raw(
        world.settings.database_url,
        f"UPDATE jobs SET interaction_expires_at = '{past}' WHERE id = 1",
    )
    webhook_calls = len(world.discord.requests_to("POST", r"/webhooks/\d+/[^/]+")) + len(
        world.discord.requests_to("PATCH", r"/webhooks/\d+/[^/]+/messages/@original")
    )

    async with world.bot() as bot:
        result = await world.discord.wait_for_message(has_video, timeout=10)
        assert result not in interaction.followups and result.channel_id == CHANNEL
        await wait_until(lambda: not bot.services.runner._tasks)
        after = len(world.discord.requests_to("POST", r"/webhooks/\d+/[^/]+")) + len(
            world.discord.requests_to("PATCH", r"/webhooks/\d+/[^/]+/messages/@original")
        )
        assert after == webhook_calls  # the stored expiry alone kept the bot off the token
        assert [k for k, _ in await ledger_kinds(bot)] == ["reserve", "charge"]


async def test_a_failure_after_a_restart_is_told_in_the_private_status(world: World) -> None:
    world.wavespeed.next_task("failed", error_code=1200, processing_s=1.5)
    async with world.bot() as first_bot:
        interaction = await world.video()
        await wait_until_async(lambda: job_state(first_bot.services.storage, 1), JobState.SUBMITTED)

    async with world.bot() as bot:
        await interaction.wait_for(
            lambda i: i.original is not None and "refunded" in i.original.content, timeout=10
        )
        await wait_until_async(lambda: job_state(bot.services.storage, 1), JobState.CLOSED)
        assert not world.discord.requests_to("POST", rf"/channels/{CHANNEL}/messages")
        assert [k for k, _ in await ledger_kinds(bot)] == ["reserve", "refund"]
    job = stored_job(world)
    assert job["failure_kind"] == FailureKind.MODERATION.value  # code 1200
    assert job["interaction_token"] is None


async def test_a_withheld_video_goes_privately_to_the_member_after_a_restart(
    world: World,
) -> None:
    world.wavespeed.next_task(nsfw=True, processing_s=1.5)
    async with world.bot() as first_bot:
        await first_bot.services.storage.set_guild_setting(GUILD, "nsfw_policy", "withhold")
        interaction = await world.video()
        await wait_until_async(lambda: job_state(first_bot.services.storage, 1), JobState.SUBMITTED)

    async with world.bot() as bot:
        await interaction.wait_for(
            lambda i: i.original is not None and "Done" in i.original.content, timeout=10
        )
        [private] = interaction.followups  # an ephemeral follow-up: only the member sees it
        assert has_video(private) and private.flags & 64 and not private.components
        notice = await world.discord.wait_for_message(lambda m: "not posted here" in m.content)
        assert not has_video(notice)
        await wait_until_async(lambda: job_state(bot.services.storage, 1), JobState.DELIVERED)


async def test_a_repeated_post_skips_the_follow_up_so_discord_can_dedupe_it(
    world: World,
) -> None:
    """A restart in `posting` whose earlier attempt can't be found (the channel can't be read):
    the repeat goes out as a channel message, whose nonce lets Discord answer it with the post
    that did land; a follow-up has no nonce and would post the video twice."""
    world.discord.fail_next("POST", FOLLOW_UP, 400, 50035, "Invalid Form Body")  # not the token
    held = world.discord.hold_next("POST", CHANNEL_POST)  # made; its answer never arrives
    async with world.bot() as first_bot:
        interaction = await world.video()
        await world.discord.wait_for_fault(held, timeout=10)
        await wait_until_async(lambda: job_state(first_bot.services.storage, 1), JobState.POSTING)
    world.discord.clear_faults()
    world.discord.fail_next("GET", CHANNEL_POST, 403, 50001, "Missing Access", times=10)
    assert stored_job(world)["interaction_token"] == interaction.token  # still usable

    async with world.bot() as bot:
        await wait_until_async(lambda: job_state(bot.services.storage, 1), JobState.DELIVERED)
        [video] = [m for m in world.discord.messages.values() if has_video(m)]
        assert stored_job(world)["result_message_id"] == video.id
        assert interaction.followups == []
        await interaction.wait_for(
            lambda i: i.original is not None and "Done" in i.original.content, timeout=10
        )
        assert [k for k, _ in await ledger_kinds(bot)] == ["reserve", "charge"]
