"""BalanceWatch: reads the WaveSpeed account's balance every few minutes, and at once after an
out-of-credit error, and keeps the last reading where every process sees it.

The reading is a bot-wide setting (bot.domain.alerts.BALANCE_SETTING), so a process that did not
read it itself (several processes may share one database; each reads on its own timer) still
refuses a request the account cannot pay for. Listeners (the Discord side's warnings) hear of
every reading, with the one before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from bot.domain.alerts import BALANCE_SETTING, BalanceReading
from bot.wavespeed import WaveSpeedClient, WaveSpeedError
from storage.base import Storage

log = logging.getLogger(__name__)

# Told of each reading, with the previous one (None: the first ever). Its errors are logged.
BalanceListener = Callable[[BalanceReading, BalanceReading | None], Awaitable[None]]


class BalanceWatch:
    """The account's balance, read every `every_s` seconds once started, and on demand."""

    def __init__(self, client: WaveSpeedClient, storage: Storage, *, every_s: float) -> None:
        self._client = client
        self._storage = storage
        self.every_s = every_s
        self._listeners: list[BalanceListener] = []
        self._reading = asyncio.Lock()  # one read at a time: the last one started is kept last
        self._timer: asyncio.Task[None] | None = None
        self._soon: asyncio.Task[None] | None = None
        self._stopped = False

    def add_listener(self, listener: BalanceListener) -> None:
        """Be told of every reading from now on."""
        self._listeners.append(listener)

    async def latest(self) -> BalanceReading | None:
        """The last reading of any process, or None if the balance was never read."""
        return BalanceReading.decode(await self._storage.get_bot_setting(BALANCE_SETTING))

    async def refresh(self) -> BalanceReading | None:
        """Read the balance now, keep it and tell the listeners; None (logged) if WaveSpeed
        could not say: the last reading stays as it was."""
        async with self._reading:
            try:
                micro = await self._client.balance()
            except WaveSpeedError as error:
                log.warning("could not read the WaveSpeed balance: %s", error)
                return None
            reading = BalanceReading(micro, datetime.now(UTC))
            previous = await self.latest()
            await self._storage.set_bot_setting(BALANCE_SETTING, reading.encode())
            for listener in self._listeners:
                try:
                    await listener(reading, previous)
                except Exception:
                    log.exception("a balance listener failed")
            return reading

    def refresh_soon(self) -> None:
        """Read the balance in the background (after an out-of-credit error: the job's own
        report must not wait for it); one such read at a time."""
        if not self._stopped and (self._soon is None or self._soon.done()):
            self._soon = asyncio.create_task(self._refresh_logged(), name="wanbot-balance-now")

    def start(self) -> None:
        """Read now and then every `every_s` seconds until `stop()`."""
        if self._timer is None and not self._stopped:
            self._timer = asyncio.create_task(self._every(), name="wanbot-balance-watch")

    async def stop(self) -> None:
        """Stop reading (before the client and the store close)."""
        self._stopped = True  # also ends the timer's loop if a cancellation were swallowed
        tasks = [task for task in (self._timer, self._soon) if task is not None]
        self._timer = self._soon = None
        for task in tasks:
            task.cancel()
        # their ends (cancelled) are returned, not raised; a cancellation of stop() still is
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _every(self) -> None:
        while not self._stopped:
            await self._refresh_logged()
            await asyncio.sleep(self.every_s)

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh()
        except Exception:  # the store failed: the next tick tries again
            log.exception("the balance check failed")
