"""Money alerts below Discord: the pure rules (bot.domain.alerts), WaveSpeedClient.balance()'s
reading of the answer, and Storage.claim_alert on both backends, concurrency included."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.alerts import (
    BalanceReading,
    LowBalanceStep,
    budget_period_of,
    can_pay,
    low_balance_step,
    spend_alert_key,
    thresholds_crossed,
    thresholds_reached,
    topped_up,
)
from bot.domain.budget import Balance, BudgetPeriod
from bot.testing.fake_wavespeed import FakeWaveSpeed
from bot.wavespeed import AuthError, WaveSpeedClient, WaveSpeedError
from storage import PostgresStorage, SqliteStorage, open_storage
from tests.conftest import TEST_API_KEY
from tests.storage_backends import POLICY, Clock

Store = SqliteStorage | PostgresStorage
GUILD = 4242
OTHER_GUILD = 4343


# --- spend thresholds -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spent", "budget", "reached"),
    [
        (0, 500_000, ()),
        (249_999, 500_000, ()),
        (250_000, 500_000, (50,)),  # exactly half: reached
        (399_999, 500_000, (50,)),
        (400_000, 500_000, (50, 80)),
        (500_000, 500_000, (50, 80, 100)),
        (900_000, 500_000, (50, 80, 100)),  # over (a lowered budget): all of them
        (1, 3, ()),  # 33 %: integer arithmetic, no rounding up
        (2, 3, (50,)),
        (100, 0, ()),  # no budget: nothing to measure against
        (100, -5, ()),  # a negative grant took more than the allowance
    ],
)
def test_thresholds_reached(spent: int, budget: int, reached: tuple[int, ...]) -> None:
    assert thresholds_reached(spent, budget) == reached


@pytest.mark.parametrize(
    ("before", "after", "crossed"),
    [
        (0, 250_000, (50,)),
        (250_000, 400_000, (80,)),
        (400_000, 500_000, (100,)),
        (0, 500_000, (50, 80, 100)),  # one charge past all three
        (100_000, 200_000, ()),
        (250_000, 300_000, ()),  # 50 was reached before
    ],
)
def test_thresholds_crossed(before: int, after: int, crossed: tuple[int, ...]) -> None:
    assert thresholds_crossed(before, after, 500_000) == crossed


def _balance(resets_at: datetime | None) -> Balance:
    return Balance(allowance=1, granted=0, spent=0, held=0, resets_at=resets_at)


@pytest.mark.parametrize(
    ("period", "resets_at", "key"),
    [
        (BudgetPeriod.DAY, datetime(2026, 11, 26, tzinfo=UTC), "2026-11-25"),
        (BudgetPeriod.WEEK, datetime(2026, 11, 30, tzinfo=UTC), "2026-W48"),  # a Monday
        (BudgetPeriod.MONTH, datetime(2026, 12, 1, tzinfo=UTC), "2026-11"),
        (BudgetPeriod.MONTH, datetime(2027, 1, 1, tzinfo=UTC), "2026-12"),
        (BudgetPeriod.NONE, None, "all"),
    ],
)
def test_the_period_comes_from_the_balance_reset(
    period: BudgetPeriod, resets_at: datetime | None, key: str
) -> None:
    assert budget_period_of(_balance(resets_at), period) == key
    assert spend_alert_key(key, 80) == f"alert:{key}:80"


# --- low balance and top-ups ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("balance", "threshold", "warned", "step"),
    [
        (4_990_000, 5_000_000, False, LowBalanceStep.WARN),
        (4_990_000, 5_000_000, True, LowBalanceStep.NOTHING),  # once per drop
        (5_000_000, 5_000_000, True, LowBalanceStep.REARM),  # back at the level: re-armed
        (9_000_000, 5_000_000, True, LowBalanceStep.REARM),
        (9_000_000, 5_000_000, False, LowBalanceStep.NOTHING),
        (0, None, False, LowBalanceStep.NOTHING),  # off
        (0, None, True, LowBalanceStep.REARM),  # switched off after a warning: forget it
        (-1, 1, False, LowBalanceStep.WARN),  # an account in debt is below any level
    ],
)
def test_low_balance_step(
    balance: int, threshold: int | None, warned: bool, step: LowBalanceStep
) -> None:
    assert low_balance_step(balance, threshold, warned) is step


def test_a_drop_warns_once_and_a_rise_rearms() -> None:
    warned, warnings = False, 0
    for balance in (9, 4, 3, 2, 6, 7, 1, 0, 8):  # two drops below 5
        step = low_balance_step(balance, 5, warned)
        warnings += step is LowBalanceStep.WARN
        warned = (warned or step is LowBalanceStep.WARN) and step is not LowBalanceStep.REARM
    assert warnings == 2


def test_topped_up_only_when_the_balance_rises() -> None:
    assert topped_up(100, 200)
    assert not topped_up(200, 100) and not topped_up(100, 100)
    assert not topped_up(None, 100)  # the first reading ever: nothing to compare


def test_a_reading_pays_or_not_and_round_trips() -> None:
    reading = BalanceReading(250_000, datetime(2026, 11, 25, 12, 30, tzinfo=UTC))
    assert reading.can_pay(250_000) and not reading.can_pay(250_001)
    assert can_pay(None, 10**9)  # never read: WaveSpeed decides
    assert not can_pay(reading, 250_001)
    assert reading.encode() == "250000 2026-11-25T12:30:00+00:00"
    assert BalanceReading.decode(reading.encode()) == reading


@pytest.mark.parametrize("junk", [None, "", "abc", "12", "12 yesterday", "1.5 2026-11-25T12:30:00"])
def test_a_junk_reading_is_no_reading(junk: str | None) -> None:
    assert BalanceReading.decode(junk) is None
    assert BalanceReading.decode("12 2026-11-25T12:30:00") is None  # naive: not a moment


# --- WaveSpeedClient.balance() --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "micro"),
    [
        (100.0, 100_000_000),
        (7, 7_000_000),
        (1.005, 1_005_000),  # as a float 1.005 × 10⁶ is 1004999.99…: read as a decimal, exact
        (0.1, 100_000),
        ("12.345678", 12_345_678),
        (" 42 ", 42_000_000),
        ("0.0000019", 1),  # past micro-dollars: rounded down, never up
        ("-0.50", -500_000),  # an account in debt
        (0, 0),
    ],
)
async def test_balance_reads_a_number_or_a_numeric_string_exactly(
    fake_wavespeed: FakeWaveSpeed,
    wavespeed_client: WaveSpeedClient,
    answer: float | int | str,
    micro: int,
) -> None:
    fake_wavespeed.balance_usd = answer
    assert await wavespeed_client.balance() == micro
    assert fake_wavespeed.calls("balance")[-1].has_auth


@pytest.mark.parametrize("answer", ["abc", "", "NaN", "Infinity", "1,000", None, True])
async def test_balance_refuses_garbage_with_a_clear_error(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient, answer: object
) -> None:
    fake_wavespeed.balance_usd = answer  # type: ignore[assignment]
    with pytest.raises(WaveSpeedError, match=r"^WaveSpeed's balance answer has no readable amount"):
        await wavespeed_client.balance()


@pytest.mark.parametrize(
    "body",
    [
        {"code": 200, "message": "success", "data": {"balance": [1]}},
        {"code": 200, "message": "success", "data": {"amount": 5}},  # not where it is read
        {"code": 200, "message": "success", "data": None},
        {"code": 200, "message": "success", "data": {"balance": "1e999999999"}},
        {"unexpected": True},
    ],
)
async def test_balance_refuses_an_answer_without_an_amount(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient, body: dict[str, object]
) -> None:
    fake_wavespeed.fail_next("balance", 200, body=body)
    with pytest.raises(WaveSpeedError, match="no readable amount"):
        await wavespeed_client.balance()


async def test_balance_refuses_an_html_page(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    fake_wavespeed.fail_next("balance", 200, raw=True)
    with pytest.raises(WaveSpeedError, match="no readable amount"):
        await wavespeed_client.balance()


async def test_balance_retries_like_a_get_and_check_access_does_not(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    fake_wavespeed.fail_next("balance", 503)
    assert await wavespeed_client.balance() == 100_000_000
    assert len(fake_wavespeed.calls("balance")) == 2
    fake_wavespeed.fail_next("balance", 503)
    assert await wavespeed_client.check_access() == 503  # one attempt: a probe learns at once
    assert await wavespeed_client.check_access() == 200


async def test_balance_with_a_refused_key_is_an_auth_error(fake_wavespeed: FakeWaveSpeed) -> None:
    assert TEST_API_KEY != "not-the-key"  # the fake takes only the fixture's key
    async with WaveSpeedClient("not-the-key", fake_wavespeed.base_url) as client:
        with pytest.raises(AuthError):
            await client.balance()


# --- Storage.claim_alert -------------------------------------------------------------------------
async def test_claim_alert_is_true_once_until_the_marker_is_deleted(store: Store) -> None:
    assert await store.claim_alert(GUILD, "alert:2026-11-25:50")
    assert not await store.claim_alert(GUILD, "alert:2026-11-25:50")
    assert await store.claim_alert(GUILD, "alert:2026-11-25:80")  # another alert
    assert await store.claim_alert(OTHER_GUILD, "alert:2026-11-25:50")  # another server
    assert await store.claim_alert(GUILD, "alert:2026-11-26:50")  # the next period
    # the marker is a server setting holding the moment it was claimed; deleting it re-arms
    marker = await store.get_guild_setting(GUILD, "alert:2026-11-25:50")
    assert marker is not None and datetime.fromisoformat(marker) == datetime(
        2026, 11, 25, 12, 0, tzinfo=UTC
    )
    await store.set_guild_setting(GUILD, "alert:2026-11-25:50", None)
    assert await store.claim_alert(GUILD, "alert:2026-11-25:50")


async def test_guilds_with_setting_lists_every_server_that_has_it(store: Store) -> None:
    assert await store.guilds_with_setting("low_balance_micro") == {}
    await store.set_guild_setting(GUILD, "low_balance_micro", "5000000")
    await store.set_guild_setting(OTHER_GUILD, "low_balance_micro", "1000000")
    await store.set_guild_setting(OTHER_GUILD, "confirm_above_micro", "1")
    assert await store.guilds_with_setting("low_balance_micro") == {
        GUILD: "5000000",
        OTHER_GUILD: "1000000",
    }


async def test_concurrent_claims_from_two_stores_succeed_exactly_once(
    database_url: str, clock: Clock
) -> None:
    """Two stores (two connections or pools: two processes) claim the same markers from 60
    tasks at once: each marker is won exactly once, and distinct markers are all won."""
    first = await open_storage(database_url, POLICY, clock=clock)
    second = await open_storage(database_url, POLICY, clock=clock)
    try:
        keys = [f"alert:2026-11-25:{pct}" for pct in (50, 80, 100)]
        attempts = [(n, key) for n in range(20) for key in keys]
        won = await asyncio.gather(
            *((first if n % 2 else second).claim_alert(GUILD, key) for n, key in attempts)
        )
        winners = [key for (_, key), claimed in zip(attempts, won, strict=True) if claimed]
        assert sorted(winners) == sorted(keys)
        [marker] = (await first.guilds_with_setting(keys[0])).values()
        assert datetime.fromisoformat(marker) == clock()
    finally:
        await first.close()
        await second.close()


async def test_a_claim_keeps_the_stores_clock(store: Store, clock: Clock) -> None:
    clock.advance(days=1)
    assert await store.claim_alert(GUILD, "alert:low_balance")
    marker = await store.get_guild_setting(GUILD, "alert:low_balance")
    assert marker is not None
    assert datetime.fromisoformat(marker) - datetime(2026, 11, 25, 12, tzinfo=UTC) == timedelta(
        days=1
    )
