"""Spend over time, read from ledger rows: what /usage charts. Pure: no I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from bot.domain.budget import BudgetPeriod
from bot.domain.job import LedgerEntry
from bot.domain.lifecycle import Settlement


def period_starts_at(now: datetime, period: BudgetPeriod) -> datetime | None:
    """When the period containing `now` began (UTC), or None if budgets never reset."""
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    match period:
        case BudgetPeriod.DAY:
            return midnight
        case BudgetPeriod.WEEK:
            return midnight - timedelta(days=midnight.weekday())
        case BudgetPeriod.MONTH:
            return midnight.replace(day=1)
        case BudgetPeriod.NONE:
            return None


def daily_spend(
    entries: Iterable[LedgerEntry], now: datetime, period: BudgetPeriod
) -> list[tuple[date, int]]:
    """Spend per UTC day of the period containing `now`, in micro-dollars, oldest first.

    Every day from the period's first (for budgets that never reset: the first charge's) to
    today is listed, days without spend as 0, so the bars keep the calendar's spacing. Spend is
    the `charge` rows: a `refund` row releases a reservation that was never charged (a job is
    charged or refunded, never both: bot.domain.lifecycle), so it takes nothing off. The days
    add up to the period's `spent` balance.
    """
    per_day: Counter[date] = Counter()
    for entry in entries:
        if entry.kind == Settlement.CHARGE:
            per_day[entry.created_at.astimezone(UTC).date()] += entry.amount_micro
    today = now.astimezone(UTC).date()
    start = period_starts_at(now, period)
    first = min([*per_day, today if start is None else start.date()])
    # a charge settles in its job's period even if it lands after the period ended
    last = max([*per_day, today])
    return [
        (day, per_day[day])
        for day in (first + timedelta(days=n) for n in range((last - first).days + 1))
    ]
