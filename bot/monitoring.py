"""The health and metrics server of a bot process (METRICS_LISTEN): GET /healthz, GET /metrics.

/healthz answers JSON with three checks — Discord (the gateway is up: the client is not closed,
is ready, and every shard's connection is open with a heartbeat answered), the database (one
trivial query) and WaveSpeed (one authenticated GET, its answer kept WAVESPEED_CACHE_S so that
frequent probes do not become API traffic) — with HTTP 200 when all pass and 503 naming those
that failed. /metrics answers the bot's figures in Prometheus' text format (bot.metrics).

Nothing either answers holds a secret: details are this module's own words, error class names and
numbers, never an exception's message, a URL or a token.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import discord
from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot.config import ConfigError
from bot.metrics import BotMetrics
from bot.wavespeed import WaveSpeedClient, WaveSpeedError
from storage.base import Storage

log = logging.getLogger(__name__)

WAVESPEED_CACHE_S = 30.0  # how long WaveSpeed's answer stands for later probes
CHECK_TIMEOUT_S = 5.0  # each check fails if it has not answered by then
NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class Check:
    """One check's outcome: `status` is one word for scripts, `detail` a sentence for people."""

    ok: bool
    status: str
    detail: str
    age_s: float | None = None  # how old a cached answer is

    def as_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"ok": self.ok, "status": self.status, "detail": self.detail}
        if self.age_s is not None:
            shown["age_s"] = round(self.age_s, 1)
        return shown


def check_discord(bot: discord.Client) -> Check:
    """Whether the gateway is up: the client not closed, ready, and every shard connected with
    a heartbeat answered (discord.py reports an infinite latency until the first answer)."""
    if bot.is_closed():
        return Check(False, "closed", "the Discord client is closed")
    if not bot.is_ready():
        return Check(False, "not_ready", "the Discord gateway has not finished connecting")
    if isinstance(bot, discord.AutoShardedClient):
        latencies = bot.latencies
        down = sorted(shard_id for shard_id, shard in bot.shards.items() if shard.is_closed())
    else:
        latencies, down = [(bot.shard_id or 0, bot.latency)], []
    if down:
        return Check(False, "disconnected", f"gateway shard(s) {down} disconnected")
    silent = sorted(shard_id for shard_id, latency in latencies if not math.isfinite(latency))
    if silent or not latencies:
        return Check(False, "no_heartbeat", f"no heartbeat answered on shard(s) {silent}")
    slowest = max(latency for _, latency in latencies)
    return Check(
        True,
        "connected",
        f"{len(latencies)} shard(s) connected, slowest heartbeat {slowest * 1000:.0f} ms",
    )


async def check_database(storage: Storage, timeout_s: float = CHECK_TIMEOUT_S) -> Check:
    """Whether the database answers a trivial query (`Storage.ping`) within `timeout_s`."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            await storage.ping()
    except TimeoutError:
        return Check(False, "unreachable", f"the database did not answer within {timeout_s:g} s")
    except Exception as error:  # whatever the driver raises; its message may name the server
        return Check(False, "unreachable", f"the database query failed ({type(error).__name__})")
    elapsed_ms = (time.perf_counter() - started) * 1000
    return Check(True, "reachable", f"the database answered in {elapsed_ms:.1f} ms")


class WaveSpeedProbe:
    """Whether WaveSpeed answers an authenticated request, asked at most every `cache_s`."""

    def __init__(
        self,
        client: WaveSpeedClient,
        *,
        cache_s: float = WAVESPEED_CACHE_S,
        timeout_s: float = CHECK_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._cache_s = cache_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._last: Check | None = None
        self._asked_at = 0.0
        self._asking = asyncio.Lock()  # concurrent probes share one request

    async def check(self) -> Check:
        """The latest answer, asking WaveSpeed again once it is `cache_s` old."""
        async with self._asking:
            if self._last is None or self._clock() - self._asked_at >= self._cache_s:
                self._last = await self._ask()
                self._asked_at = self._clock()
            age = self._clock() - self._asked_at
        return Check(self._last.ok, self._last.status, self._last.detail, age_s=age)

    async def _ask(self) -> Check:
        try:
            async with asyncio.timeout(self._timeout_s):
                code = await self._client.check_access()
        except TimeoutError:
            return Check(False, "unreachable", f"no answer within {self._timeout_s:g} s")
        except WaveSpeedError as error:  # its message is WaveSpeed's text: the class name says it
            return Check(
                False, "unreachable", f"WaveSpeed could not be reached ({type(error).__name__})"
            )
        if code in (401, 403):
            # reachable, but every job would fail: reported apart so the fix is obvious
            return Check(
                False,
                "unauthorized",
                f"WaveSpeed answered but refused the API key (HTTP {code}): check "
                "WAVESPEED_API_KEY",
            )
        if code >= 500:
            return Check(False, "unreachable", f"WaveSpeed answered with a server error ({code})")
        return Check(True, "reachable", f"WaveSpeed answered an authenticated request ({code})")


class MonitoringServer:
    """GET /healthz and GET /metrics for one bot, on an aiohttp server of their own."""

    def __init__(
        self,
        bot: discord.Client,
        storage: Storage,
        client: WaveSpeedClient,
        *,
        wavespeed_cache_s: float = WAVESPEED_CACHE_S,
        timeout_s: float = CHECK_TIMEOUT_S,
    ) -> None:
        self.bot = bot
        self.storage = storage
        self.metrics = BotMetrics(storage)
        self.wavespeed = WaveSpeedProbe(client, cache_s=wavespeed_cache_s, timeout_s=timeout_s)
        self._timeout_s = timeout_s
        self._runner: web.AppRunner | None = None
        self.port: int | None = None  # the port listened on, once started

    @classmethod
    async def open(
        cls,
        bot: discord.Client,
        storage: Storage,
        client: WaveSpeedClient,
        address: tuple[str, int],
        **options: Any,
    ) -> Self:
        """A server listening on `address` (host, port). A port that cannot be taken is a
        ConfigError naming METRICS_LISTEN."""
        server = cls(bot, storage, client, **options)
        try:
            await server.start(*address)
        except OSError as error:
            await server.close()
            reason = error.strerror or type(error).__name__
            raise ConfigError(
                f"METRICS_LISTEN is invalid: cannot listen on {address[0]}:{address[1]} ({reason})"
            ) from None
        return server

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (0: any free port, then see `port`)."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)  # scrapes every few seconds: quiet
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.port = self._runner.addresses[0][1]
        log.info("health and metrics on http://%s:%s (/healthz, /metrics)", host, self.port)

    async def close(self) -> None:
        """Stop serving and counting."""
        self.metrics.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def health(self) -> dict[str, Any]:
        """The three checks, run together, and the verdict."""
        database, wavespeed = await asyncio.gather(
            check_database(self.storage, self._timeout_s), self.wavespeed.check()
        )
        checks = {"discord": check_discord(self.bot), "database": database, "wavespeed": wavespeed}
        failing = [name for name, check in checks.items() if not check.ok]
        return {
            "status": "failing" if failing else "ok",
            "failing": failing,
            "checks": {name: check.as_json() for name, check in checks.items()},
        }

    async def _healthz(self, request: web.Request) -> web.Response:
        report = await self.health()
        status = 503 if report["failing"] else 200
        return web.json_response(report, status=status, headers=NO_STORE)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, **NO_STORE})
