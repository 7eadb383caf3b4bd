"""A fake WaveSpeed API (aiohttp.web) for tests and by hand.

It follows WaveSpeed's public API docs (wavespeed.ai/docs): submit, result, media upload and the
prediction history (POST /api/v3/predictions: newest first, only the last 7 days, web tasks too).

Choices where the real API is undocumented:
- Balance (GET /api/v3/balance): the envelope's `data` is {"balance": `balance_usd`}, in dollars,
  as WaveSpeed's MCP server reads it; `balance_usd` may be a JSON number or a numeric string.
- Out of credit: a submit is refused with HTTP 402 and {"code": 402, "message": "Insufficient
  balance: ..."}.
- A failed task's numeric code leads its `error` text ("1200: Content flagged ..."); with
  `error_code_field="code"` it goes into that `data` field instead and the text is left bare.
- Keys: with `api_key=None` any non-empty Bearer key is accepted; otherwise only that one.
- `image`/`audio` must be http(s) URLs; loopback ones are fetched when the task starts (failing it
  with 1402 if that does not work), others are accepted unfetched.
- History refuses fields other than page/page_size (the fake implements no filters), and
  `created_at` is written with nanoseconds everywhere, like the history example in the docs.
- Output links are plain and permanent unless a task plan sets `output_expires_s`: then each
  answer signs a fresh link that the output route refuses with 403 once it has expired.
- Webhooks (wavespeed.ai/docs/docs-api/webhooks, .../verifying_webhook): GET
  /api/v3/webhook/secret answers the envelope with `data` {"secret": "whsec_<base64>"} (the
  docs show no answer); the HMAC key is the text after `whsec_`, not base64-decoded, as the docs
  say. A submit with a `webhook=<http(s) url>` query parameter gets the task's bare `data`
  POSTed there, signed, once it is completed or failed, from the task's background worker; each
  attempt is logged in `webhook_attempts`. Redelivery is undocumented: by default none, else
  after each of `webhook_retry_delays_s` while the answer is not 2xx, with the same webhook-id
  and a fresh timestamp and signature (as Standard Webhooks senders do).

Losing answers (the client cannot tell these apart; tests can):
- `slow_next("submit", s)`: the task is created, the answer comes `s` late.
- `fail_next("submit", 504, raw=True, delay_s=s)`: nothing is created, a proxy page comes `s` late.
- `lose_answer_next("submit", create=...)`: no answer ever; the task is created or not.

Each task is driven by a background asyncio task: `created` for `queue_s` and then until one of
`max_concurrent` slots is free (like a Bronze account), `processing` for `processing_s`, then
`completed` or `failed`. With `max_per_minute`, a submit beyond that many in the last 60 seconds
is refused with 429 "Too Many Requests" and creates nothing, as WaveSpeed's account levels page
describes (wavespeed.ai/docs/account-levels); the refusal carries no Retry-After header.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from importlib.resources import files
from typing import Any, Literal, Self

import aiohttp
from aiohttp import web
from yarl import URL

from bot.domain.pricing import price_micro
from bot.wavespeed import HISTORY_MAX_PAGE_SIZE, HISTORY_RETENTION, MODEL_ID

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Outcome = Literal["completed", "failed"]

ROUTES = ("submit", "result", "history", "upload", "media", "output", "webhook-secret", "balance")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
TASK_ERRORS = {
    1200: "Content flagged by moderation",
    1400: "Missing required parameter",
    1401: "Invalid parameter",
    1402: "Failed to fetch media from URL",
    1403: "Task execution failed",
    1405: "Task failed",
    5000: "Internal server error",
    5003: "Service unavailable",
    5004: "Processing timed out",
}
MAX_SEED = 2_147_483_647
_FINAL = frozenset({"completed", "failed"})
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
_FETCH_TIMEOUT = aiohttp.ClientTimeout(total=10)


def sample_video() -> bytes:
    """The small real mp4 (64×64, 1 s) served as every task's output."""
    return files("bot").joinpath("assets/sample.mp4").read_bytes()


# --- request validation -----------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


