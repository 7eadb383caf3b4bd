"""The job model: who asked, what a job row holds, ledger rows, and what a member waits through.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from bot.domain.lifecycle import FailureKind, JobState, Settlement


@dataclass(frozen=True)
class JobOwner:
    """Who asked, and where the result goes (`wanbot generate`: see bot.domain.budget)."""

    guild_id: int
    channel_id: int
    member_id: int


@dataclass(frozen=True)
class InteractionToken:
    """What lets any process answer through a member's interaction (edit the private status,
    send follow-ups) while Discord still accepts it. The token is a credential: it is never
    shown in a repr or a log line."""

    application_id: int
    token: str = field(repr=False)
    expires_at: datetime  # aware: 15 minutes after the interaction was created


@dataclass(frozen=True)
class JobRecord:
    """One job as stored: the jobs row plus how its money was settled (from the ledger)."""

    id: int
    guild_id: int
    channel_id: int
    member_id: int
    request_json: str  # GenerationRequest.model_dump_json()
    price_micro: int
    period_key: str
    state: JobState
    failure_kind: FailureKind | None
    prediction_id: str | None
    wavespeed_status: str | None
    output_url: str | None
    has_nsfw: bool
    inference_ms: int | None
    error_code: int | None
    error_message: str | None  # what the member is told; never parsed back
    result_channel_id: int | None  # where the video was posted
    result_message_id: int | None  # the message that carries the video
    post_attempts: int  # posts begun; more than one means one may have landed before a restart
    created_at: datetime
    submit_started_at: datetime | None
    submit_ended_at: datetime | None
    hold_until: datetime | None  # an uncertain submit's reservation is refunded by then
    submitted_at: datetime | None
    finished_at: datetime | None  # settled
    delivered_at: datetime | None  # the member saw the outcome (video, or why there is none)
    queued_at: datetime | None = None  # first entered the local queue (a requeue keeps it)
    attempts: int = 0  # submits begun: a temporary task failure is submitted once more
    retried_prediction_id: str | None = None  # the task that failed before the last submit
    lease_owner: str | None = None  # the process following the job (bot.leases), if any
    lease_until: datetime | None = None  # its lease runs out then unless renewed
    # The interaction the job was asked for, while a final state has not cleared it (all three
    # set, or none): any process following the job answers through it until it expires.
    interaction_app_id: int | None = None
    interaction_token: str | None = field(default=None, repr=False)  # a credential: not shown
    interaction_expires_at: datetime | None = None
    # Whoever asked, as Discord told it with the interaction: their locale (private messages are
    # in their language) and their roles (whose tiers count for the balance shown to them).
    member_locale: str | None = None
    member_roles: tuple[int, ...] = ()
    settlement: Settlement | None = None

    @property
    def owner(self) -> JobOwner:
        return JobOwner(self.guild_id, self.channel_id, self.member_id)

    @property
    def interaction(self) -> InteractionToken | None:
        """The stored interaction token, if any (expired or not)."""
        if (
            self.interaction_app_id is None
            or self.interaction_token is None
            or self.interaction_expires_at is None
        ):
            return None
        return InteractionToken(
            self.interaction_app_id, self.interaction_token, self.interaction_expires_at
        )


@dataclass(frozen=True)
class LedgerEntry:
    """One append-only ledger row. Kinds: reserve, charge, refund, grant, limit."""

    id: int
    guild_id: int
    member_id: int  # 0 = the server as a whole
    kind: str
    amount_micro: int
    period_key: str
    job_id: int | None
    actor_id: int | None
    note: str | None
    created_at: datetime


@dataclass(frozen=True)
class MemberUsage:
    """A member's spend in a period, for /usage."""

    member_id: int
    spent_micro: int
    jobs: int


class Stage(StrEnum):
    """What a member sees while waiting."""

    UPLOADING = "uploading to WaveSpeed"
    WAITING = "waiting for a turn"  # the local queue (the WaveSpeed account's limits)
    RETRYING = "retrying"  # WaveSpeed failed the task with a temporary error
    CHECKING = "checking with WaveSpeed"
    QUEUED = "queued at WaveSpeed"
    GENERATING = "generating"
    DOWNLOADING = "downloading the video"


STAGE_OF_STATUS = {"created": Stage.QUEUED, "processing": Stage.GENERATING}
