"""Videos streamed, not held: the runner downloads each video to a file of its own folder, only
when the destination accepts it as a file, and deletes the file once the post is recorded or the
job fails; the folder goes when the runner closes, or, left by a dead process, at the next start.

The runner tests use tests/test_jobs.py's world (the fake WaveSpeed API, one SQLite file) with
a fake whose every output is 2 MiB of random bytes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.domain.lifecycle import FailureKind, JobState
from bot.runner import Undeliverable
from bot.testing.fake_wavespeed import FakeWaveSpeed
from bot.video_files import LOCK_NAME, VideoFiles, remove_stale
from tests.conftest import TEST_API_KEY
from tests.test_jobs import Process, Recorder, World

MIB = 1024 * 1024
VIDEO = os.urandom(2 * MIB)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with FakeWaveSpeed(
        api_key=TEST_API_KEY, queue_s=0.02, processing_s=0.05, video=VIDEO
    ) as fake:
        world = World(fake, tmp_path / "wanbot.db")
        yield world
        await world.close()


@pytest.fixture
async def bot(world: World) -> Process:
    return await world.boot()


def kept_files(process: Process) -> list[Path]:
    """The files in the runner's video folder (none before its first download)."""
    folder = process.runner._video_files.folder
    return [] if folder is None else sorted(folder.glob("job-*"))


async def test_a_video_is_posted_from_its_file_byte_for_byte_then_deleted(
    bot: Process, world: World
) -> None:
    recorder = Recorder(limit=10 * MIB)
    job, _ = await bot.run(recorder)

    seen = recorder.only_video()
    assert seen.data == VIDEO and seen.video.size == len(VIDEO)
    assert job.state is JobState.DELIVERED
    await bot.assert_money(job, charged=True)
    [file] = recorder.files
    assert file.parent == bot.runner._video_files.folder
    assert not file.exists() and kept_files(bot) == []
    assert len(world.fake.calls("output")) == 1

    folder = bot.runner._video_files.folder
    assert folder is not None and folder.name.startswith("wanbot-")
    await world.stop(bot)
    assert not folder.exists()


@pytest.mark.parametrize("limit", [MIB, 0], ids=["over the limit", "links only"])
async def test_a_video_over_the_destination_limit_is_linked_and_never_downloaded(
    bot: Process, world: World, limit: int
) -> None:
    recorder = Recorder(limit=limit)
    job, _ = await bot.run(recorder)

    seen = recorder.only_video()
    assert seen.data is None and seen.video.path is None
    assert seen.video.size == len(VIDEO)  # from Content-Length: the body was never read
    assert seen.url == job.output_url
    assert len(world.fake.calls("output")) == 1  # one look at the headers, no retry
    assert recorder.files == [] and kept_files(bot) == []
    assert job.state is JobState.DELIVERED
    await bot.assert_money(job, charged=True)


async def test_the_file_is_deleted_when_no_route_takes_the_video(bot: Process) -> None:
    recorder = Recorder(post_error=Undeliverable("every route refused"), limit=10 * MIB)
    job, _ = await bot.run(recorder)

    assert job.state is JobState.CLOSED and job.failure_kind is FailureKind.UNDELIVERABLE
    await bot.assert_money(job, charged=False)
    [file] = recorder.files  # it was there for the post
    assert not file.exists() and kept_files(bot) == []


async def test_the_file_is_deleted_when_the_post_crashes_and_fetched_again_later(
    bot: Process, world: World
) -> None:
    broken = Recorder(post_error=RuntimeError("the bot crashed mid-post"), limit=10 * MIB)
    job, _ = await bot.run(broken)
    assert job.state is JobState.POSTING
    assert kept_files(bot) == []

    recorder = Recorder(limit=10 * MIB)
    assert await bot.resume_into(recorder) == 1
    assert recorder.only_video().data == VIDEO
    assert kept_files(bot) == [] and len(world.fake.calls("output")) == 2


