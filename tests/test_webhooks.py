"""Signed WaveSpeed webhooks: the verifier, the server on a real socket, the fake's deliveries,
and jobs finished by a webhook long before their first poll.

Everything runs on loopback against the fake WaveSpeed API; nothing of wanbot's own is mocked.
Deliveries are signed three ways: by the fake (as WaveSpeed would), by `headers_for` below (an
independent HMAC, for crafted ones), and checked by bot.webhooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from bot.app import WanBot
from bot.config import ConfigError, load_settings
from bot.domain.budget import BudgetPeriod, BudgetPolicy
from bot.domain.job import JobOwner, JobRecord
from bot.domain.lifecycle import JobState
from bot.domain.outcomes import JobFailure
from bot.domain.request import GenerationRequest
from bot.runner import JobRunner, Posted, Progress, Reconciliation, Video
from bot.services import Tuning
from bot.testing.fake_wavespeed import FakeWaveSpeed
from bot.wavespeed import PollPolicy, Prediction, WaveSpeedClient
from bot.webhooks import Refused, WebhookServer, WebhookVerifier
from storage import open_storage
from storage.base import Storage
from tests.conftest import FAST_RETRY, FAST_TIMEOUTS, TEST_API_KEY
from tests.discord_world import CHANNEL, make_world
from tests.fakes.discord_server import running_bot

SECRET = "Zm9vYmFyLXdlYmhvb2stc2VjcmV0LTEyMw=="  # the key: a whsec_ secret without its prefix
NOW = 1_758_798_328
RESULT = {
    "id": "pred-1",
    "model": "alibaba/wan-2.6/image-to-video-flash",
    "outputs": ["https://cdn.example/out.mp4"],
    "status": "completed",
}
BODY = json.dumps(RESULT).encode()
PATH = "/wavespeed/webhook"
# The first poll only after a minute (with webhooks the runner polls as a backstop only, every
# ~30 s): a job that ends within seconds was ended by its webhook.
SLOW_POLL = PollPolicy(first_delay_s=60.0, factor=1.0, max_interval_s=60.0, timeout_s=600.0)
POLICY = BudgetPolicy(
    member_allowance=5_000_000, server_allowance=50_000_000, period=BudgetPeriod.DAY
)
REQUEST = GenerationRequest(
    image="https://cdn.example/cat.png", prompt="the cat waves", enable_audio=False
)


def headers_for(
    webhook_id: str = "wh_1", timestamp: int = NOW, body: bytes = BODY, secret: str = SECRET
) -> dict[str, str]:
    """A delivery's headers, signed the way WaveSpeed's docs describe."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), content, hashlib.sha256).hexdigest()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v3,{digest}",
    }


def refused(verifier: WebhookVerifier, headers: dict[str, str], body: bytes = BODY) -> Refused:
    with pytest.raises(Refused) as caught:
        verifier.verify(headers, body, NOW)
    return caught.value


# --- the verifier -------------------------------------------------------------------------------


def test_a_genuine_delivery_gives_the_prediction() -> None:
    verified = WebhookVerifier(SECRET).verify(headers_for(), BODY, NOW)
    assert verified.webhook_id == "wh_1"
    assert verified.prediction.id == "pred-1" and verified.prediction.is_completed
    assert verified.prediction.outputs == ["https://cdn.example/out.mp4"]


def test_header_names_are_case_insensitive_and_an_envelope_is_unwrapped() -> None:
    body = json.dumps({"code": 200, "message": "success", "data": RESULT}).encode()
    headers = {name.upper(): value for name, value in headers_for(body=body).items()}
    assert WebhookVerifier(SECRET).verify(headers, body, NOW).prediction.id == "pred-1"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_an_unsigned_delivery_is_refused(missing: str) -> None:
    headers = headers_for()
    del headers[missing]
    refusal = refused(WebhookVerifier(SECRET), headers)
    assert refusal.status == 401 and "unsigned" in refusal.reason


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (headers_for(secret="another-secret"), BODY),  # signed by someone else
        (headers_for(), BODY.replace(b"completed", b"failed")),  # tampered with
        (headers_for(webhook_id="wh_2") | {"webhook-id": "wh_1"}, BODY),  # id swapped
        (headers_for(timestamp=NOW - 1) | {"webhook-timestamp": str(NOW)}, BODY),  # time moved
        ({**headers_for(), "webhook-signature": "v3,not-hex"}, BODY),
        ({**headers_for(), "webhook-signature": "v3,"}, BODY),
    ],
)
def test_a_bad_signature_is_refused(headers: dict[str, str], body: bytes) -> None:
    refusal = refused(WebhookVerifier(SECRET), headers, body)
    assert refusal.status == 401 and "forged" in refusal.reason and refusal.bad_signature


