"""The job lifecycle: states, the transitions allowed between them, and how each ending settles.

Pure: no I/O. Storage refuses any transition `can_move` does not allow and writes the settlement
`settlement_on_entering` names in the same transaction as the move, so a job's money follows its
state exactly: held from `reserved` on, charged on entering `delivered`, refunded on entering
`failed`, never both and never twice.

    reserved ─▶ queued ⇄ submitting ─▶ submitted ─▶ ready ─▶ posting ─▶ delivered   (charge)
        │         │  ▲          │            ▲  │ │       │         │
        │         │  │          ▼            │  │ │       │         │
        │         │  │      uncertain ───────┘  │ │       │         │
        │         │  │   (held: reconciling)    │ │       │         │
        │         │  └──────────────────────────┘ │       │         │
        │         │   (a temporary task failure   │       │         │
        │         │    is submitted once more)    │       │         │
        ▼         ▼             ▼                 ▼       ▼         ▼
      failed ◀──────────────────────────────────────────────────────┘              (refund)
        │
        ▼
      closed   (the member was told)

`queued` is the local queue: the media are uploaded and the request is final, and the job waits
for its turn under the WaveSpeed account's limits (bot.domain.queue). A submit refused with 429
goes back there, keeping its place; so does a task that failed with a temporary code, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class JobState(StrEnum):
    """Where a job is. `delivered` and `closed` are final."""

    RESERVED = "reserved"  # price held; nothing sent to WaveSpeed yet
    QUEUED = "queued"  # media uploaded, request final: waiting for a turn to submit
    SUBMITTING = "submitting"  # the submit POST may be in flight
    UNCERTAIN = "uncertain"  # the submit went unanswered: held while WaveSpeed's history is read
    SUBMITTED = "submitted"  # WaveSpeed has the task (its prediction id is stored): polling
    READY = "ready"  # WaveSpeed generated a video; it is being fetched
    POSTING = "posting"  # a post of the video may be in flight (re-posting is idempotent)
    DELIVERED = "delivered"  # final: the video reached the member, and was charged
    FAILED = "failed"  # no video: refunded; the member is being told
    CLOSED = "closed"  # final: refunded, and the member was told

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.DELIVERED, JobState.CLOSED})

# Jobs whose task is (or may be) at WaveSpeed: they count against WAVESPEED_MAX_CONCURRENT.
AT_WAVESPEED = frozenset({JobState.SUBMITTING, JobState.UNCERTAIN, JobState.SUBMITTED})

# Jobs that count against a member's "videos in progress" limit.
IN_PROGRESS = frozenset(
    {
        JobState.RESERVED,
        JobState.QUEUED,
        JobState.SUBMITTING,
        JobState.UNCERTAIN,
        JobState.SUBMITTED,
        JobState.READY,
        JobState.POSTING,
    }
)

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.RESERVED: frozenset({JobState.QUEUED, JobState.FAILED}),
    # queued → failed: cancelled by the member (nothing was sent), or the upload's inputs refused
    JobState.QUEUED: frozenset({JobState.SUBMITTING, JobState.FAILED}),
    # submitting → queued: WaveSpeed refused the submit with 429, so it created nothing
    JobState.SUBMITTING: frozenset(
        {JobState.SUBMITTED, JobState.UNCERTAIN, JobState.FAILED, JobState.QUEUED}
    ),
    JobState.UNCERTAIN: frozenset({JobState.SUBMITTED, JobState.FAILED}),
    # submitted → queued: the task failed with a temporary code; it is submitted once more
    JobState.SUBMITTED: frozenset({JobState.READY, JobState.FAILED, JobState.QUEUED}),
    JobState.READY: frozenset({JobState.POSTING, JobState.FAILED}),
    # posting → posting: a post interrupted by a restart is tried again (idempotently)
    JobState.POSTING: frozenset({JobState.POSTING, JobState.DELIVERED, JobState.FAILED}),
    JobState.DELIVERED: frozenset(),
    JobState.FAILED: frozenset({JobState.CLOSED}),
    JobState.CLOSED: frozenset(),
}


def can_move(current: JobState, target: JobState) -> bool:
    """Whether the machine allows `current → target`."""
    return target in TRANSITIONS[current]


class IllegalTransition(ValueError):
    """A move the lifecycle does not allow (storage refuses it and changes nothing)."""

    def __init__(self, job_id: int, current: JobState, target: JobState) -> None:
        super().__init__(f"job {job_id} is {current}: it cannot become {target}")
        self.job_id = job_id
        self.current = current
        self.target = target


class LeaseLost(RuntimeError):
    """A move asked for by a process that no longer holds the job's lease (another process took
    the job over while this one was frozen or cut off): storage refuses it and changes nothing."""

    def __init__(self, job_id: int, holder: str, owner: str | None) -> None:
        super().__init__(f"job {job_id} is no longer followed by {holder} (now {owner})")
        self.job_id = job_id


class Settlement(StrEnum):
    """What happens to a job's reserved price."""

    CHARGE = "charge"  # spent: a ledger `charge` row
    REFUND = "refund"  # released: a ledger `refund` row
    HOLD = "hold"  # still reserved, with a deadline, until reconciliation decides


