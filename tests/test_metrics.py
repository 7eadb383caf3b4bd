"""Health and metrics: the store's figures on both backends, the counting hooks, the WaveSpeed
probe against the fake API, and /healthz and /metrics of a real bot on loopback (the real
discord.py client on the fake Discord, the fake WaveSpeed), parsed like Prometheus parses them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bot.app import WanBot
from bot.config import ConfigError, load_settings
from bot.domain.job import JobOwner
from bot.domain.lifecycle import JobState
from bot.metrics import BotMetrics, count_wavespeed_error, observe_delivery
from bot.monitoring import MonitoringServer, WaveSpeedProbe, check_discord
from bot.testing.fake_wavespeed import FakeWaveSpeed
from bot.wavespeed import AuthError, RateLimited, TransientError, WaveSpeedClient
from storage import PostgresStorage, SqliteStorage, open_storage
from tests.conftest import FAST_RETRY, FAST_TIMEOUTS, TEST_API_KEY
from tests.discord_world import GUILD, World, make_world
from tests.fakes.discord_models import FakeInteraction
from tests.storage_backends import POLICY, Clock
from tests.test_storage import PATHS, move

Store = SqliteStorage | PostgresStorage

OTHER_GUILD = 1002
CHANNEL = 2002
MEMBER = 3003
PRICE = 125_000  # 5 s, 720p, silent
PLENTY = 10**12


# --- helpers ----------------------------------------------------------------------------------
def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def job_in(store: Store, state: JobState, guild_id: int = GUILD) -> None:
    """A new job of MEMBER's in `guild_id`, moved along a shortest allowed way to `state`."""
    job = await store.reserve(JobOwner(guild_id, CHANNEL, MEMBER), "{}", PRICE, max_in_flight=100)
    for step in PATHS[state]:
        await move(store, job.id, step)


async def lift_budgets(store: Store, *guild_ids: int) -> None:
    for guild_id in guild_ids:
        await store.set_allowance(guild_id, MEMBER, PLENTY, actor_id=1)
        await store.set_allowance(guild_id, 0, PLENTY, actor_id=1)


def families(text: str) -> dict[str, list[Sample]]:
    """Prometheus text, parsed by prometheus_client's own parser: samples by family name."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The value of the one sample called `name` with exactly these labels."""
    [found] = [s.value for s in samples if s.name == name and s.labels == labels]
    return found


