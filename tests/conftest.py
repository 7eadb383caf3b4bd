"""Shared fixtures: a fake WaveSpeed API on loopback and a client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.testing.fake_wavespeed import FakeWaveSpeed
from bot.wavespeed import PollPolicy, RetryPolicy, Timeouts, WaveSpeedClient

TEST_API_KEY = "ws-test-key-5f2c9e1d7b"  # distinctive, so tests can assert it never leaks
FAST_RETRY = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05, max_retry_after_s=5.0)
FAST_TIMEOUTS = Timeouts(connect_s=2.0, read_s=2.0, submit_s=2.0, upload_s=2.0, download_s=5.0)
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
