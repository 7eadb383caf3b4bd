"""WaveSpeedAI client for Wan 2.6 Image-to-Video Flash: submit, poll, upload, download.

The contract is ../shared/wavespeed-api.md. One aiohttp session is shared by every call; the API key
is sent only to `base_url` and never appears in a log line, an exception or a repr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cached_property
from typing import Any, Self

import aiohttp
from multidict import CIMultiDictProxy
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from yarl import URL

log = logging.getLogger(__name__)

MODEL_ID = "alibaba/wan-2.6/image-to-video-flash"
DEFAULT_BASE_URL = "https://api.wavespeed.ai"
CLIENT_NAME = "wanbot"

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "timeout", "deleted"})
KNOWN_STATUSES = FINAL_STATUSES | {"created", "processing"}
RETRYABLE_HTTP = frozenset({429, 500, 502, 503, 504})

# How many times the job runner may resubmit after a task error code (0 = never).
# 1403/1405 "task execution failed": maybe once. 5000/5003/5004 internal/unavailable/timeout: yes.
TASK_CODE_RETRIES: dict[int, int] = {1403: 1, 1405: 1, 5000: 3, 5003: 3, 5004: 3}

_MAX_ENVELOPE_BYTES = 4 * 1024 * 1024
_MAX_SERVER_TEXT = 300
_LEADING_CODE = re.compile(r"^\W*(\d{4})\b")
_LABELLED_CODE = re.compile(r"\b(?:code|error)\W{0,3}(\d{4})\b", re.IGNORECASE)
_KNOWN_CODE = re.compile(r"\b(1200|1400|1401|1402|1403|1405|5000|5003|5004)\b")
_CREDIT_WORDS = re.compile(r"insufficient|balance|credit", re.IGNORECASE)


# --- errors -----------------------------------------------------------------------------------


class WaveSpeedError(Exception):
    """Base of every client error. `str(exc)` is a safe human message; it never holds the key."""

    default_retryable = False

    def __init__(
        self, message: str, *, retryable: bool | None = None, http_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = self.default_retryable if retryable is None else retryable
        self.http_status = http_status


class AuthError(WaveSpeedError):
    """401/403: the API key is missing, wrong or revoked."""


class OutOfCredit(WaveSpeedError):
    """The WaveSpeed account cannot pay for the task (402, or a 4xx about balance/credit)."""


class RateLimited(WaveSpeedError):
    """429 after every allowed retry; `retry_after` is the server's hint in seconds, if any."""

    default_retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, http_status=429)
        self.retry_after = retry_after


class TransientError(WaveSpeedError):
    """5xx, timeouts or connection errors after every allowed retry; trying later may work."""

    default_retryable = True


class RejectedInput(WaveSpeedError):
    """The API refused the request (400 validation error and other 4xx); `code` is the status."""

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message, http_status=code)
        self.code = code


class NotFound(RejectedInput):
    """404: the prediction (or model) does not exist, e.g. a task that has expired."""


class SubmitUncertain(WaveSpeedError):
    """The submit may have been accepted (and billed) although no answer said so. Never retried."""


class TaskFailed(WaveSpeedError):
    """The task ended without a video: status failed/cancelled/timeout/deleted.

    `code` is the numeric task error code (1200 moderation, 14xx input, 5xxx internal) when known;
    `max_retries` is how many resubmissions the code deserves (see TASK_CODE_RETRIES).
    """

    def __init__(
        self, prediction_id: str, status: str, code: int | None, message: str | None
    ) -> None:
        self.prediction_id = prediction_id
        self.status = status
        self.code = code
        self.message = message or ""
        self.max_retries = TASK_CODE_RETRIES.get(code, 0) if code is not None else 0
        label = f"code {code}" if code is not None else f"status {status}"
        detail = f": {self.message}" if self.message else ""
        super().__init__(
            f"The WaveSpeed task {status} ({label}){detail}", retryable=self.max_retries > 0
        )


class PollTimeout(WaveSpeedError):
    """The task was not final when the poll policy's timeout ran out; it may still finish."""

    def __init__(self, prediction_id: str, last_status: str | None, waited_s: float) -> None:
        self.prediction_id = prediction_id
        self.last_status = last_status
        super().__init__(
            f"The WaveSpeed task was still {last_status or 'unknown'} after {waited_s:.0f} s"
        )


