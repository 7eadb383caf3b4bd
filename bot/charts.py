"""Charts for /usage, drawn with matplotlib's Agg renderer into PNG bytes. Pure: plain data in,
bytes out, no Discord, no storage.

Charts are drawn in worker threads, off the event loop. Matplotlib is not thread-safe; its FAQ
allows separate figures in separate threads with a non-interactive backend such as Agg
(https://matplotlib.org/stable/users/faq.html#work-with-threads). So each chart is its own Figure
on its own Agg canvas (never pyplot, whose state is global), and a lock draws one at a time,
which costs nothing at the rate admins ask for /usage.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Literal

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, DateLocator, DayLocator
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from bot.domain.pricing import MICRO_PER_USD, format_usd
from bot.i18n import EN, Language, t

CHART_WIDTH_PX = 1000
CHART_HEIGHT_PX = 800
_DPI = 100
MAX_NAME_CHARS = 28
MIN_DAY_SLOTS = 7  # a frame at least a week wide
MIN_MEMBER_SLOTS = 5
MAX_DAY_TICKED_DAYS = 31  # longer periods (budgets that never reset) tick months
BAR_COLOR = "#5865F2"  # Discord's blurple
MEMBER_COLOR = "#57A773"
_DRAWING = threading.Lock()

DaySpend = tuple[date, int]  # a UTC day and what was spent on it, in micro-dollars
MemberSpend = tuple[str, int]  # a member's display name and their spend, in micro-dollars


def _dollars(micro: int) -> float:
    """Micro-dollars as a float, for bar lengths only: every number written on the chart
    comes from format_usd on the exact integer."""
    return micro / MICRO_PER_USD


def _short(name: str) -> str:
    """A name cut to fit the axis."""
    return name if len(name) <= MAX_NAME_CHARS else name[: MAX_NAME_CHARS - 1] + "…"


def _axis_usd(value: float, _position: float) -> str:
    """An axis tick in dollars; ticks are the axis's own round numbers, not amounts of money."""
    return format_usd(round(value * MICRO_PER_USD))


def usage_chart(
    period: str,
    days: Sequence[DaySpend],
    members: Sequence[MemberSpend],
    *,
    lang: Language = EN,
) -> bytes:
    """A PNG of CHART_WIDTH_PX × CHART_HEIGHT_PX: spend per day (bars, top) and the members
    who spent most (horizontal bars, largest on top), titled in `lang`. Either list may be
    empty."""
    with _DRAWING:
        return _draw(period, days, members, lang)


def _draw(
    period: str, days: Sequence[DaySpend], members: Sequence[MemberSpend], lang: Language
) -> bytes:
    figure = Figure(figsize=(CHART_WIDTH_PX / _DPI, CHART_HEIGHT_PX / _DPI), dpi=_DPI)
    FigureCanvasAgg(figure)  # drawn by Agg, whatever backend pyplot would have picked
    title = t(lang, "chart.title", period=period)
    figure.suptitle(title, fontsize=15, fontweight="bold", parse_math=False)
    per_day, top = figure.subplots(2, 1, height_ratios=(1, 1))
    _draw_days(per_day, days, lang)
    _draw_members(top, members, lang)
    # a fixed-size layout: bbox_inches="tight" would change the pixel size from chart to chart
    figure.subplots_adjust(left=0.28, right=0.95, top=0.91, bottom=0.07, hspace=0.45)
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=_DPI)
    return out.getvalue()


def _framed(
    axes: Axes, title: str, money_axis: Literal["x", "y"], any_data: bool, empty: str
) -> bool:
    """Title a panel and rule its dollar axis; without data, write `empty` in its middle
    instead, with no ticks, and return False (nothing to draw)."""
    axes.set_title(title, loc="left", parse_math=False)
    money = axes.yaxis if money_axis == "y" else axes.xaxis
    money.set_major_formatter(FuncFormatter(_axis_usd))
    axes.grid(axis=money_axis, alpha=0.3)
    axes.set_axisbelow(True)
    if not any_data:
        axes.text(0.5, 0.5, empty, ha="center", va="center", transform=axes.transAxes)
        axes.set_xticks([])
        axes.set_yticks([])
    return any_data


def _draw_days(axes: Axes, days: Sequence[DaySpend], lang: Language) -> None:
    """One bar per day, its height the day's spend."""
    if not _framed(axes, t(lang, "chart.per_day"), "y", bool(days), t(lang, "chart.nothing_spent")):
        return
    # about ten ticks on whole days: the automatic locator would tick hours in a short period
    locator: DateLocator = (
        DayLocator(interval=math.ceil(len(days) / 10))
        if len(days) <= MAX_DAY_TICKED_DAYS
        else AutoDateLocator(minticks=3, maxticks=10)
    )
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes.bar([d for d, _ in days], [_dollars(m) for _, m in days], width=0.8, color=BAR_COLOR)
    # a short period is drawn in a week-wide frame, so its bars keep a bar's shape
    pad = timedelta(days=0.6 + max(0, MIN_DAY_SLOTS - len(days)) / 2)
    first, last = (datetime.combine(days[i][0], time()) for i in (0, -1))
    axes.set_xlim(first - pad, last + pad)
    axes.set_ylim(bottom=0)


def _draw_members(axes: Axes, members: Sequence[MemberSpend], lang: Language) -> None:
    """One horizontal bar per member, labelled with the exact amount."""
    if not _framed(axes, t(lang, "chart.top_members"), "x", bool(members), t(lang, "chart.nobody")):
        return
    # the largest on top; a few members still get slots for more, so bars keep one thickness
    slots = max(len(members), MIN_MEMBER_SLOTS)
    positions = [slots - 1 - rank for rank in range(len(members))]
    bars = axes.barh(positions, [_dollars(m) for _, m in members], color=MEMBER_COLOR)
    # names are typed by members: no mathtext, so "$5 $10" shows as written
    axes.set_yticks(positions, [_short(name) for name, _ in members], parse_math=False)
    axes.bar_label(bars, [format_usd(m) for _, m in members], padding=3, parse_math=False)
    axes.set_ylim(-0.5, slots - 0.5)
    axes.set_xlim(0, _dollars(max(m for _, m in members)) * 1.15 or 1)
