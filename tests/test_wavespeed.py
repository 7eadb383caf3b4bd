"""WaveSpeedClient against the fake API over real loopback HTTP."""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime, timedelta
from itertools import islice

import pytest

from bot.testing.fake_wavespeed import FakeWaveSpeed, sample_video
from bot.wavespeed import (
    MODEL_ID,
    AuthError,
    OutOfCredit,
    PollPolicy,
    PollTimeout,
    Prediction,
    RateLimited,
    RejectedInput,
    RetryPolicy,
    SubmitUncertain,
    TaskFailed,
    Timeouts,
    TooLarge,
    TransientError,
    WaveSpeedClient,
    WaveSpeedError,
    parse_retry_after,
    parse_task_code,
    parse_timestamp,
)
from tests.conftest import FAST_RETRY, FAST_TIMEOUTS, TEST_API_KEY
from tests.test_video_download import downloaded

BODY = {"image": "https://cdn.example/cat.png", "prompt": "the cat waves", "duration": 5}


def envelope(data: dict[str, object]) -> dict[str, object]:
    return {"code": 200, "message": "success", "data": data}


def client_for(fake: FakeWaveSpeed, key: str = TEST_API_KEY, **options: object) -> WaveSpeedClient:
    settings: dict[str, object] = {"retry": FAST_RETRY, "timeouts": FAST_TIMEOUTS, **options}
    return WaveSpeedClient(key, fake.base_url, **settings)  # type: ignore[arg-type]


# --- happy paths --------------------------------------------------------------------------------


async def test_submit_wait_download(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient, fast_poll: PollPolicy
) -> None:
    seen: list[str] = []

    async def on_update(prediction: Prediction) -> None:
        seen.append(prediction.status)

    submitted = await wavespeed_client.submit(BODY)
    assert submitted.status == "created" and submitted.outputs == []
    result = await wavespeed_client.wait_for_result(submitted.id, fast_poll, on_update)

    assert result.is_completed and result.is_final and not result.nsfw
    assert result.inference_ms is not None and result.inference_ms >= 100
    assert seen[-1] == "completed" and "processing" in seen
    video = await downloaded(wavespeed_client, result.outputs[0], max_bytes=1_000_000)
    assert video[4:8] == b"ftyp" and video == sample_video()
    assert fake_wavespeed.submissions == [BODY]
    assert {r.client_name for r in fake_wavespeed.requests} == {"wanbot"}


async def test_upload_is_served_back_identical(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    data = bytes(range(256)) * 40
    url = await wavespeed_client.upload(data, "cat.png", "image/png")
    assert url.startswith(f"{fake_wavespeed.base_url}/media/")
    assert await downloaded(wavespeed_client, url, max_bytes=len(data)) == data
    [upload] = fake_wavespeed.uploads.values()
    assert upload.content_type == "image/png"


async def test_upload_retries_a_transient_error(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    fake_wavespeed.fail_next("upload", 503)
    await wavespeed_client.upload(b"x", "a.png", "image/png")
    assert len(fake_wavespeed.calls("upload")) == 2


async def test_key_is_not_sent_to_other_hosts(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    async with FakeWaveSpeed() as cdn, client_for(cdn, key="cdn-key") as cdn_client:
        url = await cdn_client.upload(b"video bytes", "out.mp4", "video/mp4")
        assert await downloaded(wavespeed_client, url, max_bytes=100) == b"video bytes"
        [fetch] = cdn.calls("media")
    assert not fetch.has_auth
    assert all(r.has_auth for r in fake_wavespeed.requests)


async def test_download_refuses_more_than_max_bytes(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient, fast_poll: PollPolicy
) -> None:
    prediction = await wavespeed_client.submit(BODY)
    result = await wavespeed_client.wait_for_result(prediction.id, fast_poll)
    with pytest.raises(TooLarge):
        await downloaded(wavespeed_client, result.outputs[0], max_bytes=1000)


async def test_prediction_tolerates_nulls_and_extra_fields(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    data = {"id": "p1", "status": "completed", "outputs": None, "urls": None, "model": None}
    data |= {"has_nsfw_contents": None, "error": None, "timings": None, "brand_new_field": 1}
    fake_wavespeed.fail_next("result", 200, body=envelope(data))
    prediction = await wavespeed_client.get_result("p1")
    assert prediction.outputs == [] and prediction.urls == {} and prediction.model == ""
    assert not prediction.nsfw and prediction.inference_ms is None
    assert prediction.error_code is None


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"error": "1200: Content flagged by moderation"}, 1200),
        ({"error": "Task failed (error code: 5004)"}, 5004),
        ({"error": "could not download the image, 1402"}, 1402),
        ({"error": "resolution 1080p unavailable"}, None),
        ({"error": "", "code": 1403}, 1403),
        ({"error": "moderation", "error_code": "1200"}, 1200),
        ({"error": "1401 invalid", "code": 200}, 1401),
    ],
)
def test_task_error_code_is_found(data: dict[str, object], code: int | None) -> None:
    prediction = Prediction.model_validate({"id": "p", "status": "failed", **data})
    assert prediction.error_code == code