_FIELD_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "image": (_url, "must be an http(s) URL"),
    "prompt": (lambda v: isinstance(v, str) and bool(v.strip()), "must be a non-empty string"),
    "audio": (_url, "must be an http(s) URL"),
    "negative_prompt": (lambda v: isinstance(v, str), "must be a string"),
    "resolution": (lambda v: v in ("720p", "1080p"), "must be 720p or 1080p"),
    "duration": (lambda v: _is_int(v) and 2 <= v <= 15, "must be an integer from 2 to 15"),
    "shot_type": (lambda v: v in ("single", "multi"), "must be single or multi"),
    "enable_prompt_expansion": (lambda v: isinstance(v, bool), "must be a boolean"),
    "enable_audio": (lambda v: isinstance(v, bool), "must be a boolean"),
    "seed": (lambda v: _is_int(v) and -1 <= v <= MAX_SEED, f"must be an integer -1..{MAX_SEED}"),
}
_REQUIRED = ("image", "prompt")


def validate_body(body: Any) -> str | None:
    """Why a submit body would be refused with 400, or None if the API would take it."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    unknown = sorted(set(body) - set(_FIELD_RULES))
    if unknown:
        return f"unknown field(s): {', '.join(unknown)}"
    for name in _REQUIRED:
        if name not in body:
            return f"{name} is required"
    for name, value in body.items():
        check, rule = _FIELD_RULES[name]
        if not check(value):
            return f"{name} {rule}"
    return None


def validate_history_body(body: Any) -> str | None:
    """Why a history body would be refused with 400, or None if the API would take it."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    unknown = sorted(set(body) - {"page", "page_size"})
    if unknown:
        return f"unknown field(s): {', '.join(unknown)}"
    for name in ("page", "page_size"):
        if name not in body:
            return f"{name} is required"
        if not _is_int(body[name]):
            return f"{name} must be an integer"
    if body["page"] < 1:
        return "page must be at least 1"
    if not 1 <= body["page_size"] <= HISTORY_MAX_PAGE_SIZE:
        return f"page_size must be from 1 to {HISTORY_MAX_PAGE_SIZE}"
    return None


def body_price_micro(body: dict[str, Any]) -> int:
    """What a valid body would bill; with audio if enable_audio (default true) or an audio URL."""
    has_audio = body.get("enable_audio", True) or "audio" in body
    return price_micro(body.get("duration", 5), body.get("resolution", "720p"), has_audio)


# --- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskPlan:
    """How the next task will end. None timings take the fake's defaults.

    `empty_outputs`: completed with `outputs` [] (real WaveSpeed was seen doing this).
    `output_expires_s`: each answer hands out a freshly signed output link valid that long;
    None = one plain link that never expires.
    """

    outcome: Outcome = "completed"
    error_code: int | None = None
    error: str | None = None
    nsfw: bool = False
    queue_s: float | None = None
    processing_s: float | None = None
    empty_outputs: bool = False
    output_expires_s: float | None = None


@dataclass
class FakeTask:
    """One task (submitted, or added with add_foreign_task) and where it is."""

    id: str
    body: dict[str, Any]
    price_micro: int
    plan: TaskPlan
    created_at: datetime
    model: str = MODEL_ID
    status: str = "created"
    error: str = ""
    error_code: int | None = None
    inference_ms: int | None = None
    webhook: str | None = None  # the submit's `webhook` query parameter


@dataclass(frozen=True)
class LoggedRequest:
    """One request the fake received; `at` is the event loop's clock. The key is not kept."""

    method: str
    path: str
    route: str | None
    at: float
    has_auth: bool
    client_name: str | None


@dataclass(frozen=True)
class WebhookAttempt:
    """One POST of a task's result to its webhook URL. `status` is the HTTP status answered,
    None if no answer came (connection refused, reset, or 10 s without one)."""

    url: str
    task_id: str
    webhook_id: str
    status: int | None
    at: float  # the event loop's clock


@dataclass(frozen=True)
class Upload:
    """A file stored by the media upload endpoint."""

    name: str
    data: bytes
    content_type: str


