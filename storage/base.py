"""The Storage protocol: everything the rest of wanbot may ask of a store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from bot.domain.budget import Balance


class JobStatus(StrEnum):
    """Where a job is. Money moves only on the transitions named here.

    reserved    reserve row written; nothing sent to WaveSpeed yet (resume: refund)
    submitting  the submit POST may be in flight (resume: cannot know → settle as unconfirmed)
    submitted   WaveSpeed accepted it and we hold its prediction id (resume: poll)
    completed   charged; the video is ready but not yet delivered (resume: fetch + deliver)
    failed      refunded (or charged when unconfirmed); the member may not have been told yet
    delivered   final: the member has seen the outcome
    """

    RESERVED = "reserved"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    COMPLETED = "completed"
    FAILED = "failed"
    DELIVERED = "delivered"


IN_FLIGHT = (JobStatus.RESERVED, JobStatus.SUBMITTING, JobStatus.SUBMITTED)


@dataclass(frozen=True)
class JobOwner:
    """Who asked, and where the result goes. The CLI uses guild 0, member 0, channel 0."""

    guild_id: int
    channel_id: int
    member_id: int


@dataclass(frozen=True)
class JobRecord:
    """One row of the jobs table."""

    id: int
    guild_id: int
    channel_id: int
    member_id: int
    request_json: str  # GenerationRequest.model_dump_json()
    price_micro: int
    period_key: str
    status: JobStatus
    prediction_id: str | None
    wavespeed_status: str | None
    output_url: str | None
    has_nsfw: bool
    inference_ms: int | None
    error_code: int | None
    error_message: str | None
    result_message_id: int | None  # the message that carries the video
    created_at: datetime
    submitted_at: datetime | None
    finished_at: datetime | None
    delivered_at: datetime | None
    settlement: str | None = None  # "charge" or "refund" once settled (from the ledger)

    @property
    def owner(self) -> JobOwner:
        return JobOwner(self.guild_id, self.channel_id, self.member_id)


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


class Storage(Protocol):
    """A store of jobs and the budget ledger. Every money movement is one transaction."""

    async def close(self) -> None: ...

    # --- money + jobs -------------------------------------------------------------------------
    async def reserve(
        self, owner: JobOwner, request_json: str, price_micro: int, max_in_flight: int
    ) -> JobRecord:
        """Check both budgets and the in-flight limit, then write the job and its reserve row,
        all in one transaction. Raises BudgetExceeded / TooManyJobs, writing nothing."""
        ...

    async def mark_submitting(self, job_id: int, request_json: str) -> None: ...

    async def mark_submitted(self, job_id: int, prediction_id: str) -> None: ...

    async def set_wavespeed_status(self, job_id: int, wavespeed_status: str) -> None: ...

    async def charge(
        self, job_id: int, *, output_url: str | None, has_nsfw: bool, inference_ms: int | None
    ) -> bool:
        """Settle a reservation as spent (status completed). False if already settled."""
        ...

    async def charge_unconfirmed(self, job_id: int, error_message: str) -> bool:
        """Settle as spent although no result will come (status failed): the submit may have
        reached WaveSpeed, which may bill it. False if already settled."""
        ...

    async def refund(self, job_id: int, *, error_code: int | None, error_message: str) -> bool:
        """Release a reservation (status failed). False if already settled."""
        ...

    async def mark_delivered(self, job_id: int, result_message_id: int | None) -> None: ...

    async def get_job(self, job_id: int) -> JobRecord | None: ...

    async def unfinished_jobs(self) -> list[JobRecord]:
        """Jobs whose status is not delivered, oldest first."""
        ...

    async def recent_jobs(
        self, guild_id: int, member_id: int, limit: int = 5
    ) -> list[JobRecord]: ...

    # --- budgets ------------------------------------------------------------------------------
    async def member_balance(self, guild_id: int, member_id: int) -> Balance: ...

    async def server_balance(self, guild_id: int) -> Balance: ...

    async def grant(
        self, guild_id: int, member_id: int, amount_micro: int, actor_id: int, note: str | None
    ) -> None:
        """Add (or with a negative amount, remove) money for this period. member_id 0 = server."""
        ...

    async def set_allowance(
        self, guild_id: int, member_id: int, amount_micro: int, actor_id: int
    ) -> None:
        """Set a per-period allowance (a `limit` ledger row; latest wins). member_id 0 = server."""
        ...

    async def usage(self, guild_id: int) -> list[MemberUsage]:
        """Spend per member in the current period, largest first."""
        ...

    async def ledger(self, guild_id: int, period_key: str | None = None) -> list[LedgerEntry]:
        """Ledger rows of a server, oldest first; only one period when period_key is given."""
        ...

    # --- per-server settings (key/value text) --------------------------------------------------
    async def get_guild_setting(self, guild_id: int, key: str) -> str | None: ...

    async def set_guild_setting(self, guild_id: int, key: str, value: str | None) -> None: ...
