"""VideoFiles: the folder where a runner keeps the videos it downloads until they are posted,
and the turns that bound how many it downloads at once.

Videos are streamed from WaveSpeed to a file and from the file to Discord, so a process holds a
few chunks of each video in memory, never a whole one. Each runner has its own folder, made on
first use in the system's temporary folder (`TMPDIR`, else /tmp) as `wanbot-XXXXXXXX`; every file
is deleted once its post is recorded or its job fails, and the folder when the runner closes.

Moving a video costs the event loop the same CPU time whenever it happens, but every socket
that is ready is served in the same pass of the loop: with hundreds of downloads at once a pass
takes long enough to delay members' commands, and every download's buffers are held at once
(bench/bench_delivery.py). So at most `MAX_DOWNLOADS` run at a time and the others wait their
turn; the first videos are then posted sooner than when all share the loop until all are done.
Posts are not bounded: they follow the downloads' pace, and one waiting out a channel's rate
limit must not hold up the others.

A process that dies leaves its folder behind. The folder holds a lock file, locked (flock) for
as long as its runner lives: the kernel drops the lock when the process ends, however it ends.
A new folder's runner removes the `wanbot-*` folders whose lock it can take, so only those of
processes that are gone, whichever machine or container shares the temporary folder on this
kernel. Folders without a lock file are never touched.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on POSIX: no locks, so stale folders are left alone
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

PREFIX = "wanbot-"
LOCK_NAME = ".wanbot-owner"
MAX_DOWNLOADS = 16


class VideoFiles:
    """One runner's folder of downloaded videos (see the module's docstring)."""

    def __init__(self, root: Path | None = None, *, downloads: int = MAX_DOWNLOADS) -> None:
        self._root = root  # None: the system's temporary folder, looked up when first needed
        self._folder: Path | None = None
        self._lock: int | None = None  # the descriptor holding the folder's lock
        self.downloading = asyncio.Semaphore(downloads)  # held for each download

    @property
    def folder(self) -> Path | None:
        """The folder, once made."""
        return self._folder

    def path(self, job_id: int) -> Path:
        """Where a job's video goes (the same on every attempt, so a retry replaces it)."""
        if self._folder is None:
            self._folder = self._make()
        return self._folder / f"job-{job_id}.mp4"

    def discard(self, path: Path | None) -> None:
        """Delete a video once it is no longer needed (posted and recorded, or the job failed);
        one that is gone already (moved away by the command line) is fine."""
        if path is None:
            return
        try:
            path.unlink(missing_ok=True)
        except OSError as error:  # left for close() to remove with the folder
            log.warning("could not delete %s: %s", path, error)

    def close(self) -> None:
        """Remove the folder and whatever is still in it (the runner has stopped using it)."""
        folder, self._folder = self._folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)  # after the removal: an unlocked folder would look stale
            self._lock = None

    def _make(self) -> Path:
        root = self._root or Path(tempfile.gettempdir())
        remove_stale(root)
        folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
        if fcntl is not None:
            # Locked before it gets its final name: a lock file another process can see is
            # always held by a live one.
            pending = folder / (LOCK_NAME + ".new")
            self._lock = os.open(pending, os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            pending.rename(folder / LOCK_NAME)
        log.debug("videos are kept in %s until posted", folder)
        return folder


def remove_stale(root: Path) -> list[Path]:
    """Remove the `wanbot-*` folders in `root` whose owner is gone (their lock is free); return
    them. Best effort: a folder that can't be checked or removed is left."""
    if fcntl is None:
        return []
    removed = []
    for folder in root.glob(PREFIX + "*"):
        lock_path = folder / LOCK_NAME
        try:
            if folder.is_symlink() or not folder.is_dir() or folder.stat().st_uid != os.getuid():
                continue
            lock = os.open(lock_path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue  # no lock file: not a runner's folder, or one being made
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # held: its process is alive
        else:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            log.info("removed %s, left by a process that is gone", folder)
        finally:
            os.close(lock)
    return removed