class TooLarge(WaveSpeedError):
    """A download is bigger than the caller's `max_bytes`; `size` is what was known of it."""

    def __init__(self, size: int, max_bytes: int) -> None:
        self.size = size
        self.max_bytes = max_bytes
        super().__init__(f"The response is larger than {max_bytes} bytes")


# --- data -------------------------------------------------------------------------------------


class Prediction(BaseModel):
    """The `data` of a submit or result envelope. Missing or null fields get defaults."""

    model_config = ConfigDict(extra="ignore")

    id: str
    model: str = ""
    outputs: list[str] = []
    urls: dict[str, str] = {}
    has_nsfw_contents: list[bool] | None = None
    status: str
    created_at: str | None = None
    error: str | None = None
    timings: dict[str, Any] | None = None
    task_code: int | None = Field(default=None, validation_alias=AliasChoices("error_code", "code"))

    @field_validator("model", "outputs", mode="before")
    @classmethod
    def _default_for_null(cls, value: Any, info: ValidationInfo) -> Any:
        return cls.model_fields[info.field_name or ""].default if value is None else value

    @field_validator("urls", mode="before")
    @classmethod
    def _string_urls(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return {}
        return {key: url for key, url in value.items() if isinstance(url, str)}

    @field_validator("task_code", mode="before")
    @classmethod
    def _integer_code(cls, value: Any) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return int(value) if isinstance(value, str) and value.strip().isdigit() else None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def is_completed(self) -> bool:
        return self.status == "completed"

    @property
    def nsfw(self) -> bool:
        """True if any output was flagged."""
        return any(self.has_nsfw_contents or ())

    @property
    def inference_ms(self) -> int | None:
        value = (self.timings or {}).get("inference")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
        return None

    @property
    def error_code(self) -> int | None:
        """The numeric task error code: an int `error_code`/`code` field, else one in `error`."""
        if self.task_code is not None and self.task_code not in (0, 200):
            return self.task_code
        return parse_task_code(self.error)


def parse_task_code(text: str | None) -> int | None:
    """Find a task error code in a text: leading ("1200: …"), labelled ("code 1200") or known."""
    if not text:
        return None
    for pattern in (_LEADING_CODE, _LABELLED_CODE, _KNOWN_CODE):
        if match := pattern.search(text):
            return int(match.group(1))
    return None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if unusable."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


# --- policies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter for retryable requests.

    A Retry-After hint is honoured as is, up to `max_retry_after_s`; a longer one ends the retries
    at once (RateLimited carries the hint so the caller can come back later).
    """

    attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0
    max_retry_after_s: float = 60.0

    def backoff(self, retry: int) -> float:
        """Pause before retry number `retry` (1-based): uniform in [0, min(cap, base·2^(n-1))]."""
        return random.uniform(0.0, min(self.max_delay_s, self.base_delay_s * 2 ** (retry - 1)))


@dataclass(frozen=True)
class PollPolicy:
    """Adaptive polling: first check after `first_delay_s`, then ×`factor` up to the cap."""

    first_delay_s: float = 3.0
    factor: float = 1.5
    max_interval_s: float = 5.0  # a finished video is noticed ~2.5 s late on average (bench/)
    timeout_s: float = 1800.0

    def intervals(self) -> Iterator[float]:
        """The pauses before each poll, forever."""
        interval = self.first_delay_s
        while True:
            yield min(interval, self.max_interval_s)
            interval *= self.factor


@dataclass(frozen=True)
class Timeouts:
    """Per-request time limits in seconds (the official SDK's, plus one for downloads)."""

    connect_s: float = 10.0
    read_s: float = 30.0
    submit_s: float = 60.0
    upload_s: float = 120.0
    download_s: float = 300.0


# --- transport --------------------------------------------------------------------------------


@dataclass
class _Reply:
    """A fully read HTTP response."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @cached_property
    def envelope(self) -> dict[str, Any] | None:
        """The body as a WaveSpeed envelope (an int `code` and a str `message`), else None."""
        try:
            parsed = json.loads(self.body)
        except ValueError:
            return None
        if not isinstance(parsed, dict):
            return None
        code, message = parsed.get("code"), parsed.get("message")
        if isinstance(code, int) and not isinstance(code, bool) and isinstance(message, str):
            return parsed
        return None

    @property
    def code(self) -> int:
        """The envelope's code when the HTTP status says 2xx but the envelope disagrees."""
        if self.envelope is not None and 200 <= self.status < 300:
            return int(self.envelope["code"])
        return self.status

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"))


_Outcome = _Reply | aiohttp.ClientError | TimeoutError
_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)
_BAD_URL_ERRORS = (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)
# Failures that happen before a single byte of the request was sent.
_NOT_SENT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, *_BAD_URL_ERRORS)


