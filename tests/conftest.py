"""Shared fixtures: a fake WaveSpeed API on loopback and a client pointed at it; the databases
the storage tests run on (SQLite files, and schemas of their own on a PostgreSQL server) and a
store opened on each; and a closing line that says how many PostgreSQL tests ran."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.domain.queue import QueueLimits
from bot.testing.fake_wavespeed import FakeWaveSpeed
from bot.wavespeed import PollPolicy, RetryPolicy, Timeouts, WaveSpeedClient
from storage import PostgresStorage, SqliteStorage, open_storage
from storage.postgres import PostgresTarget
from tests.storage_backends import (
    BACKENDS,
    POLICY,
    POSTGRES_URL,
    START,
    Clock,
    create_schema,
    drop_schema,
    in_ci,
    new_schema_name,
    run_on_own_loop,
    truncate_tables,
    unreachable_reason,
    with_search_path,
)

TEST_API_KEY = "ws-test-key-5f2c9e1d7b"  # distinctive, so tests can assert it never leaks
FAST_RETRY = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05, max_retry_after_s=5.0)
FAST_TIMEOUTS = Timeouts(connect_s=2.0, read_s=2.0, submit_s=2.0, upload_s=2.0, download_s=5.0)
# Account limits no test reaches unless it means to (tests of the local queue set their own).
ROOMY_LIMITS = QueueLimits(max_concurrent=1000, max_per_minute=1000)
FAST_POLL = PollPolicy(first_delay_s=0.02, factor=1.5, max_interval_s=0.1, timeout_s=10.0)


@pytest.fixture
async def fake_wavespeed() -> AsyncIterator[FakeWaveSpeed]:
    """A FakeWaveSpeed on 127.0.0.1 (any free port) accepting TEST_API_KEY; tasks take ~0.2 s."""
    async with FakeWaveSpeed(api_key=TEST_API_KEY, queue_s=0.05, processing_s=0.15) as fake:
        yield fake


@pytest.fixture
async def wavespeed_client(fake_wavespeed: FakeWaveSpeed) -> AsyncIterator[WaveSpeedClient]:
    """A WaveSpeedClient on the fake, with fast retries (3 attempts, ≤ 50 ms apart) and timeouts."""
    async with WaveSpeedClient(
        TEST_API_KEY, fake_wavespeed.base_url, retry=FAST_RETRY, timeouts=FAST_TIMEOUTS
    ) as client:
        yield client


@pytest.fixture
def fast_poll() -> PollPolicy:
    """A poll policy for jobs of a fraction of a second (20 ms first, ≤ 100 ms apart, 10 s cap)."""
    return FAST_POLL


# --- databases for the storage tests ---------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The URL of the PostgreSQL server for tests (WANBOT_TEST_POSTGRES_URL), checked once. When
    none answers, every test that needs it is skipped for that one reason; in CI it fails."""
    reason = run_on_own_loop(lambda: unreachable_reason(POSTGRES_URL))
    if reason is not None:
        where = PostgresTarget.parse(POSTGRES_URL)
        if in_ci():
            pytest.fail(f"PostgreSQL not reachable at {where} ({reason}), and CI must test it")
        pytest.skip(f"PostgreSQL not reachable at {where} ({reason}): storage tests on it skipped")
    return POSTGRES_URL


@pytest.fixture(scope="session")
def postgres_run_url(postgres_server: str) -> Iterator[str]:
    """This test run's own schema on the server (wanbot_test_<hex>), dropped when the run ends;
    the URL points every connection at it."""
    schema = new_schema_name()
    run_on_own_loop(lambda: create_schema(postgres_server, schema))
    yield with_search_path(postgres_server, schema)
    run_on_own_loop(lambda: drop_schema(postgres_server, schema))


@pytest.fixture
async def postgres_url(postgres_run_url: str) -> str:
    """The run's schema with every table emptied (migrations stay applied)."""
    await truncate_tables(postgres_run_url)
    return postgres_run_url


@pytest.fixture
async def fresh_postgres_url(postgres_server: str) -> AsyncIterator[str]:
    """A schema of the test's own, with nothing in it yet (not even migrations)."""
    schema = new_schema_name()
    await create_schema(postgres_server, schema)
    yield with_search_path(postgres_server, schema)
    await drop_schema(postgres_server, schema)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend in turn: a new SQLite file, then the run's PostgreSQL
    schema emptied (marked `postgres`)."""
    if request.param == "sqlite":
        return str(tmp_path / "wanbot.db")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def clock() -> Clock:
    """The clock of the `store` fixture's store, at START until a test moves it."""
    return Clock(START)


@pytest.fixture
async def store(database_url: str, clock: Clock) -> AsyncIterator[SqliteStorage | PostgresStorage]:
    """An empty store on each backend in turn (see `database_url`), with POLICY and `clock`."""
    storage = await open_storage(database_url, POLICY, clock=clock)
    yield storage
    await storage.close()


# --- how many PostgreSQL tests ran -------------------------------------------------------------
_postgres_tests: set[str] = set()
_postgres_outcomes: Counter[str] = Counter()
_postgres_skip_reasons: set[str] = set()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _postgres_tests.update(item.nodeid for item in items if item.get_closest_marker("postgres"))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid not in _postgres_tests:
        return
    if report.when == "call":
        _postgres_outcomes[report.outcome] += 1
    elif report.when == "setup" and report.skipped:
        _postgres_outcomes["skipped"] += 1
        if isinstance(report.longrepr, tuple):  # (path, line, "Skipped: <reason>")
            _postgres_skip_reasons.add(report.longrepr[2].removeprefix("Skipped: "))
    elif report.when == "setup" and report.failed:
        _postgres_outcomes["error"] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line: how many PostgreSQL tests ran, and why any were skipped."""
    if not _postgres_tests:
        return
    counts = _postgres_outcomes
    line = (
        f"PostgreSQL storage tests run: {counts['passed'] + counts['failed']} "
        f"({counts['passed']} passed, {counts['failed']} failed)"
    )
    if counts["error"]:
        line += f"; {counts['error']} could not start"
    if counts["skipped"]:
        line += f"; {counts['skipped']} skipped: {'; '.join(sorted(_postgres_skip_reasons))}"
    terminalreporter.write_line(line)