@dataclass
class Fault:
    """An injected misbehaviour of one route.

    The request is handled for real first if `process` (a submit creates its task). Then, after
    `delay_s` (None = until the fake stops), the client gets the real answer if there is one,
    else the `status` answer; or, if not `answer`, nothing: the connection is dropped.
    """

    remaining: int | None  # None = until clear_faults()
    process: bool
    status: int | None = None
    retry_after: float | str | None = None
    body: dict[str, Any] | str | None = None
    raw: bool = False
    delay_s: float | None = 0.0
    answer: bool = True

    def response(self) -> web.Response:
        """The injected answer of a request that was not processed."""
        assert self.status is not None
        status = self.status
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        reason = _reason(status)
        if self.raw:
            text = self.body if isinstance(self.body, str) else f"<html>{status} {reason}</html>"
            return web.Response(status=status, text=text, content_type="text/html", headers=headers)
        body = self.body if self.body is not None else {"code": status, "message": reason}
        return web.json_response(body, status=status, headers=headers)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _envelope(data: dict[str, Any], status: int = 200, message: str = "success") -> web.Response:
    return web.json_response({"code": status, "message": message, "data": data}, status=status)


def _refusal(status: int, message: str) -> web.Response:
    return web.json_response({"code": status, "message": message}, status=status)


def _new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _iso(moment: datetime) -> str:
    """UTC with nine fractional digits, as WaveSpeed writes it; datetime stops at microseconds."""
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%f}000Z"


# --- the server -------------------------------------------------------------------------------


