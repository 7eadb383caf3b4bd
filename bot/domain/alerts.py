"""Money alerts: which spend thresholds a server has reached, when a low-balance warning is due
or re-armed, and the WaveSpeed account balance as last read. Pure: no I/O.

"Once" is kept by the store: each alert has a marker key among the server's settings, claimed
atomically (Storage.claim_alert), so several processes, or two jobs settling at once, still
post it once. These functions only say which markers a moment calls for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from bot.domain.budget import Balance, BudgetPeriod, period_key

#: Percentages of a server's budget (allowance plus grants) whose crossing tells the admins.
SPEND_THRESHOLDS = (50, 80, 100)

#: Marker of the low-balance warning: present while the admins have been warned of this drop.
LOW_BALANCE_MARKER = "alert:low_balance"
#: Marker of the "out of credit" notice: present until the account is topped up.
NO_CREDIT_MARKER = "alert:no_credit"
#: The bot-wide setting that keeps the last balance read, shared by every process.
BALANCE_SETTING = "wavespeed_balance"


def thresholds_reached(spent: int, budget: int) -> tuple[int, ...]:
    """The thresholds (percent) that `spent` has reached of `budget`, in micro-dollars; none
    without a budget (nothing to measure against). Exact: integers only."""
    if budget <= 0:
        return ()
    return tuple(pct for pct in SPEND_THRESHOLDS if spent * 100 >= pct * budget)


def thresholds_crossed(before: int, after: int, budget: int) -> tuple[int, ...]:
    """The thresholds that a spend moving from `before` to `after` reaches for the first time."""
    already = set(thresholds_reached(before, budget))
    return tuple(pct for pct in thresholds_reached(after, budget) if pct not in already)


def budget_period_of(balance: Balance, period: BudgetPeriod) -> str:
    """The key of the period `balance` was read in (2026-11-25, 2026-W48, 2026-11 or all).

    Taken from the balance's reset moment, which the store computed with its own clock, so the
    marker names the same period as the spend it was read with."""
    if balance.resets_at is None:  # budgets never reset: one period, whatever the moment
        return period_key(datetime(2000, 1, 1, tzinfo=UTC), BudgetPeriod.NONE)
    return period_key(balance.resets_at - timedelta(microseconds=1), period)


def spend_alert_key(period: str, pct: int) -> str:
    """The marker of one spend alert in one period: `alert:2026-11:80`."""
    return f"alert:{period}:{pct}"


class LowBalanceStep(StrEnum):
    """What a balance reading calls for in one server with a low-balance threshold."""

    WARN = "warn"  # below the threshold and not yet warned of this drop
    REARM = "rearm"  # warned earlier and now back up (or the warning switched off)
    NOTHING = "nothing"


def low_balance_step(balance: int, threshold: int | None, warned: bool) -> LowBalanceStep:
    """Warn once per drop below `threshold` (micro-dollars; None: off); re-arm when the balance
    is back at or above it, so the next drop warns again."""
    if threshold is None:
        return LowBalanceStep.REARM if warned else LowBalanceStep.NOTHING
    if balance < threshold:
        return LowBalanceStep.NOTHING if warned else LowBalanceStep.WARN
    return LowBalanceStep.REARM if warned else LowBalanceStep.NOTHING


def topped_up(previous: int | None, current: int) -> bool:
    """Whether a reading shows money added since the previous one (which re-arms the "out of
    credit" notice): the balance only goes down otherwise, as tasks are billed."""
    return previous is not None and current > previous


@dataclass(frozen=True)
class BalanceReading:
    """The WaveSpeed account's balance in micro-dollars, and when it was read (aware UTC)."""

    micro: int
    read_at: datetime

    def can_pay(self, price: int) -> bool:
        """Whether the balance covers a request of `price` micro-dollars."""
        return price <= self.micro

    def encode(self) -> str:
        """The stored text: `<micro> <ISO moment>`."""
        return f"{self.micro} {self.read_at.astimezone(UTC).isoformat()}"

    @classmethod
    def decode(cls, text: str | None) -> BalanceReading | None:
        """A stored reading; None for nothing or junk (as if never read)."""
        micro, _, moment = (text or "").strip().partition(" ")
        try:
            read_at = datetime.fromisoformat(moment)
            amount = int(micro)
        except ValueError:
            return None
        if read_at.tzinfo is None:
            return None
        return cls(amount, read_at)


def can_pay(reading: BalanceReading | None, price: int) -> bool:
    """Whether the last known balance covers `price`; with no reading yet, it is not refused
    (WaveSpeed itself refuses a submit it cannot bill, and the job is refunded)."""
    return reading is None or reading.can_pay(price)
