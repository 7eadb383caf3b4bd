"""WaveSpeedClient.download_to: the video streamed to a file, never held whole in memory.

Against the fake WaveSpeed API (which announces Content-Length), and against a small loopback
server that sends its body in chunks without announcing a length, or breaks off mid-body.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from bot.testing.fake_wavespeed import FakeWaveSpeed
from bot.wavespeed import PollPolicy, TooLarge, TransientError, WaveSpeedClient, WaveSpeedError
from tests.conftest import FAST_POLL, FAST_RETRY, FAST_TIMEOUTS, TEST_API_KEY

BODY = {"image": "https://cdn.example/cat.png", "prompt": "the cat blinks"}  # not fetched
MIB = 1024 * 1024
VIDEO = os.urandom(3 * MIB)  # random: a wrong or missing byte anywhere shows


async def downloaded(client: WaveSpeedClient, url: str, *, max_bytes: int) -> bytes:
    """What download_to writes, read back from a temporary folder (for tests of the client
    that only care about the bytes)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "video.mp4"
        size = await client.download_to(url, path, max_bytes=max_bytes)
        data = path.read_bytes()
    assert size == len(data)
    return data


async def output_of(fake: FakeWaveSpeed, client: WaveSpeedClient, poll: PollPolicy) -> str:
    """Make a task at the fake and return its output link."""
    prediction = await client.submit(BODY)
    return (await client.wait_for_result(prediction.id, poll)).outputs[0]


@pytest.fixture
async def big_fake() -> AsyncIterator[FakeWaveSpeed]:
    """A fake whose every output is VIDEO."""
    async with FakeWaveSpeed(
        api_key=TEST_API_KEY, queue_s=0.01, processing_s=0.05, video=VIDEO
    ) as fake:
        yield fake


@pytest.fixture
async def big_client(big_fake: FakeWaveSpeed) -> AsyncIterator[WaveSpeedClient]:
    async with WaveSpeedClient(
        TEST_API_KEY, big_fake.base_url, retry=FAST_RETRY, timeouts=FAST_TIMEOUTS
    ) as client:
        yield client


async def test_a_large_video_is_written_byte_for_byte(
    big_fake: FakeWaveSpeed, big_client: WaveSpeedClient, tmp_path: Path
) -> None:
    url = await output_of(big_fake, big_client, FAST_POLL)
    path = tmp_path / "out.mp4"
    size = await big_client.download_to(url, path, max_bytes=3 * MIB)
    assert size == len(VIDEO) == path.stat().st_size
    assert path.read_bytes() == VIDEO
    assert len(big_fake.calls("output")) == 1


async def test_content_length_over_the_limit_is_refused_before_any_file(
    big_fake: FakeWaveSpeed, big_client: WaveSpeedClient, tmp_path: Path
) -> None:
    url = await output_of(big_fake, big_client, FAST_POLL)
    path = tmp_path / "out.mp4"
    with pytest.raises(TooLarge) as caught:
        await big_client.download_to(url, path, max_bytes=3 * MIB - 1)
    assert caught.value.size == 3 * MIB and caught.value.max_bytes == 3 * MIB - 1
    assert not path.exists()
    assert len(big_fake.calls("output")) == 1  # refused at once, not retried


async def test_a_refused_download_replaces_no_earlier_file_with_a_partial_one(
    big_fake: FakeWaveSpeed, big_client: WaveSpeedClient, tmp_path: Path
) -> None:
    """A file already at the path (an earlier attempt's) is gone too: never a stale video."""
    url = await output_of(big_fake, big_client, FAST_POLL)
    path = tmp_path / "out.mp4"
    path.write_bytes(b"an earlier attempt")
    with pytest.raises(TooLarge):
        await big_client.download_to(url, path, max_bytes=0)
    assert not path.exists()


async def test_a_failed_download_leaves_no_file(
    big_fake: FakeWaveSpeed, big_client: WaveSpeedClient, tmp_path: Path
) -> None:
    url = await output_of(big_fake, big_client, FAST_POLL)
    big_fake.fail_next("output", 503, times=None)
    path = tmp_path / "out.mp4"
    with pytest.raises(WaveSpeedError) as caught:
        await big_client.download_to(url, path, max_bytes=10 * MIB)
    assert caught.value.http_status == 503 and caught.value.retryable
    assert len(big_fake.calls("output")) == FAST_RETRY.attempts
    assert not path.exists()


# --- a server that streams without Content-Length, or breaks off -----------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """Serve `handler` at GET /video.mp4 on loopback; yields its URL."""
    app = web.Application()
    app.router.add_get("/video.mp4", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/video.mp4"
    finally:
        await runner.cleanup()


class Streamer:
    """Sends `chunks` chunks of 64 KiB without announcing the length; with `break_after`,
    drops the connection after that many on every request. Counts what it sent."""

    def __init__(self, chunks: int, break_after: int | None = None) -> None:
        self.chunks = chunks
        self.break_after = break_after
        self.requests = 0
        self.sent = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for n in range(self.chunks):
            if n == self.break_after:
                assert request.transport is not None
                request.transport.close()
                return response
            await response.write(bytes([n % 256]) * 65536)
            self.sent += 65536
        await response.write_eof()
        return response


@pytest.fixture
async def client() -> AsyncIterator[WaveSpeedClient]:
    async with WaveSpeedClient(
        TEST_API_KEY, "http://api.invalid", retry=FAST_RETRY, timeouts=FAST_TIMEOUTS
    ) as client:
        yield client


async def test_a_body_without_length_is_stopped_at_the_limit(
    client: WaveSpeedClient, tmp_path: Path
) -> None:
    streamer = Streamer(chunks=160)  # 10 MiB, of which only a little more than 1 MiB is read
    path = tmp_path / "out.mp4"
    async with serve(streamer.handle) as url:
        with pytest.raises(TooLarge) as caught:
            await client.download_to(url, path, max_bytes=MIB)
    assert MIB < caught.value.size <= MIB + 65536
    assert not path.exists()
    assert streamer.requests == 1 and streamer.sent < 10 * MIB


async def test_a_body_without_length_within_the_limit_is_kept(
    client: WaveSpeedClient, tmp_path: Path
) -> None:
    path = tmp_path / "out.mp4"
    async with serve(Streamer(chunks=20).handle) as url:
        assert await client.download_to(url, path, max_bytes=20 * 65536) == 20 * 65536
    assert path.read_bytes() == b"".join(bytes([n]) * 65536 for n in range(20))


async def test_a_connection_broken_mid_body_is_retried_then_leaves_no_file(
    client: WaveSpeedClient, tmp_path: Path
) -> None:
    streamer = Streamer(chunks=20, break_after=5)
    path = tmp_path / "out.mp4"
    async with serve(streamer.handle) as url:
        with pytest.raises(TransientError):
            await client.download_to(url, path, max_bytes=MIB * 10)
    assert streamer.requests == FAST_RETRY.attempts
    assert not path.exists()


async def test_a_cancelled_download_leaves_no_file(client: WaveSpeedClient, tmp_path: Path) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def stalls(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"x" * 65536)
        started.set()
        await release.wait()
        return response

    path = tmp_path / "out.mp4"
    async with serve(stalls) as url:
        download = asyncio.create_task(client.download_to(url, path, max_bytes=MIB))
        await started.wait()
        for _ in range(50):  # until the first chunk is on disk
            if path.exists() and path.stat().st_size:
                break
            await asyncio.sleep(0.01)
        assert path.exists()
        download.cancel()
        with pytest.raises(asyncio.CancelledError):
            await download
        release.set()
    assert not path.exists()