async def test_a_dead_link_is_refunded_and_leaves_no_file(bot: Process, world: World) -> None:
    world.fake.fail_next("output", 404, times=None)
    recorder = Recorder(limit=10 * MIB)
    job, _ = await bot.run(recorder)

    assert recorder.only_failure().kind is FailureKind.OUTPUT_UNREACHABLE
    await bot.assert_money(job, charged=False)
    assert kept_files(bot) == []


async def test_a_video_that_cannot_be_saved_is_delivered_as_its_link(
    bot: Process, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that refuses the file (full, read-only) costs the member the attachment, not the
    video: its link is posted and charged."""
    missing = tmp_path / "no such folder"
    monkeypatch.setattr(VideoFiles, "path", lambda self, job_id: missing / f"job-{job_id}.mp4")
    recorder = Recorder(limit=10 * MIB)
    job, _ = await bot.run(recorder)

    seen = recorder.only_video()
    assert seen.data is None and seen.url == job.output_url
    await bot.assert_money(job, charged=True)


async def test_an_upload_limit_that_cannot_be_learned_downloads_up_to_the_cap(
    bot: Process,
) -> None:
    class Broken(Recorder):
        async def attach_limit(self, job: object) -> int:
            raise RuntimeError("the settings store is down")

    recorder = Broken(limit=10 * MIB)
    job, _ = await bot.run(recorder)
    assert recorder.only_video().data == VIDEO
    await bot.assert_money(job, charged=True)


# --- the folder ---------------------------------------------------------------------------------


def test_the_folder_is_made_on_first_use_and_removed_on_close(tmp_path: Path) -> None:
    files = VideoFiles(tmp_path)
    assert files.folder is None and list(tmp_path.iterdir()) == []
    path = files.path(7)
    assert path.name == "job-7.mp4" and path.parent.name.startswith("wanbot-")
    assert (path.parent / LOCK_NAME).exists()
    path.write_bytes(b"video")
    files.close()
    assert list(tmp_path.iterdir()) == []


def test_a_stale_folder_is_removed_and_a_live_or_foreign_one_kept(tmp_path: Path) -> None:
    live = VideoFiles(tmp_path)
    live_path = live.path(1)
    live_path.write_bytes(b"in use")
    foreign = tmp_path / "wanbot-notes"  # not a runner's: no lock file
    foreign.mkdir()
    dead = dead_process_folder(tmp_path)
    assert (dead / "job-3.mp4").exists()

    assert remove_stale(tmp_path) == [dead]
    assert not dead.exists() and foreign.exists() and live_path.read_bytes() == b"in use"

    later = VideoFiles(tmp_path)  # a new runner also cleans up as it makes its folder
    later.path(2)
    assert remove_stale(tmp_path) == []
    live.close()
    later.close()
    assert sorted(tmp_path.iterdir()) == [foreign]


def dead_process_folder(root: Path) -> Path:
    """A folder made by a process that then died without closing its runner (os._exit)."""
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from bot.video_files import VideoFiles\n"
        "path = VideoFiles(Path(sys.argv[1])).path(3)\n"
        "path.write_bytes(b'partial')\n"
        "print(path.parent)\n"
        "sys.stdout.flush()\n"
        "os._exit(0)\n"
    )
    root_of_repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", script, str(root)],
        capture_output=True,
        text=True,
        check=True,
        cwd=root_of_repo,
        timeout=60,
    )
    return Path(done.stdout.strip())


async def test_closing_a_runner_during_a_download_leaves_nothing(
    bot: Process, world: World
) -> None:
    """A runner closed while a download is in flight (shutdown) leaves no folder behind; the
    job waits for the next start."""
    world.fake.slow_next("output", 1.0)
    job = await bot.start(Recorder(limit=10 * MIB))
    async with asyncio.timeout(5):
        while not world.fake.calls("output"):
            await asyncio.sleep(0.01)
    folder = bot.runner._video_files.folder
    assert folder is not None
    await world.stop(bot)
    assert not folder.exists()
    survivor = await world.boot()
    assert (await survivor.job(job.id)).state is JobState.READY
