"""Budget rules: periods, balances and the errors a reservation can raise. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from bot.domain.pricing import format_usd

SERVER_SCOPE_MEMBER_ID = 0  # ledger rows with member_id 0 belong to the server as a whole
# `wanbot generate` spends from a local "cli" budget kept like a server's: guild 0 (no Discord
# server has that id), with one member, who must not be the server scope's member_id 0.
CLI_GUILD_ID = 0
CLI_MEMBER_ID = 1


class BudgetPeriod(StrEnum):
    """How often allowances reset."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    NONE = "none"


def period_key(now: datetime, period: BudgetPeriod) -> str:
    """Name the budget period that contains `now` (UTC): 2026-11-25, 2026-W48, 2026-11 or all."""
    now = now.astimezone(UTC)
    match period:
        case BudgetPeriod.DAY:
            return now.strftime("%Y-%m-%d")
        case BudgetPeriod.WEEK:
            year, week, _ = now.isocalendar()
            return f"{year}-W{week:02d}"
        case BudgetPeriod.MONTH:
            return now.strftime("%Y-%m")
        case BudgetPeriod.NONE:
            return "all"


def period_resets_at(now: datetime, period: BudgetPeriod) -> datetime | None:
    """When the period containing `now` ends (UTC), or None if budgets never reset."""
    now = now.astimezone(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    match period:
        case BudgetPeriod.DAY:
            return midnight + timedelta(days=1)
        case BudgetPeriod.WEEK:
            return midnight + timedelta(days=7 - now.weekday())
        case BudgetPeriod.MONTH:
            first = midnight.replace(day=1)
            return (first + timedelta(days=32)).replace(day=1)
        case BudgetPeriod.NONE:
            return None


@dataclass(frozen=True)
class BudgetPolicy:
    """Default allowances (micro-dollars per period) and the period length."""

    member_allowance: int
    server_allowance: int
    period: BudgetPeriod


@dataclass(frozen=True)
class Balance:
    """One budget (a member's or a server's) in the current period, in micro-dollars.

    available = allowance + granted - spent - held
    """

    allowance: int
    granted: int
    spent: int
    held: int
    resets_at: datetime | None

    @property
    def available(self) -> int:
        return self.allowance + self.granted - self.spent - self.held


class BudgetError(Exception):
    """A reservation was refused; nothing was written."""


class BudgetExceeded(BudgetError):
    """The member's or the server's budget cannot cover the price."""

    def __init__(self, scope: str, price: int, balance: Balance) -> None:
        self.scope = scope  # "member" or "server"
        self.price = price
        self.balance = balance
        super().__init__(
            f"{scope} budget exceeded: price {format_usd(price)}, "
            f"available {format_usd(max(balance.available, 0))}"
        )


class TooManyJobs(BudgetError):
    """The member already has the maximum number of jobs in flight."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"at most {limit} jobs in flight per member")
