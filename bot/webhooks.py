"""Signed WaveSpeed completion webhooks: verify a delivery, and serve them over aiohttp.web.

A submit made with `webhook_url` makes WaveSpeed POST the task's final result (the bare `data`
object of a result, with the fields of `Prediction`) to that URL when the task completes or fails
(wavespeed.ai/docs/docs-api/webhooks). Each delivery is signed (wavespeed.ai/docs/docs-api/
verifying_webhook): headers `webhook-id`, `webhook-timestamp` (unix seconds) and
`webhook-signature: v3,<hex>`, the hex being HMAC-SHA256 of `"{id}.{timestamp}.{raw body}"`
keyed by the account's webhook secret without its `whsec_` prefix. Several space-separated
signatures are accepted if any matches (the Standard Webhooks convention).

A webhook only makes a job finish sooner: polling stays on as a slow backstop, so a delivery
that is lost, late or refused costs time, never a video or money. Everything that cannot be
trusted is therefore refused (4xx, logged) rather than guessed at.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import hmac
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict
from pydantic import ValidationError

from bot.wavespeed import Prediction, WaveSpeedError

log = logging.getLogger(__name__)

TOLERANCE_S = 300.0  # WaveSpeed's WebhookMaxAgeSeconds: older or newer deliveries are refused
MAX_BODY_BYTES = 1024 * 1024
SECRET_REFRESH_S = 60.0  # an unverifiable signature re-fetches the secret at most this often
MAX_CALLBACK_FAILURES = 3  # 500s answered for one delivery before it is left to polling
SIGNATURE_VERSION = "v3"
_MAX_SIGNATURES = 8  # a header holding more is not worth the HMACs
_MAX_ID_CHARS = 200
_MAX_TIMESTAMP_DIGITS = 12
_SHUTDOWN_S = 2.0

ResultCallback = Callable[[Prediction], Awaitable[None]]
SecretSource = Callable[[], Awaitable[str]]


class Refused(Exception):
    """A delivery that is not taken: the HTTP status to answer and why (safe to log)."""

    def __init__(self, status: int, reason: str, *, bad_signature: bool = False) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason
        self.bad_signature = bad_signature  # the one refusal a rotated secret may explain


@dataclass(frozen=True)
class Verified:
    """A delivery whose signature, time and id checked out."""

    webhook_id: str
    prediction: Prediction


def sign(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 WaveSpeed sends after `v3,` (secret without `whsec_`)."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    return hmac.new(secret.encode(), content, hashlib.sha256).hexdigest()


class WebhookVerifier:
    """Checks deliveries against the webhook secret and remembers the ids it verified, for
    the window, to refuse replays.

    Only verified ids are remembered, so a forged delivery that reuses a genuine id cannot
    block the genuine one. The memory is bounded by the window: an id is forgotten once a
    replay of its delivery would be refused as stale anyway.
    """

    def __init__(self, secret: str, *, tolerance_s: float = TOLERANCE_S) -> None:
        self.secret = secret
        self.tolerance_s = tolerance_s
        self._seen: dict[str, float] = {}  # verified id -> when it may be forgotten
        self._expiries: list[tuple[float, str]] = []  # heap of the same, soonest first

    def __repr__(self) -> str:
        return f"WebhookVerifier(tolerance_s={self.tolerance_s!r}, remembered={len(self._seen)})"

    @property
    def remembered(self) -> int:
        """How many verified ids are kept for replay detection."""
        return len(self._seen)

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        """Check one delivery at unix time `now`; raise Refused, or return it and remember its
        id. The order matters: nothing unsigned is parsed, nothing forged is remembered."""
        self._forget_expired(now)
        fields = CIMultiDict(headers)
        webhook_id = fields.get("webhook-id", "").strip()
        timestamp = fields.get("webhook-timestamp", "").strip()
        signatures = fields.get("webhook-signature", "").strip()
        if not (webhook_id and timestamp and signatures):
            raise Refused(401, "unsigned: a webhook-id/-timestamp/-signature header is missing")
        if len(webhook_id) > _MAX_ID_CHARS:
            raise Refused(400, "malformed: webhook-id is too long")
        if not timestamp.isdecimal() or len(timestamp) > _MAX_TIMESTAMP_DIGITS:
            raise Refused(400, "malformed: webhook-timestamp is not unix seconds")
        age = now - int(timestamp)
        if age > self.tolerance_s:
            raise Refused(401, f"stale: signed {age:.0f} s ago")
        if age < -self.tolerance_s:
            raise Refused(401, f"from the future: signed {-age:.0f} s ahead")
        if not self.secret:  # never fetched: an empty key would be anyone's to sign with
            raise Refused(401, "no webhook secret yet to check it with", bad_signature=True)
        if not self._signed(webhook_id, timestamp, body, signatures):
            raise Refused(401, "forged: no signature matches", bad_signature=True)
        if webhook_id in self._seen:
            raise Refused(400, "replayed: this webhook-id was already received")
        prediction = _prediction(body)
        self._remember(webhook_id, max(now, float(timestamp)) + self.tolerance_s)
        return Verified(webhook_id, prediction)

    def forget(self, webhook_id: str) -> None:
        """Accept this id again: its delivery could not be handled, and a redelivery may be."""
        self._seen.pop(webhook_id, None)  # the heap entry is dropped lazily

    def _signed(self, webhook_id: str, timestamp: str, body: bytes, header: str) -> bool:
        expected = sign(self.secret, webhook_id, timestamp, body).encode()
        matched = False
        for entry in header.split()[:_MAX_SIGNATURES]:
            version, _, value = entry.partition(",")
            # compare every entry, in constant time each: which one matched is not revealed
            if version == SIGNATURE_VERSION and hmac.compare_digest(
                expected, value.lower().encode("utf-8", "replace")
            ):
                matched = True
        return matched

    def _remember(self, webhook_id: str, until: float) -> None:
        self._seen[webhook_id] = until
        heapq.heappush(self._expiries, (until, webhook_id))

    def _forget_expired(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] < now:
            until, webhook_id = heapq.heappop(self._expiries)
            if self._seen.get(webhook_id) == until:  # not forgotten or re-remembered since
                del self._seen[webhook_id]


def _prediction(body: bytes) -> Prediction:
    """The signed body as a Prediction. The docs show the bare `data` object; an enveloped one
    ({code, message, data}) is unwrapped too, as the docs are not consistent elsewhere."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise Refused(400, "malformed: the body is not JSON") from None
    if isinstance(payload, dict) and "id" not in payload and isinstance(payload.get("data"), dict):
        payload = payload["data"]
    if not isinstance(payload, dict):
        raise Refused(400, "malformed: the body is not a JSON object")
    try:
        return Prediction.model_validate(payload)
    except ValidationError:
        raise Refused(400, "malformed: the body is not a task result") from None


