"""A webhook that reaches another process than the one following its job: several processes behind
one URL, or a job taken over after a restart. On PostgreSQL the process that took the webhook
announces the task (NOTIFY) and the one following it polls the result at once; on SQLite the
follower finds it at its backstop poll.

First the stores (a real PostgreSQL server and SQLite files), then two real `Services` sharing one
PostgreSQL database and one webhook URL, against the fake WaveSpeed sending signed webhooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from bot.config import load_settings
from bot.domain.job import JobOwner
from bot.domain.lifecycle import JobState
from bot.services import Services, Tuning
from bot.testing.fake_wavespeed import FakeWaveSpeed
from storage import open_storage, pg_results
from storage.base import Storage
from tests.conftest import FAST_RETRY, FAST_TIMEOUTS, TEST_API_KEY
from tests.test_webhooks import (
    PATH,
    POLICY,
    REQUEST,
    SLOW_POLL,
    Watcher,
    free_port,
    wait_for_attempts,
)

CHANNEL = 2002


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def listening(url: str) -> AsyncIterator[tuple[Storage, list[str]]]:
    """A store listening for results, and what it has heard."""
    heard: list[str] = []
    async with await open_storage(url, POLICY) as store:
        await store.listen_for_results(heard.append)
        yield store, heard


# --- the stores -------------------------------------------------------------------------------
@pytest.mark.postgres
async def test_every_process_hears_what_any_one_announces(postgres_url: str) -> None:
    async with listening(postgres_url) as (first, first_heard):
        async with listening(postgres_url) as (second, second_heard):
            assert await second.announce_result("task-1") is True
            assert await first.announce_result("task-2") is True
            await eventually(lambda: len(first_heard) == len(second_heard) == 2)
            assert first_heard == second_heard == ["task-1", "task-2"]
        # a store that closed stops listening; the others go on
        assert await first.announce_result("task-3") is True
        await eventually(lambda: first_heard[-1:] == ["task-3"])
        assert second_heard == ["task-1", "task-2"]


@pytest.mark.postgres
async def test_listening_resumes_after_the_connection_is_lost(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(pg_results, "RELISTEN_PAUSE_S", 0.1)
    async with listening(postgres_url) as (store, heard):
        admin = await asyncpg.connect(postgres_url)
        try:
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1 AND datname = current_database()",
                pg_results.APPLICATION_NAME,
            )
        finally:
            await admin.close()
        assert ended >= 1  # the listening session, cut off as a server restart would
        await eventually(lambda: "listening again" in caplog.text)

        async def announced_and_heard() -> bool:
            await store.announce_result("after")  # until the new LISTEN is in place
            await asyncio.sleep(0.05)
            return "after" in heard

        async with asyncio.timeout(5):
            while not await announced_and_heard():
                pass
    assert postgres_url.split("@")[0] not in caplog.text  # no credentials in the log


async def test_sqlite_cannot_announce(tmp_path: Path) -> None:
    async with listening(str(tmp_path / "wanbot.db")) as (store, heard):
        assert await store.announce_result("task-1") is False
        await asyncio.sleep(0.1)
        assert heard == []


# --- two processes behind one URL ------------------------------------------------------------
@contextlib.asynccontextmanager
async def process(
    fake: FakeWaveSpeed, database_url: str, public_url: str, listen: str
) -> AsyncIterator[Services]:
    """What one bot process opens: the store, the client, the runner and the webhook server.
    Its first poll of a task comes after a minute, its backstop poll after 30 s."""
    settings = load_settings(
        discord_token="unused",
        wavespeed_api_key=TEST_API_KEY,
        wavespeed_base_url=fake.base_url,
        database_url=database_url,
        member_budget_usd="5.00",
        server_budget_usd="50.00",
        wavespeed_max_concurrent="10",
        wavespeed_max_per_minute="100",
        webhook_public_url=public_url,
        webhook_listen=listen,
    )
    tuning = Tuning(poll=SLOW_POLL, retry=FAST_RETRY, timeouts=FAST_TIMEOUTS, queue_tick_s=0.05)
    services = await Services.open(settings, tuning)
    try:
        yield services
    finally:
        await services.close()


@pytest.mark.postgres
async def test_a_webhook_taken_by_another_process_finishes_the_job_at_once(
    fake_wavespeed: FakeWaveSpeed, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The shared URL leads to process B; process A follows the job. B has no job waiting on
    the task and tells every process; A polls its result then, not at its backstop poll."""
    caplog.set_level(logging.INFO)
    port_a, port_b = free_port(), free_port()
    shared_url = f"http://127.0.0.1:{port_b}{PATH}"
    async with (
        process(fake_wavespeed, postgres_url, shared_url, f"127.0.0.1:{port_a}") as a,
        process(fake_wavespeed, postgres_url, shared_url, f"127.0.0.1:{port_b}") as b,
    ):
        assert b.webhooks is not None and b.webhooks.url == shared_url
        watcher = Watcher()
        loop = asyncio.get_running_loop()
        started = loop.time()
        job = await a.runner.reserve(JobOwner(1, CHANNEL, 3), REQUEST)
        a.runner.run(job, watcher)
        async with asyncio.timeout(10):
            await a.runner.wait(job.id)
        took = loop.time() - started

        finished = await a.storage.get_job(job.id)
        assert finished is not None and finished.state is JobState.DELIVERED
        assert finished.settlement == "charge" and watcher.videos == [job.id]
        assert took < 5.0, took  # the task takes ~0.2 s; A's first poll comes after 30 s
        await wait_for_attempts(fake_wavespeed, 1)
        [attempt] = fake_wavespeed.webhook_attempts
        assert (attempt.url, attempt.status) == (shared_url, 200)  # B took it
        assert "told the others" in caplog.text
        # one GET of the result, by A, when told (B never polls a task it does not follow)
        assert len(fake_wavespeed.calls("result")) == 1
