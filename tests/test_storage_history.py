"""Storage.history and Storage.history_count (/history's pages) on both backends: a member's jobs
in one server, newest first, a page at a time, whatever their state."""

from __future__ import annotations

from bot.domain.budget import SERVER_SCOPE_MEMBER_ID
from bot.domain.job import JobOwner, JobRecord
from bot.domain.lifecycle import FailureKind, JobState, Settlement
from storage import PostgresStorage, SqliteStorage

Store = SqliteStorage | PostgresStorage

GUILD = 1001
OTHER_GUILD = 1002
CHANNEL = 2002
MEMBER = 3003
OTHER = 3004
PRICE = 125_000
PLENTY = 10**12


async def lift_budgets(store: Store, guild_id: int = GUILD) -> None:
    """Allowances no test here reaches, for the member, the other member and the server."""
    for member_id in (MEMBER, OTHER, SERVER_SCOPE_MEMBER_ID):
        await store.set_allowance(guild_id, member_id, PLENTY, actor_id=1)


async def job(store: Store, member_id: int = MEMBER, guild_id: int = GUILD) -> JobRecord:
    """A freshly reserved job of `member_id` in `guild_id`."""
    return await store.reserve(
        JobOwner(guild_id, CHANNEL, member_id), '{"prompt": "a cat"}', PRICE, 1000
    )


async def test_an_empty_history(store: Store) -> None:
    assert await store.history(GUILD, MEMBER, offset=0, limit=10) == []
    assert await store.history_count(GUILD, MEMBER) == 0


async def test_pages_newest_first_of_one_member_in_one_server(store: Store) -> None:
    await lift_budgets(store)
    await lift_budgets(store, OTHER_GUILD)
    mine = []
    for index in range(23):
        mine.append((await job(store)).id)
        if index % 5 == 0:  # others' jobs in between: never on this member's pages
            await job(store, OTHER)
            await job(store, guild_id=OTHER_GUILD)
    newest_first = mine[::-1]

    pages = [
        [j.id for j in await store.history(GUILD, MEMBER, offset=offset, limit=10)]
        for offset in (0, 10, 20, 30)
    ]
    assert pages == [newest_first[:10], newest_first[10:20], newest_first[20:], []]
    assert [j.id for j in await store.history(GUILD, MEMBER, offset=3, limit=4)] == (
        newest_first[3:7]
    )
    assert await store.history_count(GUILD, MEMBER) == 23
    assert await store.history_count(GUILD, OTHER) == 5
    assert await store.history_count(OTHER_GUILD, MEMBER) == 5
    assert await store.history_count(OTHER_GUILD, OTHER) == 0


async def test_every_state_is_listed_with_its_settlement(store: Store) -> None:
    await lift_budgets(store)
    delivered = await job(store)
    for state in (JobState.QUEUED, JobState.SUBMITTING):
        await store.advance(delivered.id, state)
    await store.advance(delivered.id, JobState.SUBMITTED, prediction_id="pred-1")
    for state in (JobState.READY, JobState.POSTING):
        await store.advance(delivered.id, state)
    await store.advance(
        delivered.id, JobState.DELIVERED, result_channel_id=2**62 + 5, result_message_id=2**62 + 6
    )
    refunded = await job(store)
    await store.advance(refunded.id, JobState.FAILED, failure_kind=FailureKind.MODERATION)
    await store.advance(refunded.id, JobState.CLOSED)
    in_progress = await job(store)

    listed = await store.history(GUILD, MEMBER, offset=0, limit=10)
    assert [j.id for j in listed] == [in_progress.id, refunded.id, delivered.id]
    assert listed == [await store.get_job(j.id) for j in listed]  # whole records
    assert [(j.state, j.settlement) for j in listed] == [
        (JobState.RESERVED, None),
        (JobState.CLOSED, Settlement.REFUND),
        (JobState.DELIVERED, Settlement.CHARGE),
    ]
    assert listed[1].failure_kind is FailureKind.MODERATION
    assert (listed[2].result_channel_id, listed[2].result_message_id) == (2**62 + 5, 2**62 + 6)
    assert await store.history_count(GUILD, MEMBER) == 3
