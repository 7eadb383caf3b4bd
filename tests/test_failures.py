"""What a member is told for each WaveSpeed error, and which failures reach the admins."""

import pytest

from bot import wavespeed as ws
from bot.domain.lifecycle import FailureKind
from bot.domain.outcomes import ADMIN_KINDS, FIXED_MESSAGES, TEMPORARY_ADVICE, failure
from bot.failures import failure_from_error


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
    told = failure_from_error(ws.TaskFailed("p1", "failed", code, f"{code}: boom"))
    assert (told.kind, told.code) == (kind, code)
    assert (TEMPORARY_ADVICE in told.message) is temporary
    assert not told.tells_admins


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ws.OutOfCredit("no credit"), FailureKind.OUT_OF_CREDIT),
        (ws.AuthError("bad key"), FailureKind.BAD_API_KEY),
        (ws.TransientError("down"), FailureKind.WAVESPEED_DOWN),
        (ws.RejectedInput("bad", code=400), FailureKind.BAD_INPUT),
        (ws.PollTimeout("p1", "processing", 60.0), FailureKind.TIMED_OUT),
        (ws.PollTimeout("p1", "created", 60.0), FailureKind.TIMED_OUT),
    ],
)
def test_errors_map_to_their_kind(error: ws.WaveSpeedError, kind: FailureKind) -> None:
    assert failure_from_error(error).kind is kind


def test_admin_failures_are_flagged() -> None:
    assert failure_from_error(ws.OutOfCredit("no credit")).tells_admins
    assert failure_from_error(ws.AuthError("bad key")).tells_admins
    assert not failure_from_error(ws.TransientError("down")).tells_admins
    for kind in (FailureKind.EMPTY_RESULT, FailureKind.OUTPUT_UNREACHABLE):
        assert failure(kind).tells_admins  # the owner takes these up with WaveSpeed
    assert FailureKind.NOT_SUBMITTED not in ADMIN_KINDS


def test_every_kind_without_a_variable_text_has_a_fixed_one() -> None:
    variable = {FailureKind.BAD_INPUT, FailureKind.GENERATION_FAILED}
    assert set(FIXED_MESSAGES) == set(FailureKind) - variable
