"""Role tiers on both stores (SQLite files and the test PostgreSQL server): a member's allowance
is their own if an admin set one, else the highest tier among the roles they hold, else the
default — read by `member_balance` and by `reserve` inside its transaction, and always what the
pure rule (bot.domain.budget.effective_allowance) says. Every tier change is an append-only row
with who made it; the database refuses to change or delete one."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import pytest

from bot.domain.budget import (
    SERVER_SCOPE_MEMBER_ID,
    Allowance,
    AllowanceSource,
    BudgetExceeded,
    BudgetPeriod,
    BudgetPolicy,
    effective_allowance,
)
from bot.domain.job import JobOwner, JobRecord
from storage import PostgresStorage, SqliteStorage, open_storage
from tests.storage_backends import INTEGRITY_ERRORS, POLICY, START, Clock, execute_raw

Store = SqliteStorage | PostgresStorage

GUILD = 1001
OTHER_GUILD = 1002
CHANNEL = 2002
MEMBER = 3003
OTHER = 3004
ADMIN = 4004
# Snowflake-sized role ids (64 bits), none of them a member's id.
BRONZE = 1_300_000_000_000_000_001
SILVER = 1_300_000_000_000_000_002
GOLD = 1_300_000_000_000_000_003
PRICE = 125_000  # 5 s, 720p, silent
PLENTY = 10**12
DEFAULT = POLICY.member_allowance  # $1.00: eight videos at PRICE


def owner(member_id: int = MEMBER, guild_id: int = GUILD) -> JobOwner:
    return JobOwner(guild_id, CHANNEL, member_id)


async def allowance(store: Store, member_id: int = MEMBER, *roles: int) -> Allowance:
    """The member's allowance and its source, as member_balance reports it."""
    balance = await store.member_balance(GUILD, member_id, roles=roles)
    return Allowance(balance.allowance, balance.source, balance.tier_role_id)


async def affordable(store: Store, member_id: int, roles: tuple[int, ...]) -> int:
    """How many PRICE videos `reserve` lets the member hold before refusing (their in-flight
    limit out of the way); the refusal is the member's."""
    count = 0
    while True:
        try:
            await store.reserve(owner(member_id), "{}", PRICE, 10**6, roles=roles)
        except BudgetExceeded as refused:
            assert refused.scope == "member"
            return count
        count += 1


# --- the rule -------------------------------------------------------------------------------
def test_the_rule() -> None:
    tiers = {BRONZE: 2_000_000, SILVER: 3_000_000, GOLD: 3_000_000}
    own, tier, default = AllowanceSource.OWN, AllowanceSource.TIER, AllowanceSource.DEFAULT
    assert effective_allowance(None, tiers, (), DEFAULT) == Allowance(DEFAULT, default)
    assert effective_allowance(None, tiers, (99,), DEFAULT) == Allowance(DEFAULT, default)
    assert effective_allowance(None, tiers, (BRONZE,), DEFAULT) == Allowance(
        2_000_000, tier, BRONZE
    )
    # the highest tier; a tie names the smaller role id
    assert effective_allowance(None, tiers, (GOLD, BRONZE, SILVER), DEFAULT) == Allowance(
        3_000_000, tier, SILVER
    )
    # a tier below the default still applies: it is the role's allowance
    assert effective_allowance(None, {BRONZE: 1}, (BRONZE,), DEFAULT) == Allowance(1, tier, BRONZE)
    # the member's own allowance wins over every tier, even when lower, even when zero
    assert effective_allowance(0, tiers, (GOLD,), DEFAULT) == Allowance(0, own)


# --- the stores -----------------------------------------------------------------------------
async def test_a_tier_is_the_allowance_of_members_holding_its_role(store: Store) -> None:
    await store.set_allowance(GUILD, SERVER_SCOPE_MEMBER_ID, PLENTY, actor_id=ADMIN)
    await store.set_role_allowance(GUILD, SILVER, 2_000_000, actor_id=ADMIN)

    assert await allowance(store, MEMBER, SILVER) == Allowance(
        2_000_000, AllowanceSource.TIER, SILVER
    )
    assert await allowance(store, MEMBER) == Allowance(DEFAULT, AllowanceSource.DEFAULT)
    assert await allowance(store, MEMBER, BRONZE) == Allowance(DEFAULT, AllowanceSource.DEFAULT)
    # another server's tiers are its own
    other_server = await store.member_balance(OTHER_GUILD, MEMBER, roles=[SILVER])
    assert (other_server.allowance, other_server.source) == (DEFAULT, AllowanceSource.DEFAULT)

    # reserve uses it: sixteen videos where the default affords eight
    assert await affordable(store, MEMBER, (SILVER,)) == 16
    # and the same member without the role (it was taken away) can spend no more
    assert await affordable(store, MEMBER, ()) == 0
    balance = await store.member_balance(GUILD, MEMBER, roles=[SILVER])
    assert (balance.held, balance.available) == (2_000_000, 0)
    assert await store.audit() == []


