"""A fake WaveSpeed API (aiohttp.web) following ../shared/wavespeed-api.md, for tests and by hand.

Choices where the real API is undocumented:
- Out of credit: a submit is refused with HTTP 402 and {"code": 402, "message": "Insufficient
  balance: ..."}.
- A failed task's numeric code leads its `error` text ("1200: Content flagged ..."); with
  `error_code_field="code"` it goes into that `data` field instead and the text is left bare.
- Keys: with `api_key=None` any non-empty Bearer key is accepted; otherwise only that one.
- `image`/`audio` must be http(s) URLs; loopback ones are fetched when the task starts (failing it
  with 1402 if that does not work), others are accepted unfetched.

Each task is driven by a background asyncio task: `created` for `queue_s` and then until one of
`max_concurrent` slots is free (like a Bronze account), `processing` for `processing_s`, then
`completed` or `failed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from http import HTTPStatus
from importlib.resources import files
from typing import Any, Literal, Self

import aiohttp
from aiohttp import web
from yarl import URL

from bot.domain.pricing import price_micro
from bot.wavespeed import MODEL_ID

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Outcome = Literal["completed", "failed"]

ROUTES = ("submit", "result", "upload", "media", "output")
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


def body_price_micro(body: dict[str, Any]) -> int:
    """What a valid body would bill; with audio if enable_audio (default true) or an audio URL."""
    has_audio = body.get("enable_audio", True) or "audio" in body
    return price_micro(body.get("duration", 5), body.get("resolution", "720p"), has_audio)


# --- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskPlan:
    """How the next task will end. None timings take the fake's defaults."""

    outcome: Outcome = "completed"
    error_code: int | None = None
    error: str | None = None
    nsfw: bool = False
    queue_s: float | None = None
    processing_s: float | None = None


@dataclass
class FakeTask:
    """One submitted task and where it is."""

    id: str
    body: dict[str, Any]
    price_micro: int
    plan: TaskPlan
    created_at: datetime
    status: str = "created"
    error: str = ""
    error_code: int | None = None
    inference_ms: int | None = None


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
class Upload:
    """A file stored by the media upload endpoint."""

    name: str
    data: bytes
    content_type: str


@dataclass
class Fault:
    """An injected misbehaviour of one route. `status` None answers normally, only late."""

    status: int | None
    remaining: int | None  # None = until clear_faults()
    retry_after: float | str | None = None
    body: dict[str, Any] | str | None = None
    raw: bool = False
    delay_s: float = 0.0

    def response(self) -> web.Response:
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


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- the server -------------------------------------------------------------------------------


class FakeWaveSpeed:
    """The fake API. Inspect `submissions`, `tasks`, `requests` and `uploads` in tests."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        queue_s: float = 0.0,
        processing_s: float = 1.0,
        max_concurrent: int | None = None,
        error_code_field: str | None = None,
    ) -> None:
        self.api_key = api_key
        self.queue_s = queue_s
        self.processing_s = processing_s
        self.error_code_field = error_code_field
        self.out_of_credit = False
        self.base_url = ""
        self.submissions: list[dict[str, Any]] = []
        self.tasks: dict[str, FakeTask] = {}
        self.requests: list[LoggedRequest] = []
        self.uploads: dict[str, Upload] = {}
        self._video = sample_video()
        self._slots = asyncio.Semaphore(max_concurrent) if max_concurrent else None
        self._faults: defaultdict[str, deque[Fault]] = defaultdict(deque)
        self._plans: deque[TaskPlan] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._fetcher: aiohttp.ClientSession | None = None

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
        `delay_s` waits before answering.
        """
        self._add_fault(route, Fault(status, times, retry_after, body, raw, delay_s))

    def slow_next(self, route: str, delay_s: float, *, times: int | None = 1) -> None:
        """Process the next `times` requests of `route` normally but answer `delay_s` late
        (a submit creates its task before the wait)."""
        self._add_fault(route, Fault(None, times, delay_s=delay_s))

    def clear_faults(self) -> None:
        """Forget every pending fault."""
        self._faults.clear()

    def next_task(
        self,
        outcome: Outcome = "completed",
        *,
        error_code: int | None = None,
        error: str | None = None,
        nsfw: bool = False,
        queue_s: float | None = None,
        processing_s: float | None = None,
    ) -> None:
        """Script the next submitted task (plans are used in order). A failure defaults to 5000."""
        if outcome == "failed" and error_code is None:
            error_code = 5000
        self._plans.append(TaskPlan(outcome, error_code, error, nsfw, queue_s, processing_s))

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
        # Upload first: its path would also match the submit pattern.
        routes.add_post("/api/v3/media/upload/binary", self._upload, name="upload")
        routes.add_post("/api/v3/{model_id:.+}", self._submit, name="submit")
        routes.add_get("/api/v3/predictions/{id}/result", self._result, name="result")
        routes.add_get("/api/v3/predictions/{id}", self._result, name="result-short")
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
        if fault is not None and fault.status is not None:
            await asyncio.sleep(fault.delay_s)
            return fault.response()
        if request.path.startswith("/api/") and not self._authorised(request):
            return _refusal(401, "Unauthorized: invalid or missing API key")
        response = await handler(request)
        if fault is not None:
            await asyncio.sleep(fault.delay_s)
        return response

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
        if problem is not None:
            return _refusal(400, f"Invalid request: {problem}")
        if self.out_of_credit:
            return _refusal(402, "Insufficient balance: please top up your account")
        task = self._create_task(body)
        return _envelope(self._prediction_data(task))

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
        if task is None or task.status != "completed":
            raise web.HTTPNotFound()
        return web.Response(body=self._video, content_type="video/mp4")

    # --- tasks ----------------------------------------------------------------------------

    def _create_task(self, body: dict[str, Any]) -> FakeTask:
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
            created_at=datetime.now(UTC),
        )
        self.submissions.append(body)
        self.tasks[task.id] = task
        worker = asyncio.create_task(self._run(task), name=f"fake-wavespeed-{task.id}")
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)
        return task

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
        data: dict[str, Any] = {
            "id": task.id,
            "model": MODEL_ID,
            "outputs": [f"{self.base_url}/outputs/{task.id}.mp4"] if completed else [],
            "urls": {"get": f"{self.base_url}/api/v3/predictions/{task.id}/result"},
            "has_nsfw_contents": [task.plan.nsfw] if completed else [],
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
