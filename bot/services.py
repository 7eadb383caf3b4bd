"""The long-lived parts of wanbot, opened from Settings and closed in reverse order."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bot.balance_watch import BalanceWatch
from bot.config import Settings, parse_listen
from bot.domain.queue import QueueLimits
from bot.runner import JobRunner, Reconciliation
from bot.wavespeed import PollPolicy, RetryPolicy, Timeouts, WaveSpeedClient
from bot.webhooks import WebhookServer
from storage import open_storage
from storage.base import Storage


@dataclass(frozen=True)
class Tuning:
    """Timings of the WaveSpeed client and the job runner; the defaults suit the real API,
    tests shorten them."""

    poll: PollPolicy | None = None  # None: PollPolicy() capped at JOB_TIMEOUT_S
    reconcile_every_s: float = 30.0  # how often an unanswered submit is looked for
    download_pause_s: float = 2.0  # between attempts to download a video
    lease_s: float | None = None  # None: JOB_LEASE_S
    queue_tick_s: float = 1.0  # how often the local queue looks at the database while jobs wait
    backstop_poll_s: float = 30.0  # with webhooks, how often a task is polled all the same
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    # False: poll only, even with WEBHOOK_PUBLIC_URL set (`wanbot generate`: the URL and the
    # port belong to the bot)
    webhooks: bool = True
    balance_every_s: float = 300.0  # how often the bot reads the WaveSpeed account's balance


@dataclass
class Services:
    """Storage, the WaveSpeed client and the job runner, and the webhook server if
    WEBHOOK_PUBLIC_URL is set."""

    settings: Settings
    storage: Storage
    client: WaveSpeedClient
    runner: JobRunner
    # the account's balance; read periodically once the bot starts it (cogs/alerts.py)
    balance: BalanceWatch
    webhooks: WebhookServer | None = None

    @classmethod
    async def open(cls, settings: Settings, tuning: Tuning | None = None) -> Services:
        """Open the database (applying migrations) and the API client."""
        tuning = tuning or Tuning()
        api_key = settings.require_api_key()  # before anything is opened
        storage = await open_storage(settings.database_url, settings.budget_policy)
        client = WaveSpeedClient(
            api_key,
            settings.wavespeed_base_url,
            retry=tuning.retry,
            timeouts=tuning.timeouts,
        )
        runner = JobRunner(
            storage,
            client,
            poll=tuning.poll or PollPolicy(timeout_s=settings.job_timeout_s),
            max_jobs_per_member=settings.max_jobs_per_member,
            reconciliation=Reconciliation(
                absent_after_s=settings.submit_absent_after_s,
                hold_max_s=settings.submit_hold_max_s,
                check_every_s=tuning.reconcile_every_s,
            ),
            download_pause_s=tuning.download_pause_s,
            lease_s=tuning.lease_s or settings.job_lease_s,
            limits=QueueLimits(
                settings.wavespeed_max_concurrent, settings.wavespeed_max_per_minute
            ),
            queue_tick_s=tuning.queue_tick_s,
            backstop_poll_s=tuning.backstop_poll_s,
            webhook_url=settings.webhook_public_url if tuning.webhooks else None,
        )
        webhooks = None
        if tuning.webhooks and settings.webhook_public_url and settings.webhook_listen:
            # results come by webhook as soon as WaveSpeed has them; polling stays as a backstop
            host, port = parse_listen(settings.webhook_listen)
            webhooks = WebhookServer(
                client.webhook_secret,
                runner.result_arrived,
                host=host,
                port=port,
                path=urlsplit(settings.webhook_public_url).path,
            )
            try:
                # a webhook for a job followed here may reach another process sharing the store
                await storage.listen_for_results(runner.result_announced)
                await webhooks.start()
            except BaseException:
                await client.close()
                await storage.close()
                raise
        balance = BalanceWatch(client, storage, every_s=tuning.balance_every_s)
        return cls(settings, storage, client, runner, balance, webhooks)

    async def close(self) -> None:
        """Stop following jobs, giving up their leases (another process or the next start
        carries them on), then close the client and the store. The webhook server stops first:
        no result arrives for a runner that is closing."""
        if self.webhooks is not None:
            await self.webhooks.stop()
        await self.balance.stop()
        await self.runner.close()
        await self.client.close()
        await self.storage.close()