def _retry_idempotent(outcome: _Outcome) -> bool:
    if isinstance(outcome, _Reply):
        return outcome.status in RETRYABLE_HTTP
    return not isinstance(outcome, _BAD_URL_ERRORS)


def _retry_submit(outcome: _Outcome) -> bool:
    # A submit is retried only when the server certainly did not take it: the connection never
    # opened, or a 429 refused it. Anything else may have created (and billed) the task.
    if isinstance(outcome, _Reply):
        return outcome.status == 429
    return isinstance(outcome, _NOT_SENT_ERRORS) and not isinstance(outcome, _BAD_URL_ERRORS)


def _where(url: str) -> str:
    """Host and path of a URL for logs: signed query strings stay out of them."""
    parsed = URL(url)
    return f"{parsed.host}{parsed.path}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wanbot")
    except PackageNotFoundError:
        return "0"


_USER_AGENT = f"{CLIENT_NAME}/{_version()}"


# --- client -----------------------------------------------------------------------------------


class WaveSpeedClient:
    """Async client of the WaveSpeed REST API for one model."""

    def __init__(
        self,
        api_key: str | SecretStr,
        base_url: str = DEFAULT_BASE_URL,
        *,
        model_id: str = MODEL_ID,
        retry: RetryPolicy = RetryPolicy(),
        timeouts: Timeouts = Timeouts(),
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        if not self._key.get_secret_value():
            raise ValueError("the WaveSpeed API key is empty")
        self.base_url = base_url.rstrip("/")
        self.model_id = model_id.strip("/")
        self.retry = retry
        self.timeouts = timeouts
        self._origin = URL(self.base_url).origin()
        self._session = session
        self._owns_session = session is None

    def __repr__(self) -> str:
        return f"WaveSpeedClient(base_url={self.base_url!r}, model_id={self.model_id!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # --- API ----------------------------------------------------------------------------------

    async def submit(self, body: dict[str, Any]) -> Prediction:
        """Create a task (POST /api/v3/{model_id}); never retried once the server may have it."""
        payload = json.dumps(body).encode()
        outcome = await self._call(
            "POST",
            f"{self.base_url}/api/v3/{self.model_id}",
            retry_if=_retry_submit,
            timeout_s=self.timeouts.submit_s,
            data=lambda: payload,
            content_type="application/json",
        )
        if isinstance(outcome, _NOT_SENT_ERRORS):
            self._settled(outcome)  # raises: nothing was sent, so nothing can be billed
        uncertain = SubmitUncertain(
            "WaveSpeed did not confirm the submission; it may or may not have been accepted",
            http_status=outcome.status if isinstance(outcome, _Reply) else None,
        )
        # No answer, or an answer that is not WaveSpeed's (a proxy's 502/504 page, an unreadable
        # 200): the task may exist. A WaveSpeed envelope, even with a 5xx, means it was processed.
        if not isinstance(outcome, _Reply):
            raise uncertain from outcome
        if outcome.envelope is None and outcome.status >= 500:
            raise uncertain
        try:
            return self._prediction(outcome)
        except _Unreadable:
            raise uncertain from None

    async def get_result(self, prediction_id: str) -> Prediction:
        """Fetch a task's current state (GET /api/v3/predictions/{id}/result), with retries."""
        reply = await self._idempotent("GET", self._result_url(prediction_id), self.timeouts.read_s)
        try:
            return self._prediction(reply)
        except _Unreadable:
            raise TransientError("WaveSpeed sent an unreadable result") from None

    async def upload(self, data: bytes, filename: str, content_type: str) -> str:
        """Upload a file to WaveSpeed's media store and return its download URL."""

        def form() -> aiohttp.FormData:
            fields = aiohttp.FormData()
            fields.add_field("file", data, filename=filename, content_type=content_type)
            return fields

        reply = await self._idempotent(
            "POST", f"{self.base_url}/api/v3/media/upload/binary", self.timeouts.upload_s, form
        )
        try:
            url = self._data(reply).get("download_url")
        except _Unreadable:
            url = None
        if not isinstance(url, str) or not url:
            raise TransientError("WaveSpeed's upload answer had no download URL")
        return url

    async def download(self, url: str, *, max_bytes: int) -> bytes:
        """Fetch an output file, refusing more than `max_bytes`. The key goes only to base_url."""
        outcome = await self._call(
            "GET",
            url,
            retry_if=_retry_idempotent,
            timeout_s=self.timeouts.download_s,
            max_bytes=max_bytes,
        )
        reply = self._settled(outcome)
        if reply.status != 200:
            raise WaveSpeedError(
                f"Could not download the video (HTTP {reply.status})",
                retryable=reply.status in RETRYABLE_HTTP,
                http_status=reply.status,
            )
        return reply.body

    async def wait_for_result(
        self,
        prediction_id: str,
        policy: PollPolicy,
        on_update: Callable[[Prediction], Awaitable[None]] | None = None,
    ) -> Prediction:
        """Poll until the task is final; return it if completed, else raise TaskFailed.

        `on_update` is awaited after every successful poll (compare `.status` to see a change).
        Transient poll failures are logged and polling goes on: the task keeps running at
        WaveSpeed regardless. Raises PollTimeout when `policy.timeout_s` runs out.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        last_status: str | None = None
        unknown: set[str] = set()
        for interval in policy.intervals():
            remaining = started + policy.timeout_s - loop.time()
            if remaining <= 0:
                break
            await asyncio.sleep(min(interval, remaining))
            prediction = await self._poll_once(prediction_id)
            if prediction is None:
                continue
            last_status = prediction.status
            if last_status not in KNOWN_STATUSES and last_status not in unknown:
                unknown.add(last_status)
                log.warning(
                    "prediction %s: unknown status %r, polling on", prediction_id, last_status
                )
            if on_update is not None:
                await on_update(prediction)
            if prediction.is_completed:
                return prediction
            if prediction.is_final:
                message = self._redact(prediction.error)
                raise TaskFailed(prediction_id, prediction.status, prediction.error_code, message)
        raise PollTimeout(prediction_id, last_status, loop.time() - started)

    async def _poll_once(self, prediction_id: str) -> Prediction | None:
        """One poll; None when it failed in a way that polling again may fix."""
        try:
            return await self.get_result(prediction_id)
        except (TransientError, RateLimited) as error:
            log.warning("prediction %s: poll failed, will poll again: %s", prediction_id, error)
            return None

    # --- plumbing -----------------------------------------------------------------------------

    def _result_url(self, prediction_id: str) -> str:
        return f"{self.base_url}/api/v3/predictions/{prediction_id}/result"

    def _headers(self, url: str) -> dict[str, str]:
        headers = {"User-Agent": _USER_AGENT, "X-Client-Name": CLIENT_NAME}
        target = URL(url)
        if target.is_absolute() and target.origin() == self._origin:
            headers["Authorization"] = f"Bearer {self._key.get_secret_value()}"
        return headers

    def _redact(self, text: str | None) -> str | None:
        """Server text made safe to show: the key blanked out, the length capped."""
        if text is None:
            return None
        return text.replace(self._key.get_secret_value(), "***")[:_MAX_SERVER_TEXT]

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _idempotent(
        self,
        method: str,
        url: str,
        timeout_s: float,
        data: Callable[[], Any] | None = None,
    ) -> _Reply:
        """A request that is safe to repeat: retried on 429/5xx/timeouts/connection errors."""
        outcome = await self._call(
            method, url, retry_if=_retry_idempotent, timeout_s=timeout_s, data=data
        )
        return self._settled(outcome)

    @staticmethod
    def _settled(outcome: _Outcome) -> _Reply:
        """The reply a retry loop ended on, or the error for the transport failure it ended on."""
        if isinstance(outcome, _Reply):
            return outcome
        if isinstance(outcome, _BAD_URL_ERRORS):
            raise WaveSpeedError("Not a usable http(s) URL") from None
        raise TransientError(
            f"WaveSpeed could not be reached ({type(outcome).__name__})"
        ) from outcome

    async def _call(
        self,
        method: str,
        url: str,
        *,
        retry_if: Callable[[_Outcome], bool],
        timeout_s: float,
        data: Callable[[], Any] | None = None,
        content_type: str | None = None,
        max_bytes: int = _MAX_ENVELOPE_BYTES,
    ) -> _Outcome:
        """Send a request up to `retry.attempts` times while `retry_if` says so; return the last
        outcome (a reply or a transport error) for the caller to interpret."""
        headers = self._headers(url)
        if content_type is not None:
            headers["Content-Type"] = content_type
        limits = aiohttp.ClientTimeout(total=timeout_s, sock_connect=self.timeouts.connect_s)
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._attempt(method, url, headers, limits, data, max_bytes)
            if not retry_if(outcome) or attempt >= self.retry.attempts:
                return outcome
            pause = self._pause(outcome, attempt)
            if pause is None:
                return outcome
            log.info(
                "%s %s: %s; retry %d/%d in %.2f s",
                method,
                _where(url),
                f"HTTP {outcome.status}" if isinstance(outcome, _Reply) else type(outcome).__name__,
                attempt,
                self.retry.attempts - 1,
                pause,
            )
            await asyncio.sleep(pause)

    async def _attempt(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        limits: aiohttp.ClientTimeout,
        data: Callable[[], Any] | None,
        max_bytes: int,
    ) -> _Outcome:
        try:
            async with self._get_session().request(
                method, url, headers=headers, data=data() if data else None, timeout=limits
            ) as response:
                body = await _read_limited(response, max_bytes)
                return _Reply(response.status, response.headers, body)
        except _TRANSPORT_ERRORS as error:
            return error

    def _pause(self, outcome: _Outcome, retry: int) -> float | None:
        """The wait before the next attempt; None when the server asks for more than we allow."""
        hint = outcome.retry_after if isinstance(outcome, _Reply) else None
        if hint is None:
            return self.retry.backoff(retry)
        return hint if hint <= self.retry.max_retry_after_s else None

    def _data(self, reply: _Reply) -> dict[str, Any]:
        """The envelope's `data` of a successful reply, or the error the reply stands for."""
        envelope = reply.envelope
        code = reply.code
        if 200 <= code < 300:
            data = envelope.get("data") if envelope else None
            if not isinstance(data, dict):
                raise _Unreadable
            return data
        message = self._redact(envelope["message"]) if envelope else ""
        raise _error_for(code, message or "", reply.retry_after)

    def _prediction(self, reply: _Reply) -> Prediction:
        data = self._data(reply)
        try:
            return Prediction.model_validate(data)
        except ValidationError:
            raise _Unreadable from None


class _Unreadable(Exception):
    """A success answer without the data it should carry (the caller decides what that means)."""


def _error_for(code: int, message: str, retry_after: float | None) -> WaveSpeedError:
    """Map a non-success status (HTTP or envelope) and the server's message to an error."""
    if code in (401, 403):
        return AuthError(
            f"WaveSpeed rejected the API key (HTTP {code}); check WAVESPEED_API_KEY",
            http_status=code,
        )
    if code == 402 or (400 <= code < 500 and _CREDIT_WORDS.search(message)):
        return OutOfCredit("The WaveSpeed account is out of credit", http_status=code)
    if code == 429:
        return RateLimited("WaveSpeed is rate limiting requests", retry_after=retry_after)
    if code == 404:
        return NotFound(f"WaveSpeed: not found ({message or 'no message'})", code=code)
    if 400 <= code < 500:
        return RejectedInput(f"WaveSpeed rejected the request: {message or code}", code=code)
    if code >= 500:
        return TransientError(f"WaveSpeed failed (HTTP {code}): {message}", http_status=code)
    return TransientError(f"WaveSpeed sent an unexpected answer (code {code})", http_status=code)


async def _read_limited(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """Read a body, raising TooLarge as soon as it exceeds `max_bytes`."""
    if response.content_length is not None and response.content_length > max_bytes:
        raise TooLarge(response.content_length, max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(size, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)
