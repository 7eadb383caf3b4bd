"""Telling every process that shares a PostgreSQL database that a task's result is in (NOTIFY and
LISTEN, postgresql.org/docs/current/sql-notify.html).

A verified webhook reaches the process behind the URL WaveSpeed called, which need not be the one
following the job: several processes behind one URL, or a job taken over after a restart. That
process announces the task's id on one channel; the process following the job polls the result
at once instead of at its next backstop poll. Only the id travels: the follower reads the result
from WaveSpeed itself, so nothing carried by the database needs trusting, and the payload stays
far below NOTIFY's 8,000 bytes. An announcement is a hint, never a result: one that is lost (no
process listening at that moment) costs time until the backstop poll, nothing else.

Listening holds a connection of its own, outside the pool: a LISTEN lasts as long as its session.
When that connection is lost it is made again after a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "wanbot_results"
APPLICATION_NAME = "wanbot-results"  # how the listening session shows in pg_stat_activity
RELISTEN_PAUSE_S = 5.0  # between attempts to listen again after the connection was lost
_FIRST_LISTEN_S = 10.0  # how long start() waits for the first LISTEN before going on without

Heard = Callable[[str], None]
Connect = Callable[[], Awaitable[asyncpg.Connection]]
Redact = Callable[[str], str]


async def announce(conn: asyncpg.Connection | asyncpg.Pool, prediction_id: str) -> None:
    """Tell every listening process that the task `prediction_id` has its result."""
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, prediction_id)


class ResultListener:
    """Calls `heard(prediction_id)` for every announcement, from `start()` until `stop()`,
    listening again whenever its connection is lost. `redact` blots the URL's secrets out of
    the errors it logs."""

    def __init__(self, connect: Connect, heard: Heard, redact: Redact) -> None:
        self._connect = connect
        self._heard = heard
        self._redact = redact
        self._listening = asyncio.Event()  # set while a LISTEN is in place
        self._task: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def start(self) -> None:
        """Listen in the background; return once listening, or after a while without (the
        background task keeps trying)."""
        self._task = asyncio.create_task(self._listen_on(), name="wanbot-result-listener")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_FIRST_LISTEN_S):
                await self._listening.wait()

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen_on(self) -> None:
        while True:
            try:
                await self._listen_once()
                log.warning("the connection listening for results was lost; listening again")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                reason = self._redact(f"{type(error).__name__}: {error}")
                log.warning("cannot listen for results from other processes: %s", reason)
            await asyncio.sleep(RELISTEN_PAUSE_S)

    async def _listen_once(self) -> None:
        """Listen on one connection until it is lost."""
        conn = await self._connect()
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(CHANNEL, self._on_notification)
            self._listening.set()
            await lost.wait()
        finally:
            self._listening.clear()
            # terminate, not close: close waits on a server that may be gone
            conn.terminate()

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._heard(payload)