async def test_the_highest_tier_applies(store: Store) -> None:
    await store.set_role_allowance(GUILD, BRONZE, 500_000, actor_id=ADMIN)
    await store.set_role_allowance(GUILD, GOLD, 3_000_000, actor_id=ADMIN)
    await store.set_role_allowance(GUILD, SILVER, 2_000_000, actor_id=ADMIN)

    assert await allowance(store, MEMBER, BRONZE, SILVER, GOLD) == Allowance(
        3_000_000, AllowanceSource.TIER, GOLD
    )
    assert await allowance(store, MEMBER, BRONZE, SILVER) == Allowance(
        2_000_000, AllowanceSource.TIER, SILVER
    )
    # a tier lower than the default is still the role's allowance
    assert await allowance(store, MEMBER, BRONZE) == Allowance(
        500_000, AllowanceSource.TIER, BRONZE
    )
    # equal tiers: the smaller role id is named, on both stores
    await store.set_role_allowance(GUILD, BRONZE, 3_000_000, actor_id=ADMIN)
    assert await allowance(store, MEMBER, GOLD, BRONZE) == Allowance(
        3_000_000, AllowanceSource.TIER, BRONZE
    )


async def test_the_members_own_allowance_overrides_every_tier(store: Store) -> None:
    await store.set_role_allowance(GUILD, GOLD, 3_000_000, actor_id=ADMIN)
    await store.set_allowance(GUILD, MEMBER, 2 * PRICE, actor_id=ADMIN)

    assert await allowance(store, MEMBER, GOLD) == Allowance(2 * PRICE, AllowanceSource.OWN)
    assert await allowance(store, OTHER, GOLD) == Allowance(3_000_000, AllowanceSource.TIER, GOLD)
    assert await affordable(store, MEMBER, (GOLD,)) == 2

    # the server's budget is its own: roles never count for it
    await store.set_role_allowance(GUILD, GUILD + 1, 7, actor_id=ADMIN)
    server = await store.server_balance(GUILD)
    assert (server.allowance, server.source) == (POLICY.server_allowance, AllowanceSource.DEFAULT)


async def test_a_cleared_tier_no_longer_counts(store: Store, clock: Clock) -> None:
    await store.set_role_allowance(GUILD, GOLD, 3_000_000, actor_id=ADMIN)
    await store.set_role_allowance(GUILD, SILVER, 2_000_000, actor_id=ADMIN)
    clock.advance(minutes=1)
    await store.set_role_allowance(GUILD, GOLD, None, actor_id=ADMIN + 1)

    assert await allowance(store, MEMBER, GOLD, SILVER) == Allowance(
        2_000_000, AllowanceSource.TIER, SILVER
    )
    assert await allowance(store, MEMBER, GOLD) == Allowance(DEFAULT, AllowanceSource.DEFAULT)
    assert [tier.role_id for tier in await store.role_tiers(GUILD)] == [SILVER]

    # set again: the latest row wins
    clock.advance(minutes=1)
    await store.set_role_allowance(GUILD, GOLD, 1_500_000, actor_id=ADMIN + 2)
    assert await allowance(store, MEMBER, GOLD) == Allowance(1_500_000, AllowanceSource.TIER, GOLD)
    tiers = await store.role_tiers(GUILD)
    assert [(t.role_id, t.amount_micro, t.actor_id) for t in tiers] == [
        (SILVER, 2_000_000, ADMIN),
        (GOLD, 1_500_000, ADMIN + 2),
    ]
    assert tiers[1].set_at == START + timedelta(minutes=2)
    assert await store.role_tiers(OTHER_GUILD) == []


async def test_the_stores_follow_the_rule(store: Store, clock: Clock) -> None:
    """Random tier changes, own allowances and role sets: the stores' SQL says what the pure rule
    says, and reserve lets exactly that much be held."""
    rng = random.Random(20261125)
    roles = (BRONZE, SILVER, GOLD, 1_300_000_000_000_000_004)
    members = (MEMBER, OTHER, OTHER + 1)
    tiers: dict[int, int] = {}
    own: dict[int, int] = {}
    await store.set_allowance(GUILD, SERVER_SCOPE_MEMBER_ID, PLENTY, actor_id=ADMIN)
    for _ in range(60):
        clock.advance(seconds=1)
        match rng.randrange(4):
            case 0 | 1:
                role, amount = rng.choice(roles), rng.randrange(0, 20) * 50_000
                await store.set_role_allowance(GUILD, role, amount, actor_id=ADMIN)
                tiers[role] = amount
            case 2:
                role = rng.choice(roles)
                await store.set_role_allowance(GUILD, role, None, actor_id=ADMIN)
                tiers.pop(role, None)
            case 3:
                member, amount = rng.choice(members), rng.randrange(0, 20) * 50_000
                await store.set_allowance(GUILD, member, amount, actor_id=ADMIN)
                own[member] = amount
        for member in members:
            held = tuple(role for role in roles if rng.random() < 0.5)
            expected = effective_allowance(own.get(member), tiers, held, DEFAULT)
            assert await allowance(store, member, *held) == expected
    expected_tiers = sorted(tiers.items(), key=lambda tier: (-tier[1], tier[0]))
    assert [(t.role_id, t.amount_micro) for t in await store.role_tiers(GUILD)] == expected_tiers

    held = roles[:3]
    expected = effective_allowance(None, tiers, held, DEFAULT)
    assert await affordable(store, 9999, held) == expected.amount // PRICE


