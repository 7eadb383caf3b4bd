"""The long-lived parts of wanbot, opened from Settings and closed in reverse order."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Settings
from bot.jobs import JobRunner
from bot.wavespeed import PollPolicy, WaveSpeedClient
from storage import open_storage
from storage.base import Storage


@dataclass
class Services:
    """Storage, the WaveSpeed client and the job runner."""

    settings: Settings
    storage: Storage
    client: WaveSpeedClient
    runner: JobRunner

    @classmethod
    async def open(cls, settings: Settings) -> Services:
        """Open the database (applying migrations) and the API client."""
        storage = await open_storage(settings.database_url, settings.budget_policy)
        client = WaveSpeedClient(settings.require_api_key(), settings.wavespeed_base_url)
        runner = JobRunner(
            storage,
            client,
            poll=PollPolicy(timeout_s=settings.job_timeout_s),
            max_jobs_per_member=settings.max_jobs_per_member,
        )
        return cls(settings, storage, client, runner)

    async def close(self) -> None:
        """Stop following jobs (they resume at the next start), then close the client and store."""
        await self.runner.close()
        await self.client.close()
        await self.storage.close()