class FakeWaveSpeed:
    """The fake API. Inspect `submissions`, `tasks`, `requests` and `uploads` in tests.

    `clock_skew_s` is how far the fake's clock runs ahead of this machine's (negative: behind);
    it stamps `created_at` and sets the 7-day history window. Tests may change it at any time.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        queue_s: float = 0.0,
        processing_s: float = 1.0,
        max_concurrent: int | None = None,
        max_per_minute: int | None = None,
        rate_window_s: float = 60.0,
        error_code_field: str | None = None,
        clock_skew_s: float = 0.0,
        video: bytes | None = None,
        send_webhooks: bool = True,
        webhook_retry_delays_s: tuple[float, ...] = (),
    ) -> None:
        self.api_key = api_key
        self.queue_s = queue_s
        self.processing_s = processing_s
        self.error_code_field = error_code_field
        self.clock_skew_s = clock_skew_s
        self.out_of_credit = False
        self.base_url = ""
        self.submissions: list[dict[str, Any]] = []
        self.tasks: dict[str, FakeTask] = {}
        self.requests: list[LoggedRequest] = []
        self.uploads: dict[str, Upload] = {}
        # what GET /api/v3/balance answers as `data.balance`: a number, or a numeric string
        # (the docs do not say which; the client takes both), or anything a test wants to try
        self.balance_usd: float | int | str | None = 100.0
        self.max_per_minute = max_per_minute
        self.rate_window_s = rate_window_s  # tests shorten "a minute"
        self.peak_unfinished = 0  # most tasks not yet final at once, seen at each submit
        self._video = sample_video() if video is None else video
        self._recent_submits: deque[float] = deque()  # loop times of accepted submits
        self._slots = asyncio.Semaphore(max_concurrent) if max_concurrent else None
        self._faults: defaultdict[str, deque[Fault]] = defaultdict(deque)
        self._plans: deque[TaskPlan] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._fetcher: aiohttp.ClientSession | None = None
        self._stopping = asyncio.Event()
        self._link_key = secrets.token_bytes(32)
        self.send_webhooks = send_webhooks
        self.webhook_retry_delays_s = webhook_retry_delays_s
        self.webhook_secret = _new_webhook_secret()  # with its whsec_ prefix, as served
        self.webhook_attempts: list[WebhookAttempt] = []
        self._webhook_delays: deque[float | None] = deque()  # None = drop that webhook

    # --- control --------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0 = any free port) and return the base URL."""
        self._runner = web.AppRunner(self._make_app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound_port}"
        self._fetcher = aiohttp.ClientSession(timeout=_FETCH_TIMEOUT)
        return self.base_url

    async def stop(self) -> None:
        """Stop every task and close the server."""
        # Delayed and held answers end now, or closing the server would wait for them.
        self._stopping.set()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._fetcher is not None:
            await self._fetcher.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def fail_next(
        self,
        route: str,
        status: int,
        *,
        times: int | None = 1,
        retry_after: float | str | None = None,
        body: dict[str, Any] | str | None = None,
        raw: bool = False,
        delay_s: float = 0.0,
    ) -> None:
        """Answer the next `times` requests of `route` (None = all) with `status`, unprocessed.

        `body` replaces the {"code", "message"} JSON; `raw` sends HTML like a proxy would;
        `delay_s` waits before answering (a client that gives up first has lost an answer that
        created nothing).
        """
        fault = Fault(
            times,
            process=False,
            status=status,
            retry_after=retry_after,
            body=body,
            raw=raw,
            delay_s=delay_s,
        )
        self._add_fault(route, fault)

    def slow_next(self, route: str, delay_s: float, *, times: int | None = 1) -> None:
        """Process the next `times` requests of `route` normally but answer `delay_s` late
        (a submit creates its task before the wait)."""
        self._add_fault(route, Fault(times, process=True, delay_s=delay_s))

    def lose_answer_next(
        self,
        route: str = "submit",
        *,
        create: bool,
        hold_s: float | None = None,
        times: int | None = 1,
    ) -> None:
        """Never answer the next `times` requests of `route` (None = all).

        `create=True` handles each request first (a submit creates its task: the answer is lost
        on its way back); `create=False` ignores it (lost on its way in). The connection is held
        open `hold_s` (None = until the fake stops, so the client times out), then dropped.
        """
        self._add_fault(route, Fault(times, process=create, delay_s=hold_s, answer=False))

    def clear_faults(self) -> None:
        """Forget every pending fault."""
        self._faults.clear()

    def delay_next_webhook(self, delay_s: float) -> None:
        """Send the next task's webhook `delay_s` after the task ends (plans are used in order)."""
        self._webhook_delays.append(delay_s)

    def drop_next_webhook(self) -> None:
        """Never send the next task's webhook (nothing is logged in `webhook_attempts`)."""
        self._webhook_delays.append(None)

    def rotate_webhook_secret(self) -> str:
        """Replace the webhook secret, as regenerating it in the dashboard would; return it."""
        self.webhook_secret = _new_webhook_secret()
        return self.webhook_secret

    def sign(self, body: bytes, webhook_id: str, timestamp: int | str) -> dict[str, str]:
        """The headers of a delivery of `body` signed with the current secret, for tests that
        craft forged, stale or replayed ones."""
        key = self.webhook_secret.removeprefix("whsec_").encode()
        content = f"{webhook_id}.{timestamp}.".encode() + body
        signature = hmac.new(key, content, hashlib.sha256).hexdigest()
        return {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": f"v3,{signature}",
            "Content-Type": "application/json",
        }

    def webhook_body(self, task_id: str) -> bytes:
        """What a webhook for this task carries now: its bare result `data`, as JSON."""
        return json.dumps(self._prediction_data(self.tasks[task_id])).encode()

    def next_task(
        self,
        outcome: Outcome = "completed",
        *,
        error_code: int | None = None,
        error: str | None = None,
        nsfw: bool = False,
        queue_s: float | None = None,
        processing_s: float | None = None,
        empty_outputs: bool = False,
        output_expires_s: float | None = None,
    ) -> None:
        """Script the next submitted task (plans are used in order). A failure defaults to 5000.

        See TaskPlan for `empty_outputs` and `output_expires_s`.
        """
        if outcome == "failed" and error_code is None:
            error_code = 5000
        plan = TaskPlan(
            outcome=outcome,
            error_code=error_code,
            error=error,
            nsfw=nsfw,
            queue_s=queue_s,
            processing_s=processing_s,
            empty_outputs=empty_outputs,
            output_expires_s=output_expires_s,
        )
        self._plans.append(plan)

    def add_foreign_task(
        self, model: str = MODEL_ID, created_at: datetime | None = None, status: str = "completed"
    ) -> str:
        """Add a task that was not submitted through this API (e.g. made on the website) and
        return its id. History and result serve it like any task; it stays in `status` (a
        failed one with code 5000). `created_at` must be aware; None = the fake's now."""
        if created_at is not None and created_at.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
        task = FakeTask(
            id=uuid.uuid4().hex,
            body={},
            price_micro=0,  # billed elsewhere, not through this API
            plan=TaskPlan(),
            created_at=created_at or self.now(),
            model=model,
            status=status,
        )
        if status == "completed":
            task.inference_ms = 1000
        elif status == "failed":
            self._fail(task, 5000, TASK_ERRORS[5000])
        self.tasks[task.id] = task
        return task.id

    def now(self) -> datetime:
        """The fake's clock: this machine's, shifted by `clock_skew_s`."""
        return datetime.now(UTC) + timedelta(seconds=self.clock_skew_s)

    def calls(self, route: str) -> list[LoggedRequest]:
        """The requests received on a route, oldest first."""
        return [logged for logged in self.requests if logged.route == route]

    def _add_fault(self, route: str, fault: Fault) -> None:
        if route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}")
        self._faults[route].append(fault)

    def _take_fault(self, route: str | None) -> Fault | None:
        queue = self._faults.get(route or "")
        if not queue:
            return None
        fault = queue[0]
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.popleft()
        return fault

    # --- HTTP -----------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=MAX_UPLOAD_BYTES)
        routes = app.router
        # Upload and history first: their paths would also match the submit pattern.
        routes.add_post("/api/v3/media/upload/binary", self._upload, name="upload")
        routes.add_post("/api/v3/predictions", self._history, name="history")
        routes.add_post("/api/v3/{model_id:.+}", self._submit, name="submit")
        routes.add_get("/api/v3/predictions/{id}/result", self._result, name="result")
        routes.add_get("/api/v3/predictions/{id}", self._result, name="result-short")
        routes.add_get("/api/v3/webhook/secret", self._webhook_secret, name="webhook-secret")
        routes.add_get("/api/v3/balance", self._balance, name="balance")
        routes.add_get("/media/{name}", self._media, name="media")
        routes.add_get("/outputs/{id}.mp4", self._output, name="output")
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Log the request, apply an injected fault, check the key on /api routes."""
        name = request.match_info.route.name
        route = name.removesuffix("-short") if name else None
        loop = asyncio.get_running_loop()
        self.requests.append(
            LoggedRequest(
                request.method,
                request.path,
                route,
                loop.time(),
                has_auth="Authorization" in request.headers,
                client_name=request.headers.get("X-Client-Name"),
            )
        )
        fault = self._take_fault(route)
        if fault is None:
            return await self._handle(request, handler)
        response = await self._handle(request, handler) if fault.process else None
        await self._pause(fault.delay_s)
        if not fault.answer:
            if request.transport is not None:
                request.transport.close()
            return web.Response()  # goes nowhere: the connection is closed
        return response if response is not None else fault.response()

    async def _handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/api/") and not self._authorised(request):
            return _refusal(401, "Unauthorized: invalid or missing API key")
        return await handler(request)

    async def _pause(self, delay_s: float | None) -> None:
        """Wait `delay_s` (None = forever), but no longer than until the fake stops."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await self._stopping.wait()

    def _authorised(self, request: web.Request) -> bool:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not key.strip():
            return False
        return self.api_key is None or key == self.api_key

    async def _submit(self, request: web.Request) -> web.Response:
        if request.match_info["model_id"] != MODEL_ID:
            return _refusal(404, f"model {request.match_info['model_id']} not found")
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _refusal(400, "Invalid request: the body is not valid JSON")
        problem = validate_body(body)
        webhook = request.query.get("webhook")
        if problem is None and webhook is not None and not _url(webhook):
            problem = "webhook must be an http(s) URL"
        if problem is not None:
            return _refusal(400, f"Invalid request: {problem}")
        if self.out_of_credit:
            return _refusal(402, "Insufficient balance: please top up your account")
        if not self._within_rate():
            return _refusal(429, "Too Many Requests: rate limit exceeded, please slow down")
        task = self._create_task(body, webhook)
        return _envelope(self._prediction_data(task))

    async def _webhook_secret(self, request: web.Request) -> web.Response:
        return _envelope({"secret": self.webhook_secret})

    async def _history(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _refusal(400, "Invalid request: the body is not valid JSON")
        problem = validate_history_body(body)
        if problem is not None:
            return _refusal(400, f"Invalid request: {problem}")
        page, size = body["page"], body["page_size"]
        tasks = self._recent_tasks()[(page - 1) * size : page * size]
        return _envelope({"page": page, "items": [self._prediction_data(t) for t in tasks]})

    def _within_rate(self) -> bool:
        """Whether one more submit fits `max_per_minute` in the last `rate_window_s` (and count
        it)."""
        if self.max_per_minute is None:
            return True
        now = asyncio.get_running_loop().time()
        while self._recent_submits and self._recent_submits[0] <= now - self.rate_window_s:
            self._recent_submits.popleft()
        if len(self._recent_submits) >= self.max_per_minute:
            return False
        self._recent_submits.append(now)
        return True

    def _recent_tasks(self) -> list[FakeTask]:
        """The tasks of the last 7 days by the fake's clock, newest first."""
        cutoff = self.now() - HISTORY_RETENTION
        recent = [task for task in self.tasks.values() if task.created_at >= cutoff]
        return sorted(recent, key=lambda task: task.created_at, reverse=True)

    async def _balance(self, request: web.Request) -> web.Response:
        """The account's balance in USD (WaveSpeed's Balance API: `data.balance`)."""
        return _envelope({"balance": self.balance_usd})

    async def _result(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.match_info["id"])
        if task is None:
            return _refusal(404, "prediction not found")
        return _envelope(self._prediction_data(task))

    async def _upload(self, request: web.Request) -> web.Response:
        try:
            form = await request.post()
        except ValueError:
            return _refusal(400, "Invalid request: expected multipart/form-data")
        file = form.get("file")
        if not isinstance(file, web.FileField):
            return _refusal(400, "Invalid request: the multipart field `file` is required")
        data = file.file.read()
        suffix = "".join(c for c in file.filename.rpartition(".")[2] if c.isalnum())[:8]
        name = f"{uuid.uuid4().hex}.{suffix or 'bin'}"
        self.uploads[name] = Upload(name, data, file.content_type)
        return _envelope(
            {
                "type": file.content_type.partition("/")[0],
                "download_url": f"{self.base_url}/media/{name}",
                "filename": name,
                "size": len(data),
            }
        )

    async def _media(self, request: web.Request) -> web.Response:
        upload = self.uploads.get(request.match_info["name"])
        if upload is None:
            raise web.HTTPNotFound()
        return web.Response(body=upload.data, content_type=upload.content_type)

    async def _output(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.match_info["id"])
        if task is None or task.status != "completed" or task.plan.empty_outputs:
            raise web.HTTPNotFound()
        if task.plan.output_expires_s is not None:
            refusal = self._link_refusal(
                task.id, request.query.get("exp"), request.query.get("sig")
            )
            if refusal is not None:
                raise web.HTTPForbidden(text=f"AccessDenied: {refusal}")
        return web.Response(body=self._video, content_type="video/mp4")

    def _output_url(self, task: FakeTask) -> str:
        """The task's output link; a signed one that expires if its plan says so."""
        url = f"{self.base_url}/outputs/{task.id}.mp4"
        lifetime = task.plan.output_expires_s
        if lifetime is None:
            return url
        expires = f"{self.now().timestamp() + lifetime:.3f}"
        return f"{url}?exp={expires}&sig={self._signature(task.id, expires)}"

    def _signature(self, task_id: str, expires: str) -> str:
        return hmac.new(self._link_key, f"{task_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    def _link_refusal(self, task_id: str, expires: str | None, signature: str | None) -> str | None:
        """Why a signed output link is refused (forged, unsigned or expired), or None."""
        if expires is None or signature is None:
            return "the link is not signed"
        if not hmac.compare_digest(signature, self._signature(task_id, expires)):
            return "the signature does not match"
        if float(expires) < self.now().timestamp():
            return "the link has expired"
        return None

    # --- tasks ----------------------------------------------------------------------------

    def _create_task(self, body: dict[str, Any], webhook: str | None = None) -> FakeTask:
        plan = self._plans.popleft() if self._plans else TaskPlan()
        plan = replace(
            plan,
            queue_s=self.queue_s if plan.queue_s is None else plan.queue_s,
            processing_s=self.processing_s if plan.processing_s is None else plan.processing_s,
        )
        task = FakeTask(
            id=uuid.uuid4().hex,
            body=body,
            price_micro=body_price_micro(body),
            plan=plan,
            created_at=self.now(),
            webhook=webhook,
        )
        self.submissions.append(body)
        self.tasks[task.id] = task
        unfinished = sum(1 for known in self.tasks.values() if known.status not in _FINAL)
        self.peak_unfinished = max(self.peak_unfinished, unfinished)
        worker = asyncio.create_task(self._run_then_notify(task), name=f"fake-wavespeed-{task.id}")
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)
        return task

    async def _run_then_notify(self, task: FakeTask) -> None:
        await self._run(task)
        if task.webhook is not None and self.send_webhooks:
            await self._send_webhook(task, task.webhook)

    async def _send_webhook(self, task: FakeTask, url: str) -> None:
        """POST the task's signed result to `url`, again after each retry delay while the
        answer is not 2xx."""
        delay = self._webhook_delays.popleft() if self._webhook_delays else 0.0
        if delay is None:
            return
        assert self._fetcher is not None
        webhook_id = f"wh_{uuid.uuid4().hex}"
        loop = asyncio.get_running_loop()
        for pause in (delay, *self.webhook_retry_delays_s):
            await asyncio.sleep(pause)
            body = self.webhook_body(task.id)
            headers = self.sign(body, webhook_id, int(self.now().timestamp()))
            try:
                async with self._fetcher.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    status: int | None = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = None
            attempt = WebhookAttempt(url, task.id, webhook_id, status, loop.time())
            self.webhook_attempts.append(attempt)
            if status is not None and 200 <= status < 300:
                return

    async def _run(self, task: FakeTask) -> None:
        plan = task.plan
        assert plan.queue_s is not None and plan.processing_s is not None
        await asyncio.sleep(plan.queue_s)
        async with self._slots or contextlib.nullcontext():
            task.status = "processing"
            loop = asyncio.get_running_loop()
            started = loop.time()
            unfetchable = await self._unfetchable_input(task.body)
            if unfetchable is not None:
                self._fail(task, 1402, unfetchable)
                return
            await asyncio.sleep(plan.processing_s)
            if plan.outcome == "failed":
                code = plan.error_code or 5000
                self._fail(task, code, plan.error or TASK_ERRORS.get(code, "Task failed"))
                return
            task.inference_ms = int((loop.time() - started) * 1000)
            task.status = "completed"

    def _fail(self, task: FakeTask, code: int, message: str) -> None:
        task.status = "failed"
        task.error_code = code
        task.error = message if self.error_code_field else f"{code}: {message}"

    async def _unfetchable_input(self, body: dict[str, Any]) -> str | None:
        """Fetch loopback image/audio URLs like the real workers would; say why one failed."""
        assert self._fetcher is not None
        for name in ("image", "audio"):
            url = body.get(name)
            if url is None or URL(url).host not in LOOPBACK_HOSTS:
                continue
            try:
                async with self._fetcher.get(url) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as error:
                return f"Failed to fetch {name} from URL: {type(error).__name__}"
            if status != 200:
                return f"Failed to fetch {name} from URL: HTTP {status}"
        return None

    def _prediction_data(self, task: FakeTask) -> dict[str, Any]:
        completed = task.status == "completed"
        has_output = completed and not task.plan.empty_outputs
        outputs = [self._output_url(task)] if has_output else []
        data: dict[str, Any] = {
            "id": task.id,
            "model": task.model,
            "outputs": outputs,
            "urls": {"get": f"{self.base_url}/api/v3/predictions/{task.id}/result"},
            "has_nsfw_contents": [task.plan.nsfw] * len(outputs),
            "status": task.status,
            "created_at": _iso(task.created_at),
            "error": task.error,
            "timings": {"inference": task.inference_ms} if completed else {},
        }
        if self.error_code_field and task.error_code is not None:
            data[self.error_code_field] = task.error_code
        return data


# --- running it by hand -----------------------------------------------------------------------


async def serve_forever(host: str = "127.0.0.1", port: int = 8378, **options: Any) -> None:
    """Run a FakeWaveSpeed(**options) on host:port until cancelled; print its base URL."""
    fake = FakeWaveSpeed(**options)
    url = await fake.start(host, port)
    print(f"Fake WaveSpeed API at {url}  (WAVESPEED_BASE_URL={url}); Ctrl-C stops it", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def run_fake_api(
    host: str = "127.0.0.1",
    port: int = 8378,
    api_key: str | None = None,
    queue_s: float = 2.0,
    processing_s: float = 8.0,
    max_concurrent: int | None = None,
) -> None:
    """Serve the fake until Ctrl-C (for `wanbot fake-api`). No api_key = any non-empty key."""
    options = {"api_key": api_key, "queue_s": queue_s, "processing_s": processing_s}
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(host, port, max_concurrent=max_concurrent, **options))