@pytest.mark.parametrize("instances", [1, 2], ids=["one-store", "two-stores"])
async def test_concurrent_reserves_never_overspend_a_tier(
    database_url: str, clock: Clock, instances: int
) -> None:
    """100 reservations at once by a member whose tier affords exactly 37 (the default would
    afford 8): 37 are written, 63 refused, and nothing is overspent."""
    tier = 37 * PRICE + PRICE - 1
    policy = BudgetPolicy(
        member_allowance=DEFAULT, server_allowance=PLENTY, period=BudgetPeriod.DAY
    )
    stores = [await open_storage(database_url, policy, clock=clock) for _ in range(instances)]
    try:
        await stores[0].set_role_allowance(GUILD, BRONZE, DEFAULT // 2, actor_id=ADMIN)
        await stores[0].set_role_allowance(GUILD, SILVER, tier, actor_id=ADMIN)
        results = await asyncio.gather(
            *(
                stores[i % instances].reserve(owner(), "{}", PRICE, 1000, roles=[BRONZE, SILVER])
                for i in range(100)
            ),
            return_exceptions=True,
        )
        jobs = [result for result in results if isinstance(result, JobRecord)]
        refusals = [result for result in results if isinstance(result, BudgetExceeded)]
        assert (len(jobs), len(refusals)) == (37, 63)
        assert {refusal.scope for refusal in refusals} == {"member"}
        assert {refusal.balance.allowance for refusal in refusals} == {tier}

        balance = await stores[-1].member_balance(GUILD, MEMBER, roles=[SILVER])
        assert (balance.allowance, balance.held, balance.available) == (tier, 37 * PRICE, PRICE - 1)
        ledger = await stores[-1].ledger(GUILD)
        assert sum(entry.amount_micro for entry in ledger if entry.kind == "reserve") == 37 * PRICE
        assert await stores[-1].audit() == []
    finally:
        for store in stores:
            await store.close()


# --- append-only, and what the database refuses ---------------------------------------------
def tier_insert(role_id: object, amount: object) -> str:
    return (
        "INSERT INTO role_allowances (guild_id, role_id, amount_micro, actor_id, created_at) "
        f"VALUES (1, {role_id}, {amount}, 1, '2026-11-25T12:00:00+00:00')"
    )


async def test_tier_rows_are_append_only(store: Store, database_url: str) -> None:
    await store.set_role_allowance(GUILD, GOLD, 3_000_000, actor_id=ADMIN)
    await store.set_role_allowance(GUILD, GOLD, None, actor_id=ADMIN)
    before = await store.role_tiers(GUILD)
    for statement in [
        "UPDATE role_allowances SET amount_micro = 9000000",
        "UPDATE role_allowances SET amount_micro = 0 WHERE amount_micro IS NULL",
        "DELETE FROM role_allowances",
        "DELETE FROM role_allowances WHERE amount_micro IS NULL",
        tier_insert(GOLD, -1),  # negative
        tier_insert(0, 1),  # not a role
    ]:
        with pytest.raises(INTEGRITY_ERRORS):
            await execute_raw(database_url, statement)
    assert await store.role_tiers(GUILD) == before == []
    assert await allowance(store, MEMBER, GOLD) == Allowance(DEFAULT, AllowanceSource.DEFAULT)


async def test_invalid_tiers_write_nothing(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.set_role_allowance(GUILD, 0, 1_000_000, actor_id=ADMIN)
    with pytest.raises(ValueError):
        await store.set_role_allowance(GUILD, GOLD, -1, actor_id=ADMIN)
    with pytest.raises(TypeError):
        await store.set_role_allowance(GUILD, GOLD, 1.5, actor_id=ADMIN)  # type: ignore[arg-type]
    assert await store.role_tiers(GUILD) == []
    assert await store.ledger(GUILD) == []  # tiers never write ledger rows