async def get(url: str) -> tuple[int, str, str]:
    """GET `url`: status, Content-Type header and body."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


# --- settings ---------------------------------------------------------------------------------
def test_metrics_listen_is_host_and_port_or_nothing() -> None:
    assert load_settings(metrics_listen="127.0.0.1:9108").metrics_address == ("127.0.0.1", 9108)
    assert load_settings(metrics_listen="[::1]:9108").metrics_address == ("::1", 9108)
    assert load_settings(metrics_listen="").metrics_address is None
    assert load_settings().metrics_address is None
    with pytest.raises(ConfigError, match=r"^METRICS_LISTEN is invalid: must be host:port"):
        load_settings(metrics_listen="9108")


# --- the store's figures, on both backends ----------------------------------------------------
async def test_ping_answers_until_the_store_is_closed(database_url: str, clock: Clock) -> None:
    store = await open_storage(database_url, POLICY, clock=clock)
    await store.ping()
    await store.close()
    with pytest.raises(Exception):  # noqa: B017 - each driver has its own "closed" error
        await store.ping()


async def test_job_counts_are_the_jobs_in_each_state(store: Store) -> None:
    assert await store.job_counts() == {}
    await lift_budgets(store, GUILD)
    for state in [
        JobState.RESERVED,
        JobState.QUEUED,
        JobState.QUEUED,
        JobState.SUBMITTED,
        JobState.DELIVERED,
        JobState.DELIVERED,
        JobState.DELIVERED,
        JobState.CLOSED,
    ]:
        await job_in(store, state)
    assert await store.job_counts() == {
        "reserved": 1,
        "queued": 2,
        "submitted": 1,
        "delivered": 3,
        "closed": 1,
    }


async def test_spend_by_guild_is_this_periods_charges(store: Store, clock: Clock) -> None:
    assert await store.spend_by_guild() == {}
    await lift_budgets(store, GUILD, OTHER_GUILD)
    await job_in(store, JobState.DELIVERED)  # charged
    await job_in(store, JobState.CLOSED)  # refunded: not spent
    await job_in(store, JobState.SUBMITTED)  # held: not spent yet
    for _ in range(2):
        await job_in(store, JobState.DELIVERED, guild_id=OTHER_GUILD)
    spend = await store.spend_by_guild()
    assert spend == {GUILD: PRICE, OTHER_GUILD: 2 * PRICE}
    for guild_id, spent in spend.items():  # the ledger's charge rows say the same
        charges = [e for e in await store.ledger(guild_id) if e.kind == "charge"]
        assert sum(e.amount_micro for e in charges) == spent

    clock.advance(days=1)  # POLICY's period is a day: a new period has spent nothing yet
    assert await store.spend_by_guild() == {}
    await job_in(store, JobState.DELIVERED, guild_id=OTHER_GUILD)
    assert await store.spend_by_guild() == {OTHER_GUILD: PRICE}


async def test_the_metrics_text_carries_the_stores_figures(store: Store) -> None:
    await lift_budgets(store, GUILD)
    for state in [JobState.QUEUED, JobState.DELIVERED, JobState.DELIVERED]:
        await job_in(store, state)
    metrics = BotMetrics(store)
    try:
        parsed = families((await metrics.render()).decode())
    finally:
        metrics.close()
    assert value(parsed["wanbot_database_up"], "wanbot_database_up") == 1
    jobs = parsed["wanbot_jobs"]
    assert value(jobs, "wanbot_jobs", state="delivered") == 2
    assert value(jobs, "wanbot_jobs", state="queued") == 1
    assert value(jobs, "wanbot_jobs", state="failed") == 0  # every state, even with no job
    assert value(parsed["wanbot_queue_depth"], "wanbot_queue_depth") == 1
    spend = parsed["wanbot_server_spend_usd"]
    assert value(spend, "wanbot_server_spend_usd", guild_id=str(GUILD)) == 2 * PRICE / 1e6


# --- the hooks --------------------------------------------------------------------------------
@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_storage(str(tmp_path / "wanbot.db"), POLICY)
    yield store
    await store.close()


async def test_hooks_count_into_every_open_registry_until_closed(sqlite_store: Store) -> None:
    first, second = BotMetrics(sqlite_store), BotMetrics(sqlite_store)  # no name clash
    observe_delivery(42.0)
    error = RateLimited("slow down")
    count_wavespeed_error(error)
    count_wavespeed_error(error)  # the same error passing through a second call: once
    count_wavespeed_error(TransientError("down"))
    first.close()
    observe_delivery(7.0)  # only the second one still counts
    try:
        for metrics, deliveries in [(first, 1), (second, 2)]:
            parsed = families((await metrics.render()).decode())
            delivery = parsed["wanbot_delivery_seconds"]
            assert value(delivery, "wanbot_delivery_seconds_count") == deliveries
            assert value(delivery, "wanbot_delivery_seconds_bucket", le="60.0") == deliveries
            errors = parsed["wanbot_wavespeed_errors"]
            assert value(errors, "wanbot_wavespeed_errors_total", kind="RateLimited") == 1
            assert value(errors, "wanbot_wavespeed_errors_total", kind="TransientError") == 1
    finally:
        second.close()


async def test_the_client_counts_each_error_it_raises_once(
    sqlite_store: Store, fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    metrics = BotMetrics(sqlite_store)
    try:
        fake_wavespeed.fail_next("result", 503, times=None)
        with pytest.raises(TransientError):
            await wavespeed_client.get_result("no-such-task")
        fake_wavespeed.clear_faults()
        fake_wavespeed.fail_next("history", 429, times=None)
        with pytest.raises(RateLimited):  # find_tasks → history: counted once, not twice
            await wavespeed_client.find_tasks(fake_wavespeed.now(), fake_wavespeed.now())
        fake_wavespeed.clear_faults()
        async with WaveSpeedClient(
            "not-the-key", fake_wavespeed.base_url, retry=FAST_RETRY, timeouts=FAST_TIMEOUTS
        ) as refused:
            with pytest.raises(AuthError):
                await refused.submit({"prompt": "a cat"})
            assert await refused.check_access() == 401  # a health probe is not counted
        parsed = families((await metrics.render()).decode())
    finally:
        metrics.close()
    counted = parsed["wanbot_wavespeed_errors"]
    errors = {s.labels["kind"]: s.value for s in counted if s.name.endswith("_total")}
    assert errors == {"TransientError": 1, "RateLimited": 1, "AuthError": 1}


# --- the WaveSpeed probe ----------------------------------------------------------------------
async def test_the_wavespeed_probe_tells_reachable_unauthorized_and_unreachable(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    fresh = WaveSpeedProbe(wavespeed_client, cache_s=0)
    assert (await fresh.check()).status == "reachable"
    fake_wavespeed.fail_next("balance", 503)
    down = await fresh.check()
    assert (down.ok, down.status) == (False, "unreachable")
    async with WaveSpeedClient("not-the-key", fake_wavespeed.base_url) as refused:
        check = await WaveSpeedProbe(refused).check()
    assert (check.ok, check.status) == (False, "unauthorized")
    assert "WAVESPEED_API_KEY" in check.detail and "not-the-key" not in check.detail


async def test_the_wavespeed_probe_keeps_its_answer_for_cache_s(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    now = [1000.0]
    probe = WaveSpeedProbe(wavespeed_client, cache_s=30, clock=lambda: now[0])
    checks = await asyncio.gather(*(probe.check() for _ in range(5)))
    assert all(check.ok for check in checks)
    now[0] += 29
    assert (await probe.check()).age_s == 29
    assert len(fake_wavespeed.calls("balance")) == 1  # six probes, one request
    fake_wavespeed.fail_next("balance", 502, times=None)
    assert (await probe.check()).ok  # still the kept answer
    now[0] += 1
    assert (await probe.check()).status == "unreachable"
    assert len(fake_wavespeed.calls("balance")) == 2


# --- a real bot ---------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def metrics_world(tmp_path: Path, **settings: Any) -> AsyncIterator[tuple[World, str]]:
    """A world whose bots serve health and metrics on a free loopback port, and that address."""
    port = free_port()
    async with make_world(tmp_path, metrics_listen=f"127.0.0.1:{port}", **settings) as world:
        yield world, f"http://127.0.0.1:{port}"


async def healthz(base: str, status: int, within_s: float = 5.0) -> dict[str, Any]:
    """/healthz's report once it answers `status` (the first heartbeat may still be on its way)."""
    async with asyncio.timeout(within_s):
        while True:
            code, content_type, body = await get(f"{base}/healthz")
            if code == status:
                assert content_type.startswith("application/json")
                report: dict[str, Any] = json.loads(body)
                return report
            await asyncio.sleep(0.02)


