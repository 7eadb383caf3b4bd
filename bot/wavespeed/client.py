"""WaveSpeedClient for Wan 2.6 Image-to-Video Flash: submit, poll, upload, download, history.

Also its request machinery: retries, envelope reading and the mapping of status codes to errors.
One aiohttp session is shared by every call; the API key is sent only to `base_url` and never
appears in a log line, an exception or a repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from functools import cached_property, wraps
from pathlib import Path
from typing import Any, Self

import aiohttp
from multidict import CIMultiDictProxy
from pydantic import SecretStr, ValidationError
from yarl import URL

from bot.domain.pricing import MICRO_PER_USD
from bot.domain.timing import FixedSchedule, PollSchedule
from bot.metrics import count_wavespeed_error
from bot.wavespeed.errors import (
    AuthError,
    NotFound,
    OutOfCredit,
    PollTimeout,
    RateLimited,
    RejectedInput,
    SubmitUncertain,
    TaskFailed,
    TooLarge,
    TransientError,
    WaveSpeedError,
)
from bot.wavespeed.models import KNOWN_STATUSES, Prediction
from bot.wavespeed.policies import PollPolicy, RetryPolicy, Timeouts, parse_retry_after

log = logging.getLogger(__name__)

MODEL_ID = "alibaba/wan-2.6/image-to-video-flash"
DEFAULT_BASE_URL = "https://api.wavespeed.ai"
CLIENT_NAME = "wanbot"

RETRYABLE_HTTP = frozenset({429, 500, 502, 503, 504})
# The prediction history keeps 7 days and pages of at most 100 (WaveSpeed's Predictions API docs,
# wavespeed.ai/docs/predictions-api).
HISTORY_RETENTION = timedelta(days=7)
HISTORY_MAX_PAGE_SIZE = 100

_MAX_ENVELOPE_BYTES = 4 * 1024 * 1024
_DOWNLOAD_CHUNK_BYTES = 64 * 1024
_MAX_SERVER_TEXT = 300
_CREDIT_WORDS = re.compile(r"insufficient|balance|credit", re.IGNORECASE)
# Defaults of WaveSpeedClient(); frozen, so one shared instance is safe.
_DEFAULT_RETRY = RetryPolicy()
_DEFAULT_TIMEOUTS = Timeouts()


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
    # opened. Anything else may have created (and billed) the task. A 429 is not retried here
    # either: it raises RateLimited, and the job runner's queue slows down and tries again later.
    if isinstance(outcome, _Reply):
        return False
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
        retry: RetryPolicy = _DEFAULT_RETRY,
        timeouts: Timeouts = _DEFAULT_TIMEOUTS,
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

    async def submit(self, body: dict[str, Any], *, webhook_url: str | None = None) -> Prediction:
        """Create a task (POST /api/v3/{model_id}); never retried once the server may have it.

        `webhook_url`: where WaveSpeed POSTs the signed final result (see bot.webhooks).
        """
        payload = json.dumps(body).encode()
        url = f"{self.base_url}/api/v3/{self.model_id}"
        if webhook_url is not None:
            # WaveSpeed's webhook guide (wavespeed.ai/docs/docs-api/webhooks) passes it as a
            # `webhook` query parameter; its submit-task page lists a `webhook_url` body field
            # instead. We follow the guide. Logs show only host and path (`_where`).
            url = str(URL(url).with_query(webhook=webhook_url))
        outcome = await self._call(
            "POST",
            url,
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

    async def webhook_secret(self) -> str:
        """The account's webhook signing key (GET /api/v3/webhook/secret), retried like a GET.

        WaveSpeed returns it with a `whsec_` prefix, which is not part of the HMAC key
        (wavespeed.ai/docs/docs-api/verifying_webhook); the key is returned without it. The
        answer's shape is undocumented: `data` may be the string itself or hold it as `secret`.
        The key never appears in a log line, an exception or a repr.
        """
        reply = await self._idempotent(
            "GET", f"{self.base_url}/api/v3/webhook/secret", self.timeouts.read_s
        )
        envelope = reply.envelope
        secret = envelope.get("data") if envelope is not None and 200 <= reply.code < 300 else None
        if not isinstance(secret, str):
            try:
                secret = self._data(reply).get("secret")
            except _Unreadable:
                secret = None
        key = secret.strip().removeprefix("whsec_") if isinstance(secret, str) else ""
        if not key:
            raise TransientError("WaveSpeed's webhook secret answer had no secret")
        return key

    async def history(self, page: int, page_size: int = HISTORY_MAX_PAGE_SIZE) -> list[Prediction]:
        """One page (from 1) of the account's tasks of the last 7 days, API and web ones alike,
        newest first (POST /api/v3/predictions).

        Reading it changes nothing, so it is retried like a GET. Meant for finding tasks, not for
        polling one (WaveSpeed's docs say so). An answer with an unreadable item raises
        TransientError rather than leaving the item out, so no task goes unseen.
        """
        payload = json.dumps({"page": page, "page_size": page_size}).encode()
        reply = await self._idempotent(
            "POST",
            f"{self.base_url}/api/v3/predictions",
            self.timeouts.read_s,
            lambda: payload,
            content_type="application/json",
        )
        try:
            return _history_items(self._data(reply))
        except _Unreadable:
            raise TransientError("WaveSpeed sent an unreadable history page") from None

    async def find_tasks(
        self,
        since: datetime,
        until: datetime,
        *,
        model: str | None = None,
        max_pages: int = 10,
    ) -> list[Prediction]:
        """The tasks of `model` (default: this client's) created within [since, until], newest
        first, read from the history.

        Used to learn whether a submit whose answer was lost created a task. Only a normal return
        proves that a task is absent: every error means "unknown". Pages are read until one holds
        a task created before `since` (the history is newest first) or is short; reaching
        `max_pages` first raises TransientError, and so does a task of `model` without a readable
        `created_at`. Widen the window by the possible clock difference with WaveSpeed. `since`
        must be aware and within the history's 7 days, else ValueError.
        """
        if since.tzinfo is None or until.tzinfo is None:
            raise ValueError("since and until must be timezone-aware")
        if since < datetime.now(UTC) - HISTORY_RETENTION:
            raise ValueError("the history keeps only 7 days: it cannot tell what existed before")
        wanted = self.model_id if model is None else model
        found: list[Prediction] = []
        for page in range(1, max_pages + 1):
            items = await self.history(page, HISTORY_MAX_PAGE_SIZE)
            found += _created_within(items, wanted, since, until)
            if len(items) < HISTORY_MAX_PAGE_SIZE or _reaches(items, since):
                return found
        raise TransientError(
            f"WaveSpeed's history: {max_pages} pages did not reach back to {since.isoformat()}"
        )

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

    async def download_to(self, url: str, path: Path, *, max_bytes: int) -> int:
        """Stream an output file into `path` (created or truncated) and return its size.

        Refuses more than `max_bytes` with TooLarge: from Content-Length before a byte of the
        body is read, else as soon as the body passes it. Retried like a GET, each attempt
        starting the file afresh; whenever this raises (TooLarge, WaveSpeedError, OSError from
        the disk, cancellation) no file is left at `path`. The key goes only to base_url.
        """
        headers = self._headers(url)
        limits = aiohttp.ClientTimeout(
            total=self.timeouts.download_s, sock_connect=self.timeouts.connect_s
        )
        try:
            attempt = 0
            while True:
                attempt += 1
                outcome = await self._download_attempt(url, headers, limits, path, max_bytes)
                if isinstance(outcome, int):
                    return outcome
                if not _retry_idempotent(outcome) or attempt >= self.retry.attempts:
                    break
                pause = self._pause(outcome, attempt)
                if pause is None:
                    break
                log.info(
                    "GET %s: %s; retry %d/%d in %.2f s",
                    _where(url),
                    f"HTTP {outcome.status}"
                    if isinstance(outcome, _Reply)
                    else type(outcome).__name__,
                    attempt,
                    self.retry.attempts - 1,
                    pause,
                )
                await asyncio.sleep(pause)
            reply = self._settled(outcome)
            raise WaveSpeedError(
                f"Could not download the video (HTTP {reply.status})",
                retryable=reply.status in RETRYABLE_HTTP,
                http_status=reply.status,
            )
        except BaseException:
            # A partial file must never pass for a video. Synchronous (one unlink, well under a
            # millisecond) so it happens even when the download is cancelled.
            path.unlink(missing_ok=True)  # noqa: ASYNC240
            raise

    async def _download_attempt(
        self,
        url: str,
        headers: dict[str, str],
        limits: aiohttp.ClientTimeout,
        path: Path,
        max_bytes: int,
    ) -> int | _Outcome:
        """One GET of a download: the size written, or the answer / transport error that stopped
        it (an answer other than 200 is not read: its body is no video)."""
        try:
            async with self._get_session().get(url, headers=headers, timeout=limits) as response:
                if response.status != 200:
                    return _Reply(response.status, response.headers, b"")
                return await _stream_to_file(response, path, max_bytes)
        except _TRANSPORT_ERRORS as error:
            return error

    async def wait_for_result(
        self,
        prediction_id: str,
        policy: PollPolicy,
        on_update: Callable[[Prediction], Awaitable[None]] | None = None,
        *,
        schedule: PollSchedule | None = None,
        pushed: asyncio.Future[Prediction | None] | None = None,
    ) -> Prediction:
        """Poll until the task is final; return it if completed, else raise TaskFailed.

        The pauses come from `schedule` (default: `policy`'s intervals); `pushed` is a result
        that may arrive meanwhile (a verified webhook): it ends the wait at once, in place of
        the next poll (None in it: "the result is in, poll now"). `on_update` is awaited after
        every result (compare `.status` to see a change). Transient poll failures are logged and
        polling goes on: the task keeps running at WaveSpeed regardless. Raises PollTimeout when
        `policy.timeout_s` runs out.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        plan = schedule or FixedSchedule(policy.intervals())
        last_status: str | None = None
        unknown: set[str] = set()
        while (remaining := started + policy.timeout_s - loop.time()) > 0:
            pause = min(plan.next_delay(loop.time() - started, last_status), remaining)
            if pushed is None:
                await asyncio.sleep(pause)
            else:
                await asyncio.wait({pushed}, timeout=pause)
            prediction: Prediction | None = None
            if pushed is not None and pushed.done():
                prediction = pushed.result()
                pushed = None  # taken: the schedule's pauses go on from here
            if prediction is None:
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
        *,
        content_type: str | None = None,
    ) -> _Reply:
        """A request that is safe to repeat: retried on 429/5xx/timeouts/connection errors."""
        outcome = await self._call(
            method,
            url,
            retry_if=_retry_idempotent,
            timeout_s=timeout_s,
            data=data,
            content_type=content_type,
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

    # --- health -------------------------------------------------------------------------------

    async def check_access(self) -> int:
        """The status of one authenticated GET of the account's balance: the envelope's code,
        else the HTTP status. One attempt, so a health check learns at once; raises
        TransientError when WaveSpeed cannot be reached. Its errors are not counted in /metrics
        (they would follow the scrapes, not the jobs)."""
        return (await self._get_balance(retry=False)).code

    async def balance(self) -> int:
        """The account's balance in micro-dollars, exactly (rounded down past the sixth
        decimal), retried like a GET. Raises the error the answer stands for (AuthError, ...),
        or WaveSpeedError when it carries no readable amount. Not counted in /metrics either:
        it is read on a timer, not for a job."""
        reply = await self._get_balance(retry=True)
        # a refusal raises the error it stands for; a success without data is left to
        # _balance_micro, which says what came
        with contextlib.suppress(_Unreadable):
            self._data(reply)
        return _balance_micro(reply.body, self._redact)

    async def _get_balance(self, *, retry: bool) -> _Reply:
        """GET /api/v3/balance (WaveSpeed's Balance API, wavespeed.ai/docs-common-api/balance),
        once or retried like any GET."""
        outcome = await self._call(
            "GET",
            f"{self.base_url}/api/v3/balance",
            retry_if=_retry_idempotent if retry else lambda _: False,
            timeout_s=self.timeouts.read_s,
        )
        return self._settled(outcome)


class _Unreadable(Exception):
    """A success answer without the data it should carry (the caller decides what that means)."""


def _balance_micro(body: bytes, redact: Callable[[str], str | None]) -> int:
    """The amount of a balance answer in micro-dollars: `data.balance`, as WaveSpeed's MCP
    server reads it (the Balance API page shows no example), a JSON number or a numeric
    string, in dollars. Read with exact decimals, never floats. Anything else raises
    WaveSpeedError naming what came (through `redact`: it is the server's text)."""
    try:
        envelope = json.loads(body, parse_float=Decimal)
    except ValueError:
        envelope = None
    data = envelope.get("data") if isinstance(envelope, dict) else None
    amount = data.get("balance") if isinstance(data, dict) else None
    try:
        if isinstance(amount, bool) or not isinstance(amount, int | Decimal | str):
            raise InvalidOperation
        dollars = Decimal(amount.strip() if isinstance(amount, str) else amount)
        if not dollars.is_finite():
            raise InvalidOperation
        micro = int((dollars * MICRO_PER_USD).to_integral_value(rounding=ROUND_FLOOR))
    except ArithmeticError:  # InvalidOperation, Overflow: not an amount
        shown = redact(repr(amount)[:40])
        raise WaveSpeedError(
            f"WaveSpeed's balance answer has no readable amount (data.balance = {shown})"
        ) from None
    return micro


def _history_items(data: dict[str, Any]) -> list[Prediction]:
    """The predictions of a history page's `data`; a null `items` is an empty page."""
    items = data.get("items")
    if items is None:
        return []
    if not isinstance(items, list):
        raise _Unreadable
    try:
        return [Prediction.model_validate(item) for item in items]
    except ValidationError:
        raise _Unreadable from None


def _created_within(
    items: list[Prediction], model: str, since: datetime, until: datetime
) -> list[Prediction]:
    """The items of `model` created within [since, until]; an undated one raises TransientError
    (it might be the task looked for)."""
    found = []
    for item in items:
        if item.model != model:
            continue
        created = item.created
        if created is None:
            raise TransientError(f"WaveSpeed's history: task {item.id} has no readable created_at")
        if since <= created <= until:
            found.append(item)
    return found


def _reaches(items: list[Prediction], since: datetime) -> bool:
    """Whether a page holds a task created before `since`: the history is newest first, so the
    following pages hold only older ones."""
    return any(item.created is not None and item.created < since for item in items)


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


async def _stream_to_file(response: aiohttp.ClientResponse, path: Path, max_bytes: int) -> int:
    """Write a body to `path` as it arrives, one chunk in memory at a time; raise TooLarge as
    soon as it exceeds `max_bytes` (before opening the file if Content-Length says so)."""
    if response.content_length is not None and response.content_length > max_bytes:
        raise TooLarge(response.content_length, max_bytes)
    size = 0
    # Plain writes on the loop: a 64 KiB write() lands in the page cache in microseconds, far
    # cheaper than a hop to a thread per chunk (bench/bench_delivery.py measures the lag).
    with path.open("wb") as file:
        async for chunk in response.content.iter_chunked(_DOWNLOAD_CHUNK_BYTES):
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge(size, max_bytes)
            file.write(chunk)
    return size


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


# --- metrics: WaveSpeed errors by kind ----------------------------------------------------------
# Every public call counts the WaveSpeedErrors it raises, by class (bot.metrics). The methods are
# wrapped here, in one place, so that no method, nor one added later, has to remember to.
_UNCOUNTED = frozenset({"close", "check_access", "balance"})


def _counting_errors(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @wraps(method)
    async def counted(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except WaveSpeedError as error:
            count_wavespeed_error(error)  # once, even when it passes through two counted calls
            raise

    return counted


for _name, _method in list(vars(WaveSpeedClient).items()):
    if _name[0] != "_" and _name not in _UNCOUNTED and inspect.iscoroutinefunction(_method):
        setattr(WaveSpeedClient, _name, _counting_errors(_method))
