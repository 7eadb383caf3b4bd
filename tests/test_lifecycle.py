"""The job lifecycle as a machine: its table, and random walks through it (hypothesis).

The walks run on the real store (SQLite), so what they check is what production enforces: a
move the machine forbids changes nothing, a job is settled at most once, charged only after a
video was generated and posted, and every path ends.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.domain.budget import BudgetPeriod, BudgetPolicy
from bot.domain.job import JobOwner
from bot.domain.lifecycle import (
    FINAL_STATES,
    SETTLEMENT_TABLE,
    TRANSITIONS,
    FailureKind,
    IllegalTransition,
    JobState,
    Settlement,
    can_move,
    settlement_of,
    settlement_on_entering,
)
from storage import SqliteStorage

DOCS = Path(__file__).parent.parent / "docs" / "RELIABILITY.md"
POLICY = BudgetPolicy(10_000_000, 100_000_000, BudgetPeriod.NONE)
OWNER = JobOwner(1, 2, 3)
PRICE = 125_000


def reachable_from(start: JobState, skipping: set[JobState] | None = None) -> set[JobState]:
    """The states reachable from `start`; with `skipping`, not by their ways back to the queue."""
    seen = {start}
    todo = deque([start])
    while todo:
        state = todo.popleft()
        for target in TRANSITIONS[state]:
            if skipping and state in skipping and target is JobState.QUEUED:
                continue
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_every_state_has_a_row_and_final_states_have_no_way_out() -> None:
    assert set(TRANSITIONS) == set(JobState)
    for state in FINAL_STATES:
        assert TRANSITIONS[state] == frozenset()
        assert state.is_final


def test_every_path_ends() -> None:
    """From every state a final state can be reached. Apart from posting's retry (one per
    restart) every cycle goes back to the queue — a submit refused with 429, or a task failed
    with a temporary code (submitted once more, at most: the runner retries a job whose
    `retried_prediction_id` is still empty) — and without
    those ways back the machine has no cycle, so no path goes round for ever."""
    for state in JobState:
        assert reachable_from(state) & FINAL_STATES, state
    back_to_queue = {JobState.SUBMITTING, JobState.SUBMITTED}
    for state in JobState:
        for target in TRANSITIONS[state] - {state}:
            if target is JobState.QUEUED and state in back_to_queue:
                continue
            assert state not in reachable_from(target, skipping=back_to_queue), (state, target)
    assert [s for s in JobState if s in TRANSITIONS[s]] == [JobState.POSTING]


def test_money_moves_only_on_delivered_and_failed() -> None:
    assert {s: settlement_on_entering(s) for s in JobState if settlement_on_entering(s)} == {
        JobState.DELIVERED: Settlement.CHARGE,
        JobState.FAILED: Settlement.REFUND,
    }
    # a charge needs a generated video: delivered is reachable only through ready and posting
    for state in JobState:
        if JobState.DELIVERED in TRANSITIONS[state]:
            assert state is JobState.POSTING
    assert TRANSITIONS[JobState.READY] == {JobState.POSTING, JobState.FAILED}


def test_the_settlement_table_names_every_ending_once() -> None:
    names = [ending.name for ending in SETTLEMENT_TABLE]
    assert len(names) == len(set(names))
    assert set(names) == {"delivered", "submit_unanswered", *FailureKind}
    assert settlement_of("delivered") is Settlement.CHARGE
    assert settlement_of("submit_unanswered") is Settlement.HOLD
    for kind in FailureKind:  # no video, no charge
        assert settlement_of(kind) is Settlement.REFUND


def test_reliability_doc_reproduces_the_settlement_table() -> None:
    """docs/RELIABILITY.md has one table row per ending, with the same settlement."""
    text = DOCS.read_text("utf-8")
    for ending in SETTLEMENT_TABLE:
        row = re.search(rf"^\| `{re.escape(ending.name)}` \| (\w+) \|", text, re.MULTILINE)
        assert row is not None, f"docs/RELIABILITY.md has no row for {ending.name}"
        assert row[1] == ending.settlement.value, ending.name


def test_illegal_transition_names_the_move() -> None:
    error = IllegalTransition(7, JobState.RESERVED, JobState.DELIVERED)
    assert "job 7 is reserved" in str(error) and "delivered" in str(error)
    assert not can_move(JobState.RESERVED, JobState.DELIVERED)


# --- random walks on the real store ------------------------------------------------------------

# What each move needs to be stored (the store's CHECKs refuse it otherwise).
MOVE_COLUMNS: dict[JobState, dict[str, object]] = {
    JobState.UNCERTAIN: {"hold_until": "2100-01-01T00:00:00+00:00"},
    JobState.FAILED: {"failure_kind": "generation_failed", "error_message": "no video"},
    JobState.READY: {"output_url": "https://cdn.example/v.mp4"},
    JobState.DELIVERED: {"result_channel_id": 2, "result_message_id": 99},
}


async def walk(tmp_path: Path, proposals: list[JobState]) -> None:
    """Propose each target in turn to one job; check the invariants after every proposal."""
    async with await SqliteStorage.open(str(tmp_path / "walk.db"), POLICY) as storage:
        job = await storage.reserve(OWNER, "{}", PRICE, 5)
        visited = [job.state]
        for target in proposals:
            before = await storage.get_job(job.id)
            assert before is not None
            try:
                await storage.advance(job.id, target, **MOVE_COLUMNS.get(target, {}))
            except IllegalTransition:
                assert not can_move(before.state, target)
                assert await storage.get_job(job.id) == before  # refused: nothing changed
                continue
            assert can_move(before.state, target)
            visited.append(target)
            await check_invariants(storage, job.id, visited)


async def check_invariants(storage: SqliteStorage, job_id: int, visited: list[JobState]) -> None:
    job = await storage.get_job(job_id)
    assert job is not None
    rows = [e for e in await storage.ledger(OWNER.guild_id) if e.job_id == job_id]
    settlements = [e for e in rows if e.kind in ("charge", "refund")]
    assert [e.kind for e in rows if e.kind == "reserve"] == ["reserve"]
    assert len(settlements) <= 1  # settled at most once
    if settlements:
        assert settlements[0].amount_micro == PRICE
    charged = any(e.kind == "charge" for e in settlements)
    # charged only with a generated video that was posted
    assert charged == (job.state is JobState.DELIVERED)
    if charged:
        assert JobState.READY in visited and JobState.POSTING in visited
    refunded = any(e.kind == "refund" for e in settlements)
    assert refunded == (job.state in (JobState.FAILED, JobState.CLOSED))
    balance = await storage.member_balance(OWNER.guild_id, OWNER.member_id)
    assert balance.held == (0 if settlements else PRICE)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(proposals=st.lists(st.sampled_from(list(JobState)), max_size=25))
def test_random_moves_keep_the_money_right(tmp_path: Path, proposals: list[JobState]) -> None:
    for old in tmp_path.glob("walk.db*"):
        old.unlink()
    asyncio.run(walk(tmp_path, proposals))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(choices=st.lists(st.integers(min_value=0, max_value=10), min_size=30, max_size=30))
def test_every_walk_that_keeps_moving_ends(tmp_path: Path, choices: list[int]) -> None:
    """Always taking some allowed move other than posting's retry reaches a final state."""
    for old in tmp_path.glob("walk.db*"):
        old.unlink()
    state, path = JobState.RESERVED, []
    for choice in choices:
        if state.is_final:
            break
        onward = sorted(TRANSITIONS[state] - {state})
        state = onward[choice % len(onward)]
        path.append(state)
    assert state.is_final
    asyncio.run(walk(tmp_path, path))


@pytest.mark.parametrize("state", list(JobState))
def test_is_final_matches_the_table(state: JobState) -> None:
    assert state.is_final == (not TRANSITIONS[state])