def done(interaction: FakeInteraction) -> bool:
    """The member's status message says the job is done."""
    return interaction.original is not None and "Done" in (interaction.original.content or "")


def assert_no_secret(world: World, *bodies: str) -> None:
    for body in bodies:
        assert TEST_API_KEY not in body and world.discord.bot_token not in body


async def test_a_bot_reports_healthy_and_its_jobs_in_metrics(
    tmp_path: Path, database_url: str
) -> None:
    async with (
        metrics_world(tmp_path, database_url=database_url) as (world, base),
        world.bot() as bot,
    ):
        report = await healthz(base, 200)
        assert report["status"] == "ok" and report["failing"] == []
        assert {name: check["status"] for name, check in report["checks"].items()} == {
            "discord": "connected",
            "database": "reachable",
            "wavespeed": "reachable",
        }

        interaction = await world.video("the cat turns its head")
        await world.discord.wait_for_message(
            lambda m: any(a.filename.endswith(".mp4") for a in m.attachments), timeout=10
        )
        await interaction.wait_for(done)
        code, content_type, text = await get(f"{base}/metrics")
        assert code == 200 and content_type.startswith("text/plain")
        parsed = families(text)
        assert value(parsed["wanbot_jobs"], "wanbot_jobs", state="delivered") == 1
        assert value(parsed["wanbot_jobs"], "wanbot_jobs", state="queued") == 0
        assert value(parsed["wanbot_queue_depth"], "wanbot_queue_depth") == 0
        spend = parsed["wanbot_server_spend_usd"]
        assert value(spend, "wanbot_server_spend_usd", guild_id=str(GUILD)) == 0.25
        assert "wanbot_wavespeed_errors" in parsed and "wanbot_delivery_seconds" in parsed
        assert "process_resident_memory_bytes" in parsed
        assert_no_secret(world, text, json.dumps(report))
        assert bot.monitoring is not None
    assert bot.monitoring is None  # closed with the bot: the port is free again
    with socket.socket() as again:
        again.bind(("127.0.0.1", int(base.rsplit(":", 1)[1])))


