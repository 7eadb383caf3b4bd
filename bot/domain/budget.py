"""Budget rules: periods, balances and the errors a reservation can raise. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Collection, Mapping
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


class AllowanceSource(StrEnum):
    """Where a budget's allowance comes from (the first that applies wins)."""

    OWN = "own"  # its own `limit` row: /budget set (a member) or /budget server (the server)
    TIER = "tier"  # the highest role tier among the member's roles: /budget roles set
    DEFAULT = "default"  # MEMBER_BUDGET_USD / SERVER_BUDGET_USD


@dataclass(frozen=True)
class Allowance:
    """A budget's allowance per period (micro-dollars) and why it applies; `role_id` names the
    tier's role when the source is TIER."""

    amount: int
    source: AllowanceSource
    role_id: int | None = None


def effective_allowance(
    own: int | None, tiers: Mapping[int, int], roles: Collection[int], default: int
) -> Allowance:
    """A member's allowance: their own (`own`, the latest `limit` row) if an admin set one, else
    the highest of the server's current `tiers` (role id → amount) among the `roles` they hold,
    else `default`. Two roles with the same highest amount: the smaller role id is named (the
    stores' SQL breaks the tie the same way). The stores compute this in SQL, inside the
    transaction that checks the money; this is the rule they are tested against."""
    if own is not None:
        return Allowance(own, AllowanceSource.OWN)
    held = [(amount, role_id) for role_id, amount in tiers.items() if role_id in roles]
    if held:
        amount, role_id = min(held, key=lambda tier: (-tier[0], tier[1]))
        return Allowance(amount, AllowanceSource.TIER, role_id)
    return Allowance(default, AllowanceSource.DEFAULT)


@dataclass(frozen=True)
class RoleTier:
    """A role's allowance per period on a server (micro-dollars), and who set it when."""

    role_id: int
    amount_micro: int
    actor_id: int
    set_at: datetime


@dataclass(frozen=True)
class Balance:
    """One budget (a member's or a server's) in the current period, in micro-dollars.

    available = allowance + granted - spent - held

    `source` says where the allowance comes from, and `tier_role_id` which role's tier it is.
    """

    allowance: int
    granted: int
    spent: int
    held: int
    resets_at: datetime | None
    source: AllowanceSource = AllowanceSource.DEFAULT
    tier_role_id: int | None = None

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