def test_another_signature_version_does_not_count() -> None:
    digest = headers_for()["webhook-signature"].removeprefix("v3,")
    refusal = refused(
        WebhookVerifier(SECRET), {**headers_for(), "webhook-signature": f"v1,{digest}"}
    )
    assert refusal.status == 401 and refusal.bad_signature


def test_any_of_several_signatures_may_match() -> None:
    good = headers_for()["webhook-signature"]
    other = headers_for(secret="old-secret")["webhook-signature"]
    for header in (f"{other} {good}", f"{good} {other}", f"v1,abc  {good}"):
        verifier = WebhookVerifier(SECRET)
        assert verifier.verify({**headers_for(), "webhook-signature": header}, BODY, NOW)


@pytest.mark.parametrize(
    ("offset", "word"), [(-301, "stale"), (301, "future"), (-(10**6), "stale")]
)
def test_a_delivery_outside_five_minutes_is_refused(offset: int, word: str) -> None:
    refusal = refused(WebhookVerifier(SECRET), headers_for(timestamp=NOW + offset))
    assert refusal.status == 401 and word in refusal.reason


@pytest.mark.parametrize("offset", [-300, 300])
def test_five_minutes_either_side_is_still_accepted(offset: int) -> None:
    assert WebhookVerifier(SECRET).verify(headers_for(timestamp=NOW + offset), BODY, NOW)


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ({**headers_for(), "webhook-timestamp": "yesterday"}, BODY, "unix seconds"),
        ({**headers_for(), "webhook-timestamp": "-5"}, BODY, "unix seconds"),
        (headers_for(body=b"not json"), b"not json", "not JSON"),
        (headers_for(body=b"[1, 2]"), b"[1, 2]", "not a JSON object"),
        (headers_for(body=b'{"status": "completed"}'), b'{"status": "completed"}', "result"),
    ],
)
def test_a_malformed_delivery_is_refused(headers: dict[str, str], body: bytes, reason: str) -> None:
    refusal = refused(WebhookVerifier(SECRET), headers, body)
    assert refusal.status == 400 and reason in refusal.reason


def test_a_replay_is_refused() -> None:
    verifier = WebhookVerifier(SECRET)
    verifier.verify(headers_for(), BODY, NOW)
    refusal = refused(verifier, headers_for())
    assert refusal.status == 400 and "replayed" in refusal.reason
    # the same id signed again later (a redelivery by id) is a replay too
    with pytest.raises(Refused, match="replayed"):
        verifier.verify(headers_for(timestamp=NOW + 60), BODY, NOW + 60)


def test_a_forgery_reusing_a_genuine_id_does_not_block_the_genuine_delivery() -> None:
    verifier = WebhookVerifier(SECRET)
    forged = headers_for(secret="attacker")  # same id "wh_1", not our secret
    assert refused(verifier, forged).status == 401
    assert verifier.remembered == 0
    assert verifier.verify(headers_for(), BODY, NOW).prediction.id == "pred-1"


def test_the_replay_memory_forgets_ids_after_the_window() -> None:
    verifier = WebhookVerifier(SECRET)
    for n in range(50):
        verifier.verify(headers_for(webhook_id=f"wh_{n}"), BODY, NOW)
    assert verifier.remembered == 50
    later = NOW + 301
    verifier.verify(headers_for(webhook_id="wh_late", timestamp=later), BODY, later)
    assert verifier.remembered == 1
    # the forgotten deliveries are refused anyway: as stale
    with pytest.raises(Refused, match="stale"):
        verifier.verify(headers_for(webhook_id="wh_0"), BODY, later)