def settlement_on_entering(state: JobState) -> Settlement | None:
    """The ledger row written together with a move into `state` (None: the money stays put)."""
    return {JobState.DELIVERED: Settlement.CHARGE, JobState.FAILED: Settlement.REFUND}.get(state)


class FailureKind(StrEnum):
    """Why a job ended without a video. Stored in its own column, never parsed from text."""

    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    BAD_INPUT = "bad_input"
    MODERATION = "moderation"
    GENERATION_FAILED = "generation_failed"
    WAVESPEED_DOWN = "wavespeed_down"
    OUT_OF_CREDIT = "out_of_credit"
    BAD_API_KEY = "bad_api_key"
    NOT_SUBMITTED = "not_submitted"
    HOLD_EXPIRED = "hold_expired"
    TIMED_OUT = "timed_out"
    EMPTY_RESULT = "empty_result"
    OUTPUT_UNREACHABLE = "output_unreachable"
    UNDELIVERABLE = "undeliverable"


DELIVERED_ENDING = "delivered"


@dataclass(frozen=True)
class Ending:
    """One row of the settlement table: a way a job ends (or pauses), and what it costs."""

    name: str  # "delivered", "submit unanswered" or a FailureKind value
    settlement: Settlement
    when: str
    why: str


SETTLEMENT_TABLE: tuple[Ending, ...] = (
    Ending(
        DELIVERED_ENDING,
        Settlement.CHARGE,
        "the video was posted to the member (follow-up, channel or direct message)",
        "the only way a member pays: a video they got, charged once with the post recorded",
    ),
    Ending(
        "submit_unanswered",
        Settlement.HOLD,
        "the submit got no answer (timeout, proxy error): the task may or may not exist",
        "held until WaveSpeed's prediction history says: adopted, absent, or the hold expires",
    ),
    Ending(
        FailureKind.INTERRUPTED,
        Settlement.REFUND,
        "the bot stopped before the request was sent to WaveSpeed",
        "nothing was sent, so nothing can be billed",
    ),
    Ending(
        FailureKind.CANCELLED,
        Settlement.REFUND,
        "the member pressed Cancel while the job waited in the local queue",
        "nothing was sent to WaveSpeed",
    ),
    Ending(
        FailureKind.BAD_INPUT,
        Settlement.REFUND,
        "WaveSpeed refused the inputs (400, task codes 1400/1401/1402)",
        "no video",
    ),
    Ending(
        FailureKind.MODERATION,
        Settlement.REFUND,
        "WaveSpeed's content filter refused the task (code 1200)",
        "no video; WaveSpeed refunds failed tasks",
    ),
    Ending(
        FailureKind.GENERATION_FAILED,
        Settlement.REFUND,
        "the task failed at WaveSpeed (1403/1405/5000/5003/5004, cancelled, …)",
        "no video; WaveSpeed refunds failed tasks",
    ),
    Ending(
        FailureKind.WAVESPEED_DOWN,
        Settlement.REFUND,
        "WaveSpeed could not be reached, or refused the submit outright",
        "the task was certainly not created",
    ),
    Ending(
        FailureKind.OUT_OF_CREDIT,
        Settlement.REFUND,
        "the WaveSpeed account cannot pay (402); the admins are told",
        "the task was not created",
    ),
    Ending(
        FailureKind.BAD_API_KEY,
        Settlement.REFUND,
        "WaveSpeed refused the API key (401/403); the admins are told",
        "the task was not created",
    ),
    Ending(
        FailureKind.NOT_SUBMITTED,
        Settlement.REFUND,
        "reconciliation: the unanswered submit is provably absent from WaveSpeed's history",
        "WaveSpeed never created the task",
    ),
    Ending(
        FailureKind.HOLD_EXPIRED,
        Settlement.REFUND,
        "reconciliation could not decide before the hold's deadline; the admins are told",
        "a hold never lasts forever (like a pending transfer with a timeout, it is voided)",
    ),
    Ending(
        FailureKind.TIMED_OUT,
        Settlement.REFUND,
        "the task was not finished within JOB_TIMEOUT_S",
        "no video",
    ),
    Ending(
        FailureKind.EMPTY_RESULT,
        Settlement.REFUND,
        "WaveSpeed said `completed` but listed no output; the admins get the prediction id",
        "no video",
    ),
    Ending(
        FailureKind.OUTPUT_UNREACHABLE,
        Settlement.REFUND,
        "the output could not be downloaded after retries and a re-fetched result; "
        "the admins get the prediction id",
        "no video reached anyone",
    ),
    Ending(
        FailureKind.UNDELIVERABLE,
        Settlement.REFUND,
        "no follow-up, channel message or direct message could carry the video; "
        "the log channel gets it",
        "the member never got the video",
    ),
)


def settlement_of(ending: str) -> Settlement:
    """The settlement of an ending named in the table (KeyError for an unknown one)."""
    return _SETTLEMENT_BY_NAME[ending]


_SETTLEMENT_BY_NAME = {ending.name: ending.settlement for ending in SETTLEMENT_TABLE}
