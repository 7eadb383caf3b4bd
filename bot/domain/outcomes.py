"""What a member is told when a job ends without a video. Pure: no I/O.

The kind of a failure (bot.domain.lifecycle.FailureKind) is stored in its own column; the
message stored beside it is only ever shown, never parsed back.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain.lifecycle import FailureKind

# Failures only a server admin can fix or follow up (with WaveSpeed, by prediction id).
ADMIN_KINDS = frozenset(
    {
        FailureKind.OUT_OF_CREDIT,
        FailureKind.BAD_API_KEY,
        FailureKind.HOLD_EXPIRED,
        FailureKind.EMPTY_RESULT,
        FailureKind.OUTPUT_UNREACHABLE,
        FailureKind.UNDELIVERABLE,
    }
)


@dataclass(frozen=True)
class JobFailure:
    """A failed job as the member sees it."""

    kind: FailureKind
    message: str
    code: int | None = None

    @property
    def tells_admins(self) -> bool:
        """Whether the server's log channel hears of it."""
        return self.kind in ADMIN_KINDS


INTERRUPTED_MESSAGE = "The bot restarted before your request was sent to WaveSpeed."
CANCELLED_MESSAGE = "You cancelled this video before it was sent to WaveSpeed."
MODERATION_MESSAGE = "WaveSpeed's content filter refused this image or prompt."
OUT_OF_CREDIT_MESSAGE = (
    "The server's WaveSpeed account is out of credit; the admins have been told."
)
BAD_API_KEY_MESSAGE = "The bot's WaveSpeed API key was refused; the admins have been told."
TIMED_OUT_MESSAGE = "WaveSpeed took too long to finish the video."
WAVESPEED_DOWN_MESSAGE = "WaveSpeed is not answering right now. Please try again in a few minutes."
NOT_SUBMITTED_MESSAGE = (
    "WaveSpeed did not answer the submission, and its task list shows it never started."
)
HOLD_EXPIRED_MESSAGE = (
    "WaveSpeed did not answer the submission, and it could not be confirmed in time; "
    "the admins have been told."
)
EMPTY_RESULT_MESSAGE = "WaveSpeed finished but sent no video; the admins have been told."
OUTPUT_UNREACHABLE_MESSAGE = (
    "WaveSpeed made the video, but it could not be downloaded; the admins have been told."
)
UNDELIVERABLE_MESSAGE = (
    "The video was made, but I couldn't post it to you anywhere; the admins have it."
)
REJECTED_PREFIX = "WaveSpeed rejected the request: "
TEMPORARY_ADVICE = "This is usually temporary: try again in a minute."

FIXED_MESSAGES = {
    FailureKind.INTERRUPTED: INTERRUPTED_MESSAGE,
    FailureKind.CANCELLED: CANCELLED_MESSAGE,
    FailureKind.MODERATION: MODERATION_MESSAGE,
    FailureKind.OUT_OF_CREDIT: OUT_OF_CREDIT_MESSAGE,
    FailureKind.BAD_API_KEY: BAD_API_KEY_MESSAGE,
    FailureKind.TIMED_OUT: TIMED_OUT_MESSAGE,
    FailureKind.WAVESPEED_DOWN: WAVESPEED_DOWN_MESSAGE,
    FailureKind.NOT_SUBMITTED: NOT_SUBMITTED_MESSAGE,
    FailureKind.HOLD_EXPIRED: HOLD_EXPIRED_MESSAGE,
    FailureKind.EMPTY_RESULT: EMPTY_RESULT_MESSAGE,
    FailureKind.OUTPUT_UNREACHABLE: OUTPUT_UNREACHABLE_MESSAGE,
    FailureKind.UNDELIVERABLE: UNDELIVERABLE_MESSAGE,
}


def failure(kind: FailureKind, code: int | None = None) -> JobFailure:
    """A failure of a kind whose message is fixed."""
    return JobFailure(kind, FIXED_MESSAGES[kind], code)
