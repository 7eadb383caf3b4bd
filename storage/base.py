"""The Storage protocol: everything the rest of wanbot may ask of a store."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

from bot.domain.budget import Balance, RoleTier
from bot.domain.job import InteractionToken, JobOwner, JobRecord, LedgerEntry, MemberUsage
from bot.domain.lifecycle import JobState
from bot.domain.queue import QueueLimits, QueueSnapshot
from bot.domain.timing import TimingSample


class Storage(Protocol):
    """A store of jobs and the budget ledger. Every money movement is one transaction."""

    async def close(self) -> None: ...

    # --- money + jobs -------------------------------------------------------------------------
    async def reserve(
        self,
        owner: JobOwner,
        request_json: str,
        price_micro: int,
        max_in_flight: int,
        *,
        lease_owner: str | None = None,
        lease_s: float = 0.0,
        interaction: InteractionToken | None = None,
        roles: Collection[int] = (),
        locale: str | None = None,
    ) -> JobRecord:
        """Check both budgets and the in-flight limit, then write the job and its reserve row,
        all in one transaction. Raises BudgetExceeded / TooManyJobs, writing nothing. The
        member's allowance is read in that transaction, by bot.domain.budget's
        effective_allowance: their own, else the highest tier among `roles` (the Discord role
        ids they hold: only Discord knows them), else the default. With
        `lease_owner` the job is written already leased to it for `lease_s` seconds, so no other
        process can claim it before its first step. With `interaction` the job keeps the token
        of the interaction it was asked through, until it reaches a final state (`advance`
        clears it then) or `forget_interaction`. The job keeps `roles` and the member's Discord
        `locale` for good: whichever process follows it speaks to the member as asked."""
        ...

    async def advance(
        self, job_id: int, to: JobState, *, holder: str | None = None, **changes: object
    ) -> JobRecord:
        """Move a job to `to`, with the columns that go with the move, and write the ledger row
        that the move settles (bot.domain.lifecycle), all in one transaction; entering a final
        state clears the job's interaction token. Raises IllegalTransition, changing nothing,
        when the lifecycle does not allow the move. With `holder` (a runner's lease owner id)
        the move is made only if that runner still holds the job's lease, else LeaseLost: a
        process that was frozen past its lease cannot act on a job another one took over."""
        ...

    async def forget_interaction(self, job_id: int) -> None:
        """Clear the job's interaction token (Discord refused it; no state change)."""
        ...

    async def set_wavespeed_status(self, job_id: int, wavespeed_status: str) -> None:
        """Remember the last status WaveSpeed reported (no state change)."""
        ...

    async def known_predictions(self, prediction_ids: Collection[str]) -> set[str]:
        """Which of these WaveSpeed task ids already belong to a job."""
        ...

    async def get_job(self, job_id: int) -> JobRecord | None: ...

    async def unfinished_jobs(self) -> list[JobRecord]:
        """Jobs not in a final state, oldest first."""
        ...

    async def recent_jobs(
        self, guild_id: int, member_id: int, limit: int = 5
    ) -> list[JobRecord]: ...

    # --- leases: one process follows each unfinished job ----------------------------------------
    async def claim(
        self, job_id: int, owner: str, lease_s: float, *, dead_owner: str | None = None
    ) -> JobRecord | None:
        """Take the job's lease for `lease_s` seconds if it is unfinished and free: held by
        nobody, by `owner` already, by `dead_owner` (a holder known to have died), or by a
        process whose lease ran out. One conditional update; the job, or None if it is final or
        another live process holds it."""
        ...

    async def renew(self, job_ids: Collection[int], owner: str, lease_s: float) -> set[int]:
        """Extend, to `lease_s` seconds from now, the leases `owner` still holds among `job_ids`;
        return those renewed (a job another process took over is not)."""
        ...

    async def release(self, job_id: int, owner: str) -> None:
        """Give up the job's lease if `owner` holds it (else change nothing)."""
        ...

    # --- the local queue and timings (bot.domain.queue, bot.domain.timing) --------------------
    async def queue_snapshot(self, window_s: float = 60.0) -> QueueSnapshot:
        """The queued jobs (oldest first), the recent turns of their servers and members, how
        many jobs are at WaveSpeed and how many submits began in the last `window_s`, read at
        one moment."""
        ...

    async def admit(self, job_id: int, owner: str, limits: QueueLimits) -> JobRecord | None:
        """Move the queued job `owner` follows to `submitting` if the account's `limits` leave
        room (jobs at WaveSpeed, submits in its window), counting the attempt and logging
        the submit, in one transaction that no other admission interleaves with; None, changing
        nothing, if they do not, or if the job is no longer queued or followed by `owner`."""
        ...

    async def record_timing(self, job_id: int, sample: TimingSample) -> None:
        """Keep a finished job's timings (once per job)."""
        ...

    async def recent_timings(self, per_shape: int) -> list[TimingSample]:
        """The latest `per_shape` timings of each shape, oldest first."""
        ...

    # --- budgets ------------------------------------------------------------------------------
    async def member_balance(
        self, guild_id: int, member_id: int, *, roles: Collection[int] = ()
    ) -> Balance:
        """A member's budget in the current period; their allowance as `reserve` reads it for a
        member holding `roles`, and where it comes from (Balance.source)."""
        ...

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

    async def set_role_allowance(
        self, guild_id: int, role_id: int, amount_micro: int | None, actor_id: int
    ) -> None:
        """Set a role's tier, the allowance per period of members holding it (None clears it):
        an append-only role_allowances row with who did it; the latest row of a role wins."""
        ...

    async def role_tiers(self, guild_id: int) -> list[RoleTier]:
        """A server's current role tiers (cleared ones left out), largest first."""
        ...

    async def usage(self, guild_id: int) -> list[MemberUsage]:
        """Spend per member in the current period, largest first."""
        ...

    async def ledger(self, guild_id: int, period_key: str | None = None) -> list[LedgerEntry]:
        """Ledger rows of a server, oldest first; only one period when period_key is given."""
        ...

    async def audit(self) -> list[str]:
        """Recompute every running balance from the ledger; one line per difference (none:
        clean)."""
        ...

    # --- per-server settings (key/value text) --------------------------------------------------
    async def get_guild_setting(self, guild_id: int, key: str) -> str | None: ...

    async def set_guild_setting(self, guild_id: int, key: str, value: str | None) -> None: ...

    # --- bot-wide settings (key/value text) ----------------------------------------------------
    async def get_bot_setting(self, key: str) -> str | None: ...

    async def set_bot_setting(self, key: str, value: str | None) -> None: ...

    # --- results told between processes -------------------------------------------------------
    async def announce_result(self, prediction_id: str) -> bool:
        """Tell every process sharing the database that the task `prediction_id` has its result
        (a verified webhook came to this one): the process following its job polls it at once.
        False where the store cannot (SQLite): the follower finds it at its next poll."""
        ...

    async def listen_for_results(self, heard: Callable[[str], None]) -> None:
        """From now until close(), call `heard(prediction_id)` for every result announced by
        any process (this one included). Announcements are hints: one may be missed."""
        ...

    # --- health and metrics -------------------------------------------------------------------
    async def ping(self) -> None:
        """One trivial query that reads the database; raises whatever stops it answering."""
        ...

    async def job_counts(self) -> dict[str, int]:
        """How many jobs are in each state, read now (states without a job are left out)."""
        ...

    async def spend_by_guild(self) -> dict[int, int]:
        """What each server was charged in the current period, in micro-dollars (servers charged
        nothing are left out)."""
        ...

    # --- /history --------------------------------------------------------------------------------
    async def history(
        self, guild_id: int, member_id: int, *, offset: int, limit: int
    ) -> list[JobRecord]:
        """One page of a member's jobs in a server, newest first: `limit` jobs after skipping
        the `offset` newest."""
        ...

    async def history_count(self, guild_id: int, member_id: int) -> int:
        """How many jobs a member has in a server (every state)."""
        ...

    # --- money alerts (bot.domain.alerts) --------------------------------------------------------
    async def claim_alert(self, guild_id: int, key: str) -> bool:
        """Write the server's alert marker `key` (a server setting, valued with the moment) if
        it is absent; True only for the one caller that wrote it, however many processes or
        tasks try at once. Deleting it (`set_guild_setting(..., None)`) re-arms the alert."""
        ...

    async def guilds_with_setting(self, key: str) -> dict[int, str]:
        """Every server that has the setting `key`, with its value."""
        ...
