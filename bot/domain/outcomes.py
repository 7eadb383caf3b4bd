"""What a member is told when a job ends without a video. Pure: no I/O.

The kind of a failure (bot.domain.lifecycle.FailureKind) is stored in its own column; the
message stored beside it is only ever shown: in English as it was stored, and in another
language once matched against the English sentences of its kind (`wording`).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import cache

from bot.domain.lifecycle import FailureKind
from bot.domain.wording import Sentence

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


# Every failure sentence in English by catalogue key (bot/locales/en.json holds the same
# wording): the fixed ones as failure.<kind>, then those that carry WaveSpeed's own words.
MESSAGES = {
    **{f"failure.{kind.value}": message for kind, message in FIXED_MESSAGES.items()},
    "failure.bad_input": "WaveSpeed could not use the inputs.",
    "failure.bad_input_link": (
        "WaveSpeed could not use the inputs (the image link could not be fetched)."
    ),
    "failure.rejected": REJECTED_PREFIX + "{detail}",
    "failure.generation_failed": "The generation failed at WaveSpeed: {reason}.",
    "failure.generation_failed_temporary": (
        "The generation failed at WaveSpeed: {reason}. " + TEMPORARY_ADVICE
    ),
    "failure.generation_failed_unexplained": "The generation failed at WaveSpeed: no reason given.",
    "failure.generation_failed_unexplained_temporary": (
        "The generation failed at WaveSpeed: no reason given. " + TEMPORARY_ADVICE
    ),
}
# The sentences a failure of each variable kind may have been stored with.
VARIABLE_KEYS = {
    FailureKind.BAD_INPUT: ("failure.bad_input", "failure.bad_input_link", "failure.rejected"),
    FailureKind.GENERATION_FAILED: (
        "failure.generation_failed",
        "failure.generation_failed_temporary",
        "failure.generation_failed_unexplained",
        "failure.generation_failed_unexplained_temporary",
    ),
}


def failure(kind: FailureKind, code: int | None = None) -> JobFailure:
    """A failure of a kind whose message is fixed."""
    return JobFailure(kind, FIXED_MESSAGES[kind], code)


def worded_failure(
    kind: FailureKind, key: str, code: int | None = None, **values: str
) -> JobFailure:
    """A failure told with the sentence `key` of MESSAGES, its placeholders filled."""
    return JobFailure(kind, MESSAGES[key].format(**values), code)


def wording(told: JobFailure) -> Sentence | None:
    """The sentence a failure's message says, to say it in another language: its kind's fixed
    sentence, or the sentence of its kind whose English the stored message matches (the most
    specific first); None for a message no sentence makes (from an older wanbot)."""
    if told.kind in FIXED_MESSAGES:
        return Sentence(f"failure.{told.kind.value}")
    for key in sorted(VARIABLE_KEYS.get(told.kind, ()), key=lambda k: -len(_literal(k))):
        found = _pattern(key).fullmatch(told.message)
        if found:
            return Sentence(key, found.groupdict())
    return None


def _literal(key: str) -> str:
    """A sentence's English without its placeholders."""
    return "".join(text for text, *_ in string.Formatter().parse(MESSAGES[key]))


@cache
def _pattern(key: str) -> re.Pattern[str]:
    """A regular expression that matches the sentence `key` with any values."""
    parts = []
    for text, name, _, _ in string.Formatter().parse(MESSAGES[key]):
        parts.append(re.escape(text))
        if name is not None:
            parts.append(f"(?P<{name}>.+?)")
    return re.compile("".join(parts), re.DOTALL)
