"""What a member is told for each WaveSpeed error, and which failures keep the charge."""

import pytest

from bot import wavespeed as ws
from bot.domain.outcomes import (
    TEMPORARY_ADVICE,
    FailureKind,
    failure_from_error,
    failure_from_record,
    keeps_charge,
)


@pytest.mark.parametrize(
    ("code", "kind", "temporary"),
    [
        (1200, FailureKind.MODERATION, False),
        (1400, FailureKind.BAD_INPUT, False),
        (1402, FailureKind.BAD_INPUT, False),
        (1403, FailureKind.GENERATION_FAILED, True),
        (5000, FailureKind.GENERATION_FAILED, True),
        (5004, FailureKind.GENERATION_FAILED, True),
        (None, FailureKind.GENERATION_FAILED, False),
    ],
)
def test_task_failures_by_code(code: int | None, kind: FailureKind, temporary: bool) -> None:
    failure = failure_from_error(ws.TaskFailed("p1", "failed", code, f"{code}: boom"))
    assert (failure.kind, failure.code) == (kind, code)
    assert (TEMPORARY_ADVICE in failure.message) is temporary
    assert not failure.tells_admins


def test_admin_failures_are_flagged() -> None:
    assert failure_from_error(ws.OutOfCredit("no credit")).tells_admins
    assert failure_from_error(ws.AuthError("bad key")).tells_admins
    assert not failure_from_error(ws.TransientError("down")).tells_admins


def test_only_possibly_billed_failures_keep_the_charge() -> None:
    assert keeps_charge(ws.SubmitUncertain("no answer"))
    assert keeps_charge(ws.PollTimeout("p1", "processing", 60.0))
    assert not keeps_charge(ws.PollTimeout("p1", "created", 60.0))
    assert not keeps_charge(ws.TaskFailed("p1", "failed", 5000, "boom"))
    assert not keeps_charge(ws.TransientError("down"))


def test_a_stored_failure_keeps_its_kind() -> None:
    told = failure_from_error(ws.OutOfCredit("no credit"))
    again = failure_from_record(told.code, told.message)
    assert again == told and again.tells_admins