class WebhookServer:
    """An aiohttp.web server that takes WaveSpeed's deliveries at one path and awaits
    `on_result(prediction)` for each verified final result.

    Answers: 200 for a delivery handled (or a verified one that is not final, ignored); 4xx,
    logged as a warning without the body or the secret, for anything refused (wrong path or
    method, too large, unsigned, malformed, stale, forged, replayed); 500 when `on_result`
    raised, so that WaveSpeed may deliver again (the id is forgotten for that), at most
    `max_callback_failures` times per delivery, after which it is answered 200 and left to
    polling.

    The secret is fetched at `start()`. A signature that does not verify re-fetches it (the
    secret may have been rotated), at most once every `refresh_every_s`, and is checked again.
    If WaveSpeed cannot give the secret at start, the server starts anyway and refuses
    deliveries until a later fetch succeeds: polling still finishes every job.
    """

    def __init__(
        self,
        fetch_secret: SecretSource,
        on_result: ResultCallback,
        *,
        host: str,
        port: int,
        path: str,
        tolerance_s: float = TOLERANCE_S,
        refresh_every_s: float = SECRET_REFRESH_S,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_callback_failures: int = MAX_CALLBACK_FAILURES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetch_secret = fetch_secret
        self._on_result = on_result
        self.host = host
        self.port = port  # 0 = any free port; the bound one once started
        self.path = path or "/"
        self._verifier = WebhookVerifier("", tolerance_s=tolerance_s)
        self._refresh_every_s = refresh_every_s
        self._max_body_bytes = max_body_bytes
        self._max_callback_failures = max_callback_failures
        self._clock = clock
        self._fetched_at: float | None = None  # loop time of the last fetch attempt
        self._refetched_at: float | None = None  # ... of the last one a bad signature caused
        self._refreshing = asyncio.Lock()
        self._callback_failures: OrderedDict[str, int] = OrderedDict()
        self._runner: web.AppRunner | None = None

    def __repr__(self) -> str:
        return f"WebhookServer(host={self.host!r}, port={self.port!r}, path={self.path!r})"

    @property
    def url(self) -> str:
        """The server's own http URL of the webhook path (what a reverse proxy forwards to)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"

    async def start(self) -> None:
        """Fetch the secret, then listen."""
        await self._refresh_secret()
        app = web.Application(client_max_size=self._max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self._receive)
        # stopping waits this long for a delivery being handled, then cuts it short
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("taking WaveSpeed webhooks at %s", self.url)

    async def stop(self) -> None:
        """Stop listening; a delivery being handled is cut short (polling finishes its job)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> WebhookServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- one delivery ---------------------------------------------------------------------

    async def _receive(self, request: web.Request) -> web.Response:
        webhook_id = request.headers.get("webhook-id", "")[:_MAX_ID_CHARS]
        try:
            verified = await self._verified(request)
        except Refused as refusal:
            log.warning(
                "webhook refused with %d from %s (webhook-id %r): %s",
                refusal.status,
                request.remote,
                webhook_id,
                refusal.reason,
            )
            return web.json_response({"error": refusal.reason}, status=refusal.status)
        return await self._handle(verified)

    async def _verified(self, request: web.Request) -> Verified:
        if request.path != self.path:
            raise Refused(404, f"no webhook at {request.path[:100]!r}")
        if request.method != "POST":
            raise Refused(405, f"method {request.method} not allowed")
        if request.content_length is not None and request.content_length > self._max_body_bytes:
            raise Refused(413, f"body over {self._max_body_bytes} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise Refused(413, f"body over {self._max_body_bytes} bytes") from None
        try:
            return self._verifier.verify(request.headers, body, self._clock())
        except Refused as refusal:
            if not refusal.bad_signature or not await self._refresh_secret(rotation=True):
                raise
            # the secret changed: the delivery may be signed with the new one
            return self._verifier.verify(request.headers, body, self._clock())

    async def _handle(self, verified: Verified) -> web.Response:
        prediction = verified.prediction
        if not prediction.is_final:
            log.info("webhook for prediction %s: status %r, not final; ignored", *_named(verified))
            return web.json_response({"ok": True})
        try:
            await self._on_result(prediction)
        except Exception:
            return self._callback_failed(verified)
        self._callback_failures.pop(verified.webhook_id, None)
        log.info("webhook for prediction %s: %s", *_named(verified))
        return web.json_response({"ok": True})

    def _callback_failed(self, verified: Verified) -> web.Response:
        """Answer 500 so WaveSpeed may deliver again, a few times per delivery only: a result
        that cannot be taken must not turn into a 5xx loop. Polling finishes the job anyway."""
        failures = self._callback_failures.pop(verified.webhook_id, 0) + 1
        if failures >= self._max_callback_failures:
            log.exception(
                "webhook for prediction %s (%s) failed %d times; left to polling",
                *_named(verified),
                failures,
            )
            return web.json_response({"ok": False, "left_to": "polling"})
        self._callback_failures[verified.webhook_id] = failures
        while len(self._callback_failures) > 1000:  # ids whose redeliveries never came
            self._callback_failures.popitem(last=False)
        self._verifier.forget(verified.webhook_id)
        log.exception("webhook for prediction %s (%s) could not be handled", *_named(verified))
        return web.json_response({"error": "the result could not be handled"}, status=500)

    async def _refresh_secret(self, *, rotation: bool = False) -> bool:
        """Fetch the secret; True if it changed. With `rotation` (a signature did not verify),
        at most once per `refresh_every_s`: a forger must not make us hammer WaveSpeed."""
        loop = asyncio.get_running_loop()
        asked_at = loop.time()
        async with self._refreshing:
            if rotation:
                if self._fetched_at is not None and self._fetched_at > asked_at:
                    return True  # fetched while this one waited: check against that secret
                last = self._refetched_at
                if last is not None and loop.time() - last < self._refresh_every_s:
                    return False
                self._refetched_at = loop.time()
            self._fetched_at = loop.time()
            try:
                secret = await self._fetch_secret()
            except WaveSpeedError as error:
                log.warning("the WaveSpeed webhook secret could not be fetched: %s", error)
                return False
            changed = secret != self._verifier.secret
            self._verifier.secret = secret
            if changed and rotation:
                log.info("the WaveSpeed webhook secret has changed; using the new one")
            return changed


def _named(verified: Verified) -> tuple[str, str]:
    return verified.prediction.id, verified.prediction.status