def test_forget_lets_a_redelivery_in() -> None:
    verifier = WebhookVerifier(SECRET)
    verifier.verify(headers_for(), BODY, NOW)
    verifier.forget("wh_1")
    assert verifier.verify(headers_for(timestamp=NOW + 5), BODY, NOW + 5)


def test_a_rotated_secret_verifies_once_set() -> None:
    verifier = WebhookVerifier("old-secret")
    assert refused(verifier, headers_for()).bad_signature
    verifier.secret = SECRET
    assert verifier.verify(headers_for(), BODY, NOW)


def test_without_a_secret_nothing_verifies() -> None:
    refusal = refused(WebhookVerifier(""), headers_for(secret=""))
    assert refusal.status == 401 and refusal.bad_signature


def test_the_secret_never_shows() -> None:
    verifier = WebhookVerifier(SECRET)
    refusal = refused(verifier, headers_for(secret="x"))
    assert SECRET not in repr(verifier) and SECRET not in str(refusal)


# --- settings -----------------------------------------------------------------------------------


def test_webhook_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("WEBHOOK_PUBLIC_URL", "WEBHOOK_LISTEN"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(
        webhook_public_url="https://bot.example.com/wavespeed/webhook",
        webhook_listen="0.0.0.0:8080",
    )
    assert settings.webhook_public_url == "https://bot.example.com/wavespeed/webhook"
    unset = load_settings(webhook_public_url="", webhook_listen=" ")
    assert unset.webhook_public_url is None and unset.webhook_listen is None
    assert load_settings(webhook_public_url="http://127.0.0.1:9/x", webhook_listen="[::1]:9")


@pytest.mark.parametrize(
    ("url", "listen", "message"),
    [
        (
            "http://bot.example.com/hook",
            "127.0.0.1:8080",
            r"^WEBHOOK_PUBLIC_URL is invalid: .*https",
        ),
        ("bot.example.com/hook", "127.0.0.1:8080", r"^WEBHOOK_PUBLIC_URL is invalid"),
        ("https:///hook", "127.0.0.1:8080", r"^WEBHOOK_PUBLIC_URL is invalid"),
        ("https://bot.example.com/hook", "8080", r"^WEBHOOK_LISTEN is invalid: must be host:port"),
        ("https://bot.example.com/hook", "host:99999", r"^WEBHOOK_LISTEN is invalid"),
        ("https://bot.example.com/hook", "", r"WEBHOOK_PUBLIC_URL and WEBHOOK_LISTEN"),
        ("", "127.0.0.1:8080", r"WEBHOOK_PUBLIC_URL and WEBHOOK_LISTEN"),
    ],
)
def test_bad_webhook_settings_are_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, listen: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(webhook_public_url=url, webhook_listen=listen)
    assert "\n" not in str(caught.value)


# --- the client and the fake --------------------------------------------------------------------


async def test_the_client_fetches_the_secret_without_its_prefix(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    fake_wavespeed.fail_next("webhook-secret", 503)  # retried like any GET
    secret = await wavespeed_client.webhook_secret()
    assert fake_wavespeed.webhook_secret == f"whsec_{secret}"
    assert len(fake_wavespeed.calls("webhook-secret")) == 2
    assert secret not in repr(wavespeed_client)


async def test_submit_sends_the_webhook_as_a_query_parameter(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    fake_wavespeed.send_webhooks = False
    url = "https://bot.example.com/wavespeed/webhook?shard=1&x=a b"
    prediction = await wavespeed_client.submit(REQUEST.to_api_body(), webhook_url=url)
    assert fake_wavespeed.tasks[prediction.id].webhook == url
    plain = await wavespeed_client.submit(REQUEST.to_api_body())
    assert fake_wavespeed.tasks[plain.id].webhook is None


# --- the server on a real socket ----------------------------------------------------------------


class Results:
    """An on_result callback that records what arrived; `fail` makes the next calls raise."""

    def __init__(self) -> None:
        self.arrived: list[Prediction] = []
        self.fail = 0

    async def __call__(self, prediction: Prediction) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("the runner could not take it")
        self.arrived.append(prediction)

    async def wait(self, count: int = 1, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.arrived) < count:
                await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def webhook_server(
    client: WaveSpeedClient,
    on_result: Callable[[Prediction], Awaitable[None]],
    **options: float,
) -> AsyncIterator[WebhookServer]:
    server = WebhookServer(
        client.webhook_secret, on_result, host="127.0.0.1", port=0, path=PATH, **options
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def results() -> Results:
    return Results()


@pytest.fixture
async def server(
    wavespeed_client: WaveSpeedClient, results: Results
) -> AsyncIterator[WebhookServer]:
    async with webhook_server(wavespeed_client, results) as server:
        yield server


async def post(
    url: str, body: bytes, headers: dict[str, str], method: str = "POST"
) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=body, headers=headers) as response,
    ):
        return response.status, await response.text()


async def wait_for_attempts(fake: FakeWaveSpeed, count: int, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while len(fake.webhook_attempts) < count:
            await asyncio.sleep(0.01)


async def test_the_fake_delivers_a_signed_result_the_server_takes(
    fake_wavespeed: FakeWaveSpeed,
    wavespeed_client: WaveSpeedClient,
    server: WebhookServer,
    results: Results,
) -> None:
    fake_wavespeed.next_task("failed", error_code=1200)
    failed = await wavespeed_client.submit(REQUEST.to_api_body(), webhook_url=server.url)
    done = await wavespeed_client.submit(REQUEST.to_api_body(), webhook_url=server.url)
    await results.wait(2)
    by_id = {prediction.id: prediction for prediction in results.arrived}
    assert by_id[done.id].is_completed and by_id[done.id].outputs
    assert by_id[failed.id].status == "failed" and by_id[failed.id].error_code == 1200
    # the fake logs an attempt once it has the answer, which comes after the server's callback
    await wait_for_attempts(fake_wavespeed, 2)
    assert [(a.url, a.status) for a in fake_wavespeed.webhook_attempts] == [(server.url, 200)] * 2


@pytest.mark.parametrize(
    ("craft", "status"),
    [
        ("unsigned", 401),
        ("forged", 401),
        ("stale", 401),
        ("future", 401),
        ("replayed", 400),
        ("not json", 400),
        ("wrong path", 404),
        ("GET", 405),
        ("too large", 413),
    ],
)
async def test_refused_deliveries_are_4xx_logged_and_change_nothing(
    fake_wavespeed: FakeWaveSpeed,
    server: WebhookServer,
    results: Results,
    caplog: pytest.LogCaptureFixture,
    craft: str,
    status: int,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.webhooks")
    body = json.dumps({**RESULT, "status": "failed", "error": "1200: flagged"}).encode()
    now = int(time.time())
    headers = fake_wavespeed.sign(body, "wh_attack", now)
    url, method = server.url, "POST"
    if craft == "unsigned":
        headers = {"Content-Type": "application/json"}
    elif craft == "forged":
        headers = headers_for("wh_attack", now, body, secret="guessed")
    elif craft == "stale":
        headers = fake_wavespeed.sign(body, "wh_attack", now - 301)
    elif craft == "future":
        headers = fake_wavespeed.sign(body, "wh_attack", now + 301)
    elif craft == "replayed":
        assert (await post(url, body, headers))[0] == 200  # the genuine one
        results.arrived.clear()
    elif craft == "not json":
        body = b"<xml/>"
        headers = fake_wavespeed.sign(body, "wh_attack", now)
    elif craft == "wrong path":
        url = url.replace(PATH, "/admin")
    elif craft == "GET":
        method = "GET"
    elif craft == "too large":
        body = b"{" + b" " * (1024 * 1024) + b"}"
        headers = fake_wavespeed.sign(body, "wh_attack", now)
    caplog.clear()
    answer, text = await post(url, body, headers, method)
    assert answer == status
    assert results.arrived == []
    [record] = [r for r in caplog.records if r.name == "bot.webhooks"]
    assert record.levelno == logging.WARNING and "refused" in record.getMessage()
    secret = fake_wavespeed.webhook_secret.removeprefix("whsec_")
    assert secret not in caplog.text and secret not in text
    assert "flagged" not in caplog.text  # no body dump


async def test_a_forgery_reusing_a_genuine_id_does_not_block_it_on_the_wire(
    fake_wavespeed: FakeWaveSpeed, server: WebhookServer, results: Results
) -> None:
    now = int(time.time())
    forged = headers_for("wh_shared", now, BODY, secret="guessed")
    assert (await post(server.url, BODY, forged))[0] == 401
    assert (await post(server.url, BODY, fake_wavespeed.sign(BODY, "wh_shared", now)))[0] == 200
    assert [p.id for p in results.arrived] == ["pred-1"]


async def test_a_rotated_secret_is_fetched_again_at_most_once_a_minute(
    fake_wavespeed: FakeWaveSpeed, server: WebhookServer, results: Results
) -> None:
    assert len(fake_wavespeed.calls("webhook-secret")) == 1  # at start
    fake_wavespeed.rotate_webhook_secret()
    now = int(time.time())
    status, _ = await post(server.url, BODY, fake_wavespeed.sign(BODY, "wh_new", now))
    assert status == 200 and len(results.arrived) == 1
    assert len(fake_wavespeed.calls("webhook-secret")) == 2
    for n in range(5):  # forgeries do not make it ask WaveSpeed again within the minute
        forged = headers_for(f"wh_forged_{n}", now, BODY, secret="guessed")
        assert (await post(server.url, BODY, forged))[0] == 401
    assert len(fake_wavespeed.calls("webhook-secret")) == 2


async def test_without_the_secret_at_start_deliveries_wait_for_a_later_fetch(
    fake_wavespeed: FakeWaveSpeed,
    wavespeed_client: WaveSpeedClient,
    results: Results,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_wavespeed.fail_next("webhook-secret", 503, times=None)
    async with webhook_server(wavespeed_client, results, refresh_every_s=0.2) as server:
        assert "could not be fetched" in caplog.text
        headers = fake_wavespeed.sign(BODY, "wh_1", int(time.time()))
        assert (await post(server.url, BODY, headers))[0] == 401
        fake_wavespeed.clear_faults()
        await asyncio.sleep(0.25)
        assert (await post(server.url, BODY, headers))[0] == 200
    assert len(results.arrived) == 1


async def test_a_failing_callback_answers_500_then_the_redelivery_is_taken(
    wavespeed_client: WaveSpeedClient, results: Results, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        FakeWaveSpeed(
            api_key=TEST_API_KEY, processing_s=0.05, webhook_retry_delays_s=(0.05, 0.05)
        ) as fake,
        WaveSpeedClient(TEST_API_KEY, fake.base_url, retry=FAST_RETRY) as client,
        webhook_server(client, results) as server,
    ):
        results.fail = 1
        prediction = await client.submit(REQUEST.to_api_body(), webhook_url=server.url)
        await results.wait()
        await wait_for_attempts(fake, 2)  # logged once answered, after the callback
        assert [a.status for a in fake.webhook_attempts] == [500, 200]
        assert len({a.webhook_id for a in fake.webhook_attempts}) == 1  # one delivery, retried
        assert [p.id for p in results.arrived] == [prediction.id]
        assert "could not be handled" in caplog.text


async def test_a_callback_that_keeps_failing_is_left_to_polling(
    results: Results, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        FakeWaveSpeed(
            api_key=TEST_API_KEY, processing_s=0.05, webhook_retry_delays_s=(0.05,) * 5
        ) as fake,
        WaveSpeedClient(TEST_API_KEY, fake.base_url, retry=FAST_RETRY) as client,
        webhook_server(client, results) as server,
    ):
        results.fail = 100
        await client.submit(REQUEST.to_api_body(), webhook_url=server.url)
        await wait_for_attempts(fake, 3)
        await asyncio.sleep(0.2)  # no further attempt: the third answer was a 2xx
        assert [a.status for a in fake.webhook_attempts] == [500, 500, 200]
        assert "left to polling" in caplog.text


async def test_the_fake_can_delay_or_drop_a_webhook(
    fake_wavespeed: FakeWaveSpeed,
    wavespeed_client: WaveSpeedClient,
    server: WebhookServer,
    results: Results,
) -> None:
    fake_wavespeed.drop_next_webhook()
    fake_wavespeed.delay_next_webhook(0.5)
    dropped = await wavespeed_client.submit(REQUEST.to_api_body(), webhook_url=server.url)
    delayed = await wavespeed_client.submit(REQUEST.to_api_body(), webhook_url=server.url)
    await asyncio.sleep(0.45)  # both tasks have ended (~0.2 s), no webhook yet
    assert fake_wavespeed.tasks[delayed.id].status == "completed"
    assert fake_wavespeed.webhook_attempts == []
    await results.wait()
    await wait_for_attempts(fake_wavespeed, 1)
    await asyncio.sleep(0.2)  # and nothing more comes
    assert [p.id for p in results.arrived] == [delayed.id]
    assert [a.task_id for a in fake_wavespeed.webhook_attempts] == [delayed.id]
    assert dropped.id not in {a.task_id for a in fake_wavespeed.webhook_attempts}


# --- jobs finished by their webhook -------------------------------------------------------------


class Watcher:
    """A Delivery that records how each job ended."""

    def __init__(self) -> None:
        self.videos: list[int] = []
        self.failures: list[JobFailure] = []

    async def progress(self, job: JobRecord, progress: Progress) -> None:
        return None

    async def post_video(self, job: JobRecord, video: Video) -> Posted:
        self.videos.append(job.id)
        return Posted(CHANNEL, 1)

    async def find_post(self, job: JobRecord) -> Posted | None:
        return None

    async def delivered(self, job: JobRecord, video: Video) -> None:
        return None

    async def failed(self, job: JobRecord, failure: JobFailure) -> None:
        self.failures.append(failure)

    async def undecided(self, job: JobRecord, candidate_ids: list[str]) -> None:
        return None


@contextlib.asynccontextmanager
async def runner_with_webhooks(
    fake: FakeWaveSpeed, tmp_path: Path, *, backstop_poll_s: float = 30.0
) -> AsyncIterator[tuple[JobRunner, Storage, WebhookServer]]:
    """A JobRunner that polls slowly, its store, and a webhook server feeding it."""
    storage = await open_storage(str(tmp_path / "wanbot.db"), POLICY)
    client = WaveSpeedClient(TEST_API_KEY, fake.base_url, retry=FAST_RETRY, timeouts=FAST_TIMEOUTS)
    runner: JobRunner | None = None

    async def on_result(prediction: Prediction) -> None:
        assert runner is not None
        await runner.result_arrived(prediction)

    server = WebhookServer(client.webhook_secret, on_result, host="127.0.0.1", port=0, path=PATH)
    await server.start()
    runner = JobRunner(
        storage,
        client,
        poll=SLOW_POLL,
        max_jobs_per_member=3,
        reconciliation=Reconciliation(check_every_s=0.05),
        download_pause_s=0.01,
        webhook_url=server.url,
        backstop_poll_s=backstop_poll_s,
    )
    try:
        yield runner, storage, server
    finally:
        await server.stop()
        await runner.close()
        await client.close()
        await storage.close()


async def test_a_job_is_finished_by_its_webhook_long_before_the_first_poll(
    fake_wavespeed: FakeWaveSpeed, tmp_path: Path
) -> None:
    async with runner_with_webhooks(fake_wavespeed, tmp_path) as (runner, storage, server):
        watcher = Watcher()
        loop = asyncio.get_running_loop()
        started = loop.time()
        job = await runner.reserve(JobOwner(1, CHANNEL, 3), REQUEST)
        runner.run(job, watcher)
        async with asyncio.timeout(10):
            await runner.wait(job.id)
        took = loop.time() - started
        finished = await storage.get_job(job.id)
        assert finished is not None and finished.state is JobState.DELIVERED
        assert watcher.videos == [job.id]
        assert took < 3.0, took  # the task takes ~0.2 s; the first poll comes after ~30 s
        await wait_for_attempts(fake_wavespeed, 1)
        [attempt] = fake_wavespeed.webhook_attempts
        assert (attempt.url, attempt.status) == (server.url, 200)


async def test_a_webhook_that_never_comes_is_made_up_for_by_the_backstop_poll(
    fake_wavespeed: FakeWaveSpeed, tmp_path: Path
) -> None:
    fake_wavespeed.drop_next_webhook()
    async with runner_with_webhooks(fake_wavespeed, tmp_path, backstop_poll_s=0.5) as (
        runner,
        storage,
        _,
    ):
        watcher = Watcher()
        job = await runner.reserve(JobOwner(1, CHANNEL, 3), REQUEST)
        runner.run(job, watcher)
        async with asyncio.timeout(5):
            await runner.wait(job.id)
        finished = await storage.get_job(job.id)
        assert finished is not None and finished.state is JobState.DELIVERED
        assert watcher.videos == [job.id]
        assert fake_wavespeed.calls("result")  # found by polling, the webhook never sent


async def test_a_failed_task_is_refunded_by_its_webhook(
    fake_wavespeed: FakeWaveSpeed, tmp_path: Path
) -> None:
    fake_wavespeed.next_task("failed", error_code=1200)
    async with runner_with_webhooks(fake_wavespeed, tmp_path) as (runner, storage, _):
        watcher = Watcher()
        job = await runner.reserve(JobOwner(1, CHANNEL, 3), REQUEST)
        runner.run(job, watcher)
        async with asyncio.timeout(3):
            await runner.wait(job.id)
        finished = await storage.get_job(job.id)
        assert finished is not None and finished.settlement == "refund"
        assert watcher.videos == [] and len(watcher.failures) == 1


async def test_a_forged_failure_changes_nothing_and_the_genuine_result_wins(
    fake_wavespeed: FakeWaveSpeed, tmp_path: Path
) -> None:
    fake_wavespeed.next_task(processing_s=0.5)
    async with runner_with_webhooks(fake_wavespeed, tmp_path) as (runner, storage, server):
        watcher = Watcher()
        job = await runner.reserve(JobOwner(1, CHANNEL, 3), REQUEST)
        runner.run(job, watcher)
        async with asyncio.timeout(3):
            while not fake_wavespeed.tasks:
                await asyncio.sleep(0.01)
        [task_id] = fake_wavespeed.tasks
        fake_body = json.dumps({**RESULT, "id": task_id, "status": "failed"}).encode()
        forged = headers_for("wh_forged", int(time.time()), fake_body, secret="guessed")
        assert (await post(server.url, fake_body, forged))[0] == 401
        async with asyncio.timeout(3):
            await runner.wait(job.id)
        finished = await storage.get_job(job.id)
        assert finished is not None and finished.state is JobState.DELIVERED
        assert watcher.failures == []


# --- the real bot ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_bot_posts_a_video_finished_by_webhook(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}{PATH}"
    async with make_world(
        tmp_path, webhook_public_url=url, webhook_listen=f"127.0.0.1:{port}"
    ) as world:
        tuning = Tuning(
            poll=SLOW_POLL,
            retry=FAST_RETRY,
            timeouts=FAST_TIMEOUTS,
            reconcile_every_s=0.1,
            download_pause_s=0.05,
        )
        async with running_bot(world.discord, lambda: WanBot(world.settings, tuning)) as bot:
            assert bot.services.webhooks is not None
            loop = asyncio.get_running_loop()
            started = loop.time()
            await world.video("the cat turns its head")
            message = await world.discord.wait_for_message(
                lambda m: any(a.filename.endswith(".mp4") for a in m.attachments), timeout=10
            )
            assert message.channel_id == CHANNEL
            assert loop.time() - started < 5.0  # the first poll comes after ~30 s
            await wait_for_attempts(world.wavespeed, 1)
            assert [a.status for a in world.wavespeed.webhook_attempts] == [200]
            assert world.wavespeed.calls("webhook-secret")