def test_parse_task_code_of_nothing() -> None:
    assert parse_task_code(None) is None and parse_task_code("") is None


# --- errors -------------------------------------------------------------------------------------


async def test_bad_key_is_an_auth_error(fake_wavespeed: FakeWaveSpeed) -> None:
    async with client_for(fake_wavespeed, key="wrong-key") as client:
        with pytest.raises(AuthError, match="rejected the API key") as caught:
            await client.submit(BODY)
        with pytest.raises(AuthError):
            await client.get_result("anything")
    assert not caught.value.retryable
    assert fake_wavespeed.tasks == {}


async def test_rejected_input_carries_the_api_message(wavespeed_client: WaveSpeedClient) -> None:
    with pytest.raises(RejectedInput, match="duration") as caught:
        await wavespeed_client.submit({**BODY, "duration": 20})
    assert caught.value.code == 400 and not caught.value.retryable


async def test_out_of_credit(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    fake_wavespeed.out_of_credit = True
    with pytest.raises(OutOfCredit, match="out of credit"):
        await wavespeed_client.submit(BODY)
    assert fake_wavespeed.tasks == {}


async def test_out_of_credit_told_in_a_400_message(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    fake_wavespeed.fail_next("submit", 400, body={"code": 400, "message": "Insufficient credits"})
    with pytest.raises(OutOfCredit):
        await wavespeed_client.submit(BODY)


# --- retries of GETs ----------------------------------------------------------------------------


async def test_retry_after_is_honoured(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    prediction = await wavespeed_client.submit(BODY)
    fake_wavespeed.fail_next("result", 429, retry_after=1)
    await wavespeed_client.get_result(prediction.id)
    first, second = fake_wavespeed.calls("result")
    assert second.at - first.at >= 0.99


async def test_429_without_retry_after_backs_off_then_succeeds(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    prediction = await wavespeed_client.submit(BODY)
    fake_wavespeed.fail_next("result", 429, times=2)
    assert (await wavespeed_client.get_result(prediction.id)).id == prediction.id
    assert len(fake_wavespeed.calls("result")) == 3


async def test_429_forever_is_rate_limited(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    fake_wavespeed.fail_next("result", 429, times=None)
    with pytest.raises(RateLimited) as caught:
        await wavespeed_client.get_result("p")
    assert caught.value.retryable and caught.value.retry_after is None
    assert len(fake_wavespeed.calls("result")) == FAST_RETRY.attempts


async def test_too_long_retry_after_gives_up_at_once(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    fake_wavespeed.fail_next("result", 429, retry_after=3600)
    with pytest.raises(RateLimited) as caught:
        await wavespeed_client.get_result("p")
    assert caught.value.retry_after == 3600
    assert len(fake_wavespeed.calls("result")) == 1


def test_retry_after_parses_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("nan", now) is None
    assert parse_retry_after(None, now) is None


@pytest.mark.parametrize("raw", [False, True])
async def test_5xx_then_success_is_retried(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient, raw: bool
) -> None:
    prediction = await wavespeed_client.submit(BODY)
    fake_wavespeed.fail_next("result", 502, times=2, raw=raw)
    assert (await wavespeed_client.get_result(prediction.id)).id == prediction.id
    assert len(fake_wavespeed.calls("result")) == 3


async def test_5xx_forever_is_a_transient_error(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    fake_wavespeed.fail_next("result", 500, times=None)
    with pytest.raises(TransientError) as caught:
        await wavespeed_client.get_result("p")
    assert caught.value.retryable and caught.value.http_status == 500
    assert len(fake_wavespeed.calls("result")) == FAST_RETRY.attempts


async def test_slow_get_times_out_and_is_retried(fake_wavespeed: FakeWaveSpeed) -> None:
    fast = Timeouts(connect_s=1.0, read_s=0.2)
    async with client_for(fake_wavespeed, timeouts=fast) as client:
        prediction = await client.submit(BODY)
        fake_wavespeed.slow_next("result", 0.6)
        assert (await client.get_result(prediction.id)).id == prediction.id
    assert len(fake_wavespeed.calls("result")) == 2


async def test_a_malformed_url_fails_at_once(wavespeed_client: WaveSpeedClient) -> None:
    for url in ("not a url", "ftp://cdn.example/video.mp4"):
        with pytest.raises(WaveSpeedError, match="usable") as caught:
            await downloaded(wavespeed_client, url, max_bytes=100)
        assert not caught.value.retryable


def test_backoff_is_capped_full_jitter() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0)
    delays = [policy.backoff(retry) for retry in range(1, 8) for _ in range(50)]
    assert all(0.0 <= delay <= 4.0 for delay in delays)
    assert max(policy.backoff(1) for _ in range(50)) <= 0.5


# --- submit safety ------------------------------------------------------------------------------


async def test_submit_timeout_after_acceptance_is_uncertain_and_not_retried(
    fake_wavespeed: FakeWaveSpeed,
) -> None:
    fake_wavespeed.slow_next("submit", 0.6)
    async with client_for(fake_wavespeed, timeouts=Timeouts(submit_s=0.2)) as client:
        with pytest.raises(SubmitUncertain) as caught:
            await client.submit(BODY)
    assert not caught.value.retryable
    assert len(fake_wavespeed.tasks) == 1
    assert len(fake_wavespeed.calls("submit")) == 1


async def test_submit_5xx_envelope_is_transient_and_creates_nothing(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    fake_wavespeed.fail_next("submit", 503)
    with pytest.raises(TransientError) as caught:
        await wavespeed_client.submit(BODY)
    assert not isinstance(caught.value, SubmitUncertain)
    assert fake_wavespeed.tasks == {} and len(fake_wavespeed.calls("submit")) == 1


@pytest.mark.parametrize("status", [502, 504])
async def test_submit_proxy_error_page_is_uncertain(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient, status: int
) -> None:
    fake_wavespeed.fail_next("submit", status, raw=True)
    with pytest.raises(SubmitUncertain):
        await wavespeed_client.submit(BODY)
    assert len(fake_wavespeed.calls("submit")) == 1


@pytest.mark.parametrize(
    ("body", "raw"),
    [("OK", True), ({"code": 200, "message": "success", "data": None}, False)],
)
async def test_submit_success_without_a_readable_task_is_uncertain(
    fake_wavespeed: FakeWaveSpeed,
    wavespeed_client: WaveSpeedClient,
    body: dict[str, object] | str,
    raw: bool,
) -> None:
    fake_wavespeed.fail_next("submit", 200, body=body, raw=raw)
    with pytest.raises(SubmitUncertain):
        await wavespeed_client.submit(BODY)


async def test_submit_429_raises_rate_limited_at_once(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    """The job runner's queue, not the client, waits and tries again (bot/queueing.py)."""
    fake_wavespeed.fail_next("submit", 429, retry_after=7)
    with pytest.raises(RateLimited) as caught:
        await wavespeed_client.submit(BODY)
    assert caught.value.retry_after == 7
    assert len(fake_wavespeed.calls("submit")) == 1 and not fake_wavespeed.tasks


async def test_submit_to_a_closed_port_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    async with WaveSpeedClient(TEST_API_KEY, url, retry=FAST_RETRY) as client:
        with pytest.raises(TransientError, match="could not be reached") as caught:
            await client.submit(BODY)
    assert not isinstance(caught.value, SubmitUncertain)


# --- polling ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "retryable", "code_field"),
    [(1200, False, None), (1402, False, "code"), (1403, True, None), (5000, True, "code")],
)
async def test_failed_task_raises_task_failed(
    code: int, retryable: bool, code_field: str | None, fast_poll: PollPolicy
) -> None:
    async with (
        FakeWaveSpeed(api_key=TEST_API_KEY, processing_s=0.05, error_code_field=code_field) as fake,
        client_for(fake) as client,
    ):
        fake.next_task("failed", error_code=code)
        prediction = await client.submit(BODY)
        with pytest.raises(TaskFailed) as caught:
            await client.wait_for_result(prediction.id, fast_poll)
    assert caught.value.code == code and caught.value.retryable is retryable
    assert caught.value.status == "failed" and caught.value.message


async def test_poll_timeout(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    fake_wavespeed.next_task(processing_s=30)
    prediction = await wavespeed_client.submit(BODY)
    policy = PollPolicy(first_delay_s=0.05, max_interval_s=0.1, timeout_s=0.4)
    with pytest.raises(PollTimeout) as caught:
        await wavespeed_client.wait_for_result(prediction.id, policy)
    assert caught.value.last_status == "processing"


async def test_polling_is_adaptive(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    """A 1 s job polled from 50 ms, doubling to 400 ms: a handful of polls, not 20 at 50 ms."""
    fake_wavespeed.next_task(queue_s=0, processing_s=1.0)
    prediction = await wavespeed_client.submit(BODY)
    policy = PollPolicy(first_delay_s=0.05, factor=2.0, max_interval_s=0.4, timeout_s=5.0)
    await wavespeed_client.wait_for_result(prediction.id, policy)
    [submit] = fake_wavespeed.calls("submit")
    polls = fake_wavespeed.calls("result")
    assert polls[0].at - submit.at < 0.5  # from 50 ms (room for a loaded machine), not 1 s
    assert len(polls) <= 7  # a fixed 50 ms poll would take about 20


def test_default_polling_of_a_typical_job_is_cheap() -> None:
    """A 90 s job: the SDK's fixed 1 s poll makes 90 requests; the default policy about 20,
    and never waits more than 5 s between checks (a finished video is noticed promptly)."""
    policy = PollPolicy()
    elapsed, polls = 0.0, 0
    for interval in policy.intervals():
        elapsed += interval
        polls += 1
        if elapsed >= 90:
            break
    assert polls <= 20
    assert list(islice(policy.intervals(), 2)) == [3.0, 4.5]
    assert max(islice(policy.intervals(), 50)) == policy.max_interval_s == 5.0


async def test_polling_survives_unknown_statuses_and_outages(
    fake_wavespeed: FakeWaveSpeed,
    wavespeed_client: WaveSpeedClient,
    fast_poll: PollPolicy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    prediction = await wavespeed_client.submit(BODY)
    odd = envelope({"id": prediction.id, "status": "warming_up"})
    fake_wavespeed.fail_next("result", 200, body=odd, times=3)
    fake_wavespeed.fail_next("result", 503, times=FAST_RETRY.attempts + 1)
    with caplog.at_level(logging.WARNING, logger="bot.wavespeed"):
        result = await wavespeed_client.wait_for_result(prediction.id, fast_poll)
    assert result.is_completed
    assert caplog.text.count("unknown status 'warming_up'") == 1
    assert "poll failed" in caplog.text


# --- secrecy ------------------------------------------------------------------------------------


async def test_the_key_never_leaks(
    fake_wavespeed: FakeWaveSpeed, fast_poll: PollPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-live-DO-NOT-LEAK-4242"
    errors: list[WaveSpeedError] = []
    leaky = {"code": 400, "message": f"bad key {secret}"}
    caplog.set_level(logging.DEBUG)
    async with client_for(fake_wavespeed, key=secret) as client:
        assert secret not in repr(client) and secret not in str(vars(client))
        for route, status, options in [
            ("submit", 400, {"body": leaky}),
            ("submit", 502, {"raw": True}),
            ("submit", 503, {}),
            ("result", 500, {"times": None}),
        ]:
            fake_wavespeed.fail_next(route, status, **options)  # type: ignore[arg-type]
            with pytest.raises(WaveSpeedError) as caught:
                await (client.submit(BODY) if route == "submit" else client.get_result("p"))
            errors.append(caught.value)
        fake_wavespeed.clear_faults()
        with pytest.raises(AuthError) as caught:  # the fake wants TEST_API_KEY
            await client.submit(BODY)
        errors.append(caught.value)
    async with FakeWaveSpeed(processing_s=0.05) as open_fake, client_for(open_fake) as client:
        open_fake.next_task("failed", error_code=1200, error=f"flagged {TEST_API_KEY}")
        prediction = await client.submit(BODY)
        with pytest.raises(TaskFailed) as failed:
            await client.wait_for_result(prediction.id, fast_poll)
        errors.append(failed.value)
    texts = [text for error in errors for text in (str(error), repr(error), repr(vars(error)))]
    assert "bad key ***" in texts[0]
    for text in [*texts, caplog.text]:
        assert secret not in text and TEST_API_KEY not in text


# --- history ------------------------------------------------------------------------------------

OTHER_MODEL = "wavespeed-ai/flux-dev"


def add_tasks(
    fake: FakeWaveSpeed, count: int, newest: datetime, model: str = MODEL_ID
) -> list[str]:
    """`count` web tasks one second apart, the newest at `newest`; their ids newest first."""
    return [fake.add_foreign_task(model, newest - timedelta(seconds=n)) for n in range(count)]


async def test_history_reads_a_page_newest_first(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    before = datetime.now(UTC)
    web_task = fake_wavespeed.add_foreign_task(OTHER_MODEL, before - timedelta(minutes=1))
    submitted = await wavespeed_client.submit(BODY)

    page = await wavespeed_client.history(1)
    assert [p.id for p in page] == [submitted.id, web_task]
    assert [p.model for p in page] == [MODEL_ID, OTHER_MODEL]
    created = page[0].created
    assert created is not None and created.tzinfo == UTC
    assert before - timedelta(seconds=1) <= created <= datetime.now(UTC)
    assert await wavespeed_client.history(2) == []
    assert all(call.method == "POST" and call.has_auth for call in fake_wavespeed.calls("history"))


async def test_find_tasks_filters_by_window_and_model(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    now = datetime.now(UTC)
    minutes = {n: now - timedelta(minutes=n) for n in (1, 3, 5, 10)}
    ids = {n: fake_wavespeed.add_foreign_task(created_at=at) for n, at in minutes.items()}
    other = fake_wavespeed.add_foreign_task(OTHER_MODEL, now - timedelta(minutes=4))

    found = await wavespeed_client.find_tasks(minutes[5], minutes[3])
    assert [p.id for p in found] == [ids[3], ids[5]]  # both ends are inside
    found = await wavespeed_client.find_tasks(minutes[10], now, model=OTHER_MODEL)
    assert [p.id for p in found] == [other]
    assert await wavespeed_client.find_tasks(now - timedelta(seconds=30), now) == []


async def test_find_tasks_pages_until_it_reaches_since(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    now = datetime.now(UTC)
    ids = add_tasks(fake_wavespeed, 250, now)

    found = await wavespeed_client.find_tasks(now - timedelta(seconds=149.5), now)
    assert [p.id for p in found] == ids[:150]
    assert len(fake_wavespeed.calls("history")) == 2  # page 2 holds tasks older than since

    found = await wavespeed_client.find_tasks(now - timedelta(hours=1), now)
    assert [p.id for p in found] == ids
    assert len(fake_wavespeed.calls("history")) == 2 + 3  # page 3 is short: the end


async def test_find_tasks_without_reaching_since_cannot_prove_absence(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    now = datetime.now(UTC)
    add_tasks(fake_wavespeed, 250, now - timedelta(minutes=10))
    with pytest.raises(TransientError, match="2 pages"):
        await wavespeed_client.find_tasks(now - timedelta(hours=1), now, max_pages=2)
    assert len(fake_wavespeed.calls("history")) == 2


@pytest.mark.parametrize("create", [True, False])
async def test_find_tasks_sees_whether_a_lost_submit_created_a_task(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient, create: bool
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    fake_wavespeed.lose_answer_next("submit", create=create, hold_s=0)  # the connection drops
    with pytest.raises(SubmitUncertain):
        await wavespeed_client.submit(BODY)
    found = await wavespeed_client.find_tasks(since, datetime.now(UTC) + timedelta(seconds=5))
    assert [p.id for p in found] == list(fake_wavespeed.tasks)
    assert len(found) == int(create)


async def test_find_tasks_after_a_timed_out_submit(fake_wavespeed: FakeWaveSpeed) -> None:
    fake_wavespeed.lose_answer_next("submit", create=True)
    since = datetime.now(UTC) - timedelta(seconds=5)
    async with client_for(fake_wavespeed, timeouts=Timeouts(submit_s=0.2)) as client:
        with pytest.raises(SubmitUncertain):
            await client.submit(BODY)
        [found] = await client.find_tasks(since, datetime.now(UTC) + timedelta(seconds=5))
    assert list(fake_wavespeed.tasks) == [found.id]


@pytest.mark.parametrize(
    ("since", "problem"),
    [(datetime(2026, 1, 1), "aware"), (datetime.now(UTC) - timedelta(days=8), "7 days")],
)
async def test_find_tasks_refuses_windows_it_cannot_answer(
    wavespeed_client: WaveSpeedClient, since: datetime, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        await wavespeed_client.find_tasks(since, datetime.now(UTC))


async def test_find_tasks_with_an_undated_task_of_the_model_cannot_decide(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    items = [
        {"id": "web", "model": OTHER_MODEL, "status": "completed"},
        {"id": "ours", "model": MODEL_ID, "status": "completed", "created_at": "yesterday"},
    ]
    fake_wavespeed.fail_next("history", 200, body=envelope({"page": 1, "items": items[:1]}))
    now = datetime.now(UTC)
    assert await wavespeed_client.find_tasks(now - timedelta(minutes=1), now) == []
    fake_wavespeed.fail_next("history", 200, body=envelope({"page": 1, "items": items}))
    with pytest.raises(TransientError, match="ours"):
        await wavespeed_client.find_tasks(now - timedelta(minutes=1), now)


async def test_history_reads_nanosecond_times(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    item = {"id": "p", "model": MODEL_ID, "status": "completed"}
    item["created_at"] = "2025-05-19T06:09:15.948268264Z"
    fake_wavespeed.fail_next("history", 200, body=envelope({"page": 1, "items": [item]}))
    [prediction] = await wavespeed_client.history(1)
    assert prediction.created == datetime(2025, 5, 19, 6, 9, 15, 948268, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2025-05-19T06:09:15.948268264Z", datetime(2025, 5, 19, 6, 9, 15, 948268, tzinfo=UTC)),
        ("2025-05-19T06:09:15.9Z", datetime(2025, 5, 19, 6, 9, 15, 900000, tzinfo=UTC)),
        ("2025-05-19T08:09:15+02:00", datetime(2025, 5, 19, 6, 9, 15, tzinfo=UTC)),
        ("2025-05-19T06:09:15", datetime(2025, 5, 19, 6, 9, 15, tzinfo=UTC)),
        ("19/05/2025", None),
        ("", None),
        (None, None),
    ],
)
def test_created_is_aware_utc(text: str | None, moment: datetime | None) -> None:
    prediction = Prediction.model_validate({"id": "p", "status": "created", "created_at": text})
    assert prediction.created == moment == parse_timestamp(text)
    if moment is not None:
        assert prediction.created is not None and prediction.created.utcoffset() == timedelta(0)


async def test_history_5xx_is_retried(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    fake_wavespeed.add_foreign_task()
    fake_wavespeed.fail_next("history", 502, times=2, raw=True)
    assert len(await wavespeed_client.history(1)) == 1
    assert len(fake_wavespeed.calls("history")) == 3


async def test_history_5xx_forever_is_transient(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    fake_wavespeed.fail_next("history", 503, times=None)
    now = datetime.now(UTC)
    with pytest.raises(TransientError):
        await wavespeed_client.find_tasks(now - timedelta(minutes=1), now)
    assert len(fake_wavespeed.calls("history")) == FAST_RETRY.attempts


async def test_history_error_envelopes_map_to_errors(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    fake_wavespeed.fail_next("history", 401)
    with pytest.raises(AuthError):
        await wavespeed_client.history(1)
    fake_wavespeed.fail_next("history", 200, body={"code": 400, "message": "page_size too big"})
    with pytest.raises(RejectedInput, match="page_size too big"):
        await wavespeed_client.history(1)
    with pytest.raises(RejectedInput, match="page_size"):  # the fake validates for real
        await wavespeed_client.history(1, page_size=101)


@pytest.mark.parametrize(
    ("body", "raw"),
    [
        ("OK", True),
        (envelope({"page": 1, "items": "none"}), False),
        (envelope({"page": 1, "items": [{"id": "p"}]}), False),  # no status
        (envelope({"page": 1, "items": ["p"]}), False),
        ({"code": 200, "message": "success", "data": None}, False),
    ],
)
async def test_unreadable_history_is_transient(
    fake_wavespeed: FakeWaveSpeed,
    wavespeed_client: WaveSpeedClient,
    body: dict[str, object] | str,
    raw: bool,
) -> None:
    fake_wavespeed.fail_next("history", 200, body=body, raw=raw)
    with pytest.raises(TransientError, match="unreadable"):
        await wavespeed_client.history(1)


async def test_null_items_are_an_empty_page(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient
) -> None:
    fake_wavespeed.fail_next("history", 200, body=envelope({"page": 1, "items": None}))
    assert await wavespeed_client.history(1) == []


async def test_an_expired_output_link_is_renewed_by_fetching_the_result(
    fake_wavespeed: FakeWaveSpeed, wavespeed_client: WaveSpeedClient, fast_poll: PollPolicy
) -> None:
    fake_wavespeed.next_task(output_expires_s=0.2)
    prediction = await wavespeed_client.submit(BODY)
    link = (await wavespeed_client.wait_for_result(prediction.id, fast_poll)).outputs[0]
    await asyncio.sleep(0.25)
    with pytest.raises(WaveSpeedError) as caught:
        await downloaded(wavespeed_client, link, max_bytes=1_000_000)
    assert caught.value.http_status == 403 and not caught.value.retryable
    fresh = (await wavespeed_client.get_result(prediction.id)).outputs[0]
    assert await downloaded(wavespeed_client, fresh, max_bytes=1_000_000) == sample_video()