async def test_a_delivered_job_is_observed_in_the_delivery_histogram(tmp_path: Path) -> None:
    async with metrics_world(tmp_path) as (world, base), world.bot():
        interaction = await world.video("the cat turns its head")
        await interaction.wait_for(done)
        async with asyncio.timeout(2):  # observed as the delivery is recorded, so by now
            while True:
                delivery = families((await get(f"{base}/metrics"))[2])["wanbot_delivery_seconds"]
                if value(delivery, "wanbot_delivery_seconds_count"):
                    break
                await asyncio.sleep(0.05)
        assert value(delivery, "wanbot_delivery_seconds_count") == 1
        assert 0 < value(delivery, "wanbot_delivery_seconds_sum") < 10


async def test_healthz_is_503_naming_wavespeed_when_it_is_down(tmp_path: Path) -> None:
    async with metrics_world(tmp_path) as (world, base):
        await world.wavespeed.stop()
        async with world.bot():
            report = await healthz(base, 503)
    assert report["status"] == "failing" and report["failing"] == ["wavespeed"]
    wavespeed = report["checks"]["wavespeed"]
    assert (wavespeed["ok"], wavespeed["status"]) == (False, "unreachable")
    assert report["checks"]["discord"]["ok"] and report["checks"]["database"]["ok"]
    assert_no_secret(world, json.dumps(report))


async def test_healthz_is_503_naming_the_database_once_it_is_closed(
    tmp_path: Path, database_url: str, clock: Clock
) -> None:
    store = await open_storage(database_url, POLICY, clock=clock)
    async with make_world(tmp_path) as world, world.bot() as bot:
        server = await MonitoringServer.open(
            bot, store, bot.services.client, ("127.0.0.1", 0), wavespeed_cache_s=0
        )
        base = f"http://127.0.0.1:{server.port}"
        try:
            assert (await healthz(base, 200))["failing"] == []
            await store.close()
            report = await healthz(base, 503)
            assert report["failing"] == ["database"]
            assert report["checks"]["database"]["status"] == "unreachable"
            code, _, text = await get(f"{base}/metrics")  # still answers, saying so
            assert code == 200
            parsed = families(text)
            assert value(parsed["wanbot_database_up"], "wanbot_database_up") == 0
            assert "wanbot_jobs" not in parsed
        finally:
            await server.close()


async def test_discord_check_follows_the_client(tmp_path: Path) -> None:
    async with make_world(tmp_path) as world:
        unstarted = WanBot(world.settings)  # never logged in: nothing to close
        assert check_discord(unstarted).status == "not_ready"
        async with world.bot() as bot:
            async with asyncio.timeout(5):  # ready; the first heartbeat's answer follows
                while check_discord(bot).status != "connected":
                    await asyncio.sleep(0.02)
            assert "1 shard(s) connected" in check_discord(bot).detail
        assert check_discord(bot).status == "closed"


async def test_a_taken_port_is_one_clear_configuration_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with make_world(tmp_path, metrics_listen=f"127.0.0.1:{port}") as world:
            with pytest.raises(ConfigError, match=r"^METRICS_LISTEN is invalid: cannot listen"):
                async with world.bot():
                    pass
