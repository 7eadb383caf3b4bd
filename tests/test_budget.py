"""Pure budget rules: period keys, period ends, balances and refusal messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot.domain.budget import (
    Balance,
    BudgetExceeded,
    BudgetPeriod,
    TooManyJobs,
    period_key,
    period_resets_at,
)

TICK = timedelta(microseconds=1)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "period", "key"),
    [
        (at(2026, 11, 25, 13, 30), BudgetPeriod.DAY, "2026-11-25"),
        (at(2026, 11, 25, 13, 30), BudgetPeriod.WEEK, "2026-W48"),
        (at(2026, 11, 25, 13, 30), BudgetPeriod.MONTH, "2026-11"),
        (at(2026, 11, 25, 13, 30), BudgetPeriod.NONE, "all"),
        # year boundaries: ISO weeks belong to the year of their Thursday
        (at(2026, 12, 31, 23, 59), BudgetPeriod.WEEK, "2026-W53"),
        (at(2027, 1, 3, 12), BudgetPeriod.WEEK, "2026-W53"),
        (at(2027, 1, 4), BudgetPeriod.WEEK, "2027-W01"),
        (at(2024, 12, 30), BudgetPeriod.WEEK, "2025-W01"),
        (at(2026, 12, 31, 23, 59), BudgetPeriod.MONTH, "2026-12"),
        (at(2027, 1, 1), BudgetPeriod.MONTH, "2027-01"),
        (at(2027, 1, 1), BudgetPeriod.DAY, "2027-01-01"),
        (at(2028, 2, 29, 8), BudgetPeriod.DAY, "2028-02-29"),
    ],
)
def test_period_key(now: datetime, period: BudgetPeriod, key: str) -> None:
    assert period_key(now, period) == key


def test_period_key_uses_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    # 08:00 on 1 December in Tokyo is still 30 November (and November) in UTC
    now = datetime(2026, 12, 1, 8, tzinfo=tokyo)
    assert period_key(now, BudgetPeriod.DAY) == "2026-11-30"
    assert period_key(now, BudgetPeriod.MONTH) == "2026-11"
    assert period_resets_at(now, BudgetPeriod.DAY) == at(2026, 12, 1)


@pytest.mark.parametrize(
    ("now", "period", "resets_at"),
    [
        (at(2026, 11, 25, 13, 30), BudgetPeriod.DAY, at(2026, 11, 26)),
        (at(2026, 12, 31, 23, 59), BudgetPeriod.DAY, at(2027, 1, 1)),
        (at(2028, 2, 28, 12), BudgetPeriod.DAY, at(2028, 2, 29)),
        (at(2026, 11, 25, 13, 30), BudgetPeriod.WEEK, at(2026, 11, 30)),  # Wednesday → Monday
        (at(2026, 11, 30), BudgetPeriod.WEEK, at(2026, 12, 7)),  # Monday 00:00 → next Monday
        (at(2026, 11, 29, 23, 59), BudgetPeriod.WEEK, at(2026, 11, 30)),  # Sunday night
        (at(2026, 12, 31), BudgetPeriod.WEEK, at(2027, 1, 4)),
        (at(2026, 11, 25), BudgetPeriod.MONTH, at(2026, 12, 1)),
        (at(2026, 12, 31, 23, 59), BudgetPeriod.MONTH, at(2027, 1, 1)),
        (at(2026, 1, 31), BudgetPeriod.MONTH, at(2026, 2, 1)),
        (at(2028, 2, 29), BudgetPeriod.MONTH, at(2028, 3, 1)),
        (at(2026, 11, 25), BudgetPeriod.NONE, None),
    ],
)
def test_period_resets_at(now: datetime, period: BudgetPeriod, resets_at: datetime | None) -> None:
    assert period_resets_at(now, period) == resets_at


@pytest.mark.parametrize("period", [BudgetPeriod.DAY, BudgetPeriod.WEEK, BudgetPeriod.MONTH])
def test_key_changes_exactly_at_reset(period: BudgetPeriod) -> None:
    """Across two years, every instant up to the reset is in the period; the reset is not."""
    now = at(2026, 1, 1)
    while now < at(2028, 1, 1):
        resets_at = period_resets_at(now, period)
        assert resets_at is not None and resets_at > now
        assert period_key(resets_at - TICK, period) == period_key(now, period)
        assert period_key(resets_at, period) != period_key(now, period)
        now += timedelta(hours=13)


def test_none_period_never_resets() -> None:
    assert period_key(at(1999, 1, 1), BudgetPeriod.NONE) == period_key(
        at(2099, 12, 31), BudgetPeriod.NONE
    )
    assert period_resets_at(at(2099, 12, 31), BudgetPeriod.NONE) is None


def test_balance_available() -> None:
    balance = Balance(
        allowance=1_000_000, granted=250_000, spent=300_000, held=125_000, resets_at=None
    )
    assert balance.available == 825_000
    overdrawn = Balance(allowance=0, granted=-500_000, spent=0, held=0, resets_at=None)
    assert overdrawn.available == -500_000


def test_refusal_messages() -> None:
    balance = Balance(allowance=100_000, granted=0, spent=0, held=0, resets_at=None)
    error = BudgetExceeded("server", 125_000, balance)
    assert (error.scope, error.price, error.balance) == ("server", 125_000, balance)
    assert str(error) == "server budget exceeded: price $0.125, available $0.10"
    overdrawn = Balance(allowance=0, granted=-1, spent=0, held=0, resets_at=None)
    assert "available $0.00" in str(BudgetExceeded("member", 1, overdrawn))
    assert str(TooManyJobs(2)) == "at most 2 jobs in flight per member"
    assert TooManyJobs(2).limit == 2
