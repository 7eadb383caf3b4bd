"""The fake WaveSpeed API itself, spoken to with a bare aiohttp session (not our client)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bot.testing.fake_wavespeed import FakeWaveSpeed, sample_video, serve_forever
from bot.wavespeed import MODEL_ID
from tests.conftest import TEST_API_KEY

BODY = {"image": "https://cdn.example/cat.png", "prompt": "the cat waves"}
AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield session


async def submit(
    http: aiohttp.ClientSession, fake: FakeWaveSpeed, body: Any = BODY
) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{fake.base_url}/api/v3/{MODEL_ID}", json=body) as response:
        return response.status, await response.json()


async def result(http: aiohttp.ClientSession, fake: FakeWaveSpeed, task_id: str) -> dict[str, Any]:
    async with http.get(f"{fake.base_url}/api/v3/predictions/{task_id}/result") as response:
        assert response.status == 200
        return (await response.json())["data"]


async def status_when_final(http: aiohttp.ClientSession, fake: FakeWaveSpeed, task_id: str) -> dict:
    for _ in range(100):
        data = await result(http, fake, task_id)
        if data["status"] in ("completed", "failed"):
            return data
        await asyncio.sleep(0.02)
    raise AssertionError("the task never ended")


# --- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Bearer ", f"Token {TEST_API_KEY}"])
async def test_api_routes_need_the_key(fake_wavespeed: FakeWaveSpeed, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    async with (
        aiohttp.ClientSession() as bare,
        bare.post(f"{fake_wavespeed.base_url}/api/v3/{MODEL_ID}", json=BODY, headers=headers) as r,
    ):
        assert r.status == 401
        body = await r.json()
    assert body["code"] == 401 and body["message"].startswith("Unauthorized")
    assert fake_wavespeed.tasks == {}


async def test_without_a_configured_key_any_non_empty_key_works() -> None:
    async with FakeWaveSpeed() as fake, aiohttp.ClientSession() as bare:
        url = f"{fake.base_url}/api/v3/predictions/none/result"
        async with bare.get(url, headers={"Authorization": "Bearer anything"}) as response:
            assert response.status == 404  # authorised, but no such prediction
        async with bare.get(url, headers={"Authorization": "Bearer "}) as response:
            assert response.status == 401


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (["not", "an", "object"], "JSON object"),
        ({"prompt": "p"}, "image is required"),
        ({"image": "https://x/a.png"}, "prompt is required"),
        ({**BODY, "prompt": "  "}, "prompt must be a non-empty string"),
        ({**BODY, "image": "cat.png"}, "image must be an http(s) URL"),
        ({**BODY, "audio": 5}, "audio must be an http(s) URL"),
        ({**BODY, "negative_prompt": None}, "negative_prompt must be a string"),
        ({**BODY, "resolution": "480p"}, "resolution must be 720p or 1080p"),
        ({**BODY, "duration": 1}, "duration must be an integer"),
        ({**BODY, "duration": 16}, "duration must be an integer"),
        ({**BODY, "duration": 5.0}, "duration must be an integer"),
        ({**BODY, "duration": "5"}, "duration must be an integer"),
        ({**BODY, "duration": True}, "duration must be an integer"),
        ({**BODY, "shot_type": "wide"}, "shot_type must be single or multi"),
        ({**BODY, "enable_audio": "yes"}, "enable_audio must be a boolean"),
        ({**BODY, "enable_prompt_expansion": 1}, "enable_prompt_expansion must be a boolean"),
        ({**BODY, "seed": -2}, "seed must be an integer"),
        ({**BODY, "seed": 2**31}, "seed must be an integer"),
        ({**BODY, "seed": False}, "seed must be an integer"),
        ({**BODY, "fps": 24}, "unknown field(s): fps"),
    ],
)
async def test_bad_bodies_are_refused(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession, body: Any, problem: str
) -> None:
    status, answer = await submit(http, fake_wavespeed, body)
    assert status == 400 and answer["code"] == 400
    assert problem in answer["message"]
    assert fake_wavespeed.tasks == {} and fake_wavespeed.submissions == []


async def test_non_json_body_is_refused(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{fake_wavespeed.base_url}/api/v3/{MODEL_ID}", data=b"{") as response:
        assert response.status == 400


async def test_other_models_do_not_exist(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    url = f"{fake_wavespeed.base_url}/api/v3/alibaba/wan-2.6/image-to-video"
    async with http.post(url, json=BODY) as response:
        assert response.status == 404
        assert (await response.json())["code"] == 404


async def test_a_full_valid_body_is_accepted_and_priced(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    body = {
        **BODY,
        "audio": "https://cdn.example/song.mp3",
        "negative_prompt": "blur",
        "resolution": "1080p",
        "duration": 15,
        "shot_type": "multi",
        "enable_prompt_expansion": True,
        "enable_audio": False,
        "seed": 2_147_483_647,
    }
    status, answer = await submit(http, fake_wavespeed, body)
    assert status == 200 and answer["code"] == 200 and answer["message"] == "success"
    assert fake_wavespeed.tasks[answer["data"]["id"]].price_micro == 1_125_000  # audio URL given


@pytest.mark.parametrize(
    ("extra", "price"),
    [
        ({}, 250_000),  # enable_audio defaults to true
        ({"enable_audio": False}, 125_000),
        ({"duration": 10, "enable_audio": True}, 500_000),
    ],
)
async def test_price_of_each_task(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession, extra: dict, price: int
) -> None:
    _, answer = await submit(http, fake_wavespeed, {**BODY, **extra})
    assert fake_wavespeed.tasks[answer["data"]["id"]].price_micro == price


# --- lifecycle ----------------------------------------------------------------------------------


async def test_lifecycle_to_completed(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    fake_wavespeed.next_task(queue_s=0.1, processing_s=0.2, nsfw=True)
    _, answer = await submit(http, fake_wavespeed)
    data = answer["data"]
    task_id = data["id"]
    assert data["status"] == "created" and data["outputs"] == [] and data["model"] == MODEL_ID
    assert data["urls"]["get"] == f"{fake_wavespeed.base_url}/api/v3/predictions/{task_id}/result"
    assert data["created_at"].endswith("Z")
    await asyncio.sleep(0.15)
    assert (await result(http, fake_wavespeed, task_id))["status"] == "processing"
    async with http.get(data["urls"]["get"].removesuffix("/result")) as short:
        assert (await short.json())["data"]["status"] == "processing"

    done = await status_when_final(http, fake_wavespeed, task_id)
    assert done["status"] == "completed" and done["has_nsfw_contents"] == [True]
    assert done["outputs"] == [f"{fake_wavespeed.base_url}/outputs/{task_id}.mp4"]
    assert done["timings"]["inference"] >= 200 and done["error"] == ""
    async with http.get(done["outputs"][0]) as video:
        assert video.content_type == "video/mp4"
        assert await video.read() == sample_video()


async def test_output_is_not_served_before_completion(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    _, answer = await submit(http, fake_wavespeed)
    async with http.get(f"{fake_wavespeed.base_url}/outputs/{answer['data']['id']}.mp4") as r:
        assert r.status == 404


async def test_unknown_prediction_is_404(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{fake_wavespeed.base_url}/api/v3/predictions/nope/result") as response:
        assert response.status == 404
        assert (await response.json())["code"] == 404


@pytest.mark.parametrize("code_field", [None, "code"])
async def test_lifecycle_to_failed(http: aiohttp.ClientSession, code_field: str | None) -> None:
    async with FakeWaveSpeed(
        api_key=TEST_API_KEY, processing_s=0.05, error_code_field=code_field
    ) as fake:
        fake.next_task("failed", error_code=1200)
        _, answer = await submit(http, fake)
        done = await status_when_final(http, fake, answer["data"]["id"])
    assert done["status"] == "failed" and done["outputs"] == []
    if code_field is None:
        assert done["error"] == "1200: Content flagged by moderation"
    else:
        assert done["error"] == "Content flagged by moderation" and done["code"] == 1200


async def test_max_concurrent_keeps_the_rest_created(http: aiohttp.ClientSession) -> None:
    async with FakeWaveSpeed(api_key=TEST_API_KEY, processing_s=0.3, max_concurrent=1) as fake:
        ids = [(await submit(http, fake))[1]["data"]["id"] for _ in range(3)]
        await asyncio.sleep(0.1)
        assert [fake.tasks[i].status for i in ids] == ["processing", "created", "created"]
        await asyncio.sleep(0.35)
        assert [fake.tasks[i].status for i in ids] == ["completed", "processing", "created"]
        done = await status_when_final(http, fake, ids[2])
    assert done["status"] == "completed"


# --- media --------------------------------------------------------------------------------------


async def upload(http: aiohttp.ClientSession, fake: FakeWaveSpeed, data: bytes) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="cat.png", content_type="image/png")
    async with http.post(f"{fake.base_url}/api/v3/media/upload/binary", data=form) as response:
        assert response.status == 200
        return (await response.json())["data"]


async def test_upload_round_trip(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    data = await upload(http, fake_wavespeed, b"\x89PNG fake")
    assert data["type"] == "image" and data["size"] == 9 and data["filename"].endswith(".png")
    async with aiohttp.ClientSession() as anonymous, anonymous.get(data["download_url"]) as r:
        assert await r.read() == b"\x89PNG fake" and r.content_type == "image/png"


async def test_upload_needs_a_file_field(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    form = aiohttp.FormData({"other": "x"})
    url = f"{fake_wavespeed.base_url}/api/v3/media/upload/binary"
    async with http.post(url, data=form) as response:
        assert response.status == 400


async def test_an_unreachable_loopback_image_fails_the_task_with_1402(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    expired = f"{fake_wavespeed.base_url}/media/expired.png"
    _, answer = await submit(http, fake_wavespeed, {**BODY, "image": expired})
    done = await status_when_final(http, fake_wavespeed, answer["data"]["id"])
    assert done["status"] == "failed" and done["error"].startswith("1402:")
    assert len(fake_wavespeed.calls("media")) == 1


async def test_a_reachable_loopback_image_is_fetched(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    image = (await upload(http, fake_wavespeed, b"png"))["download_url"]
    _, answer = await submit(http, fake_wavespeed, {**BODY, "image": image})
    assert (await status_when_final(http, fake_wavespeed, answer["data"]["id"]))["error"] == ""
    assert len(fake_wavespeed.calls("media")) == 1


# --- fault injection ----------------------------------------------------------------------------


async def test_faults_apply_in_order_then_stop(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    fake_wavespeed.fail_next("submit", 502, raw=True)
    fake_wavespeed.fail_next("submit", 429, retry_after=7, times=2)
    url = f"{fake_wavespeed.base_url}/api/v3/{MODEL_ID}"
    async with http.post(url, json=BODY) as first:
        assert first.status == 502 and first.content_type == "text/html"
    for _ in range(2):
        async with http.post(url, json=BODY) as limited:
            assert limited.status == 429 and limited.headers["Retry-After"] == "7"
            assert (await limited.json())["code"] == 429
    status, _ = await submit(http, fake_wavespeed)
    assert status == 200 and len(fake_wavespeed.tasks) == 1


async def test_slow_submit_still_creates_the_task(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    fake_wavespeed.slow_next("submit", 0.5)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await submit(http, fake_wavespeed)
    assert len(fake_wavespeed.tasks) == 1


async def test_out_of_credit_is_a_402(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    fake_wavespeed.out_of_credit = True
    status, answer = await submit(http, fake_wavespeed)
    assert status == 402 and "Insufficient balance" in answer["message"]


def test_unknown_fault_route_is_refused() -> None:
    with pytest.raises(ValueError, match="route"):
        FakeWaveSpeed().fail_next("nowhere", 500)


async def test_serve_forever_prints_its_url_and_stops_when_cancelled(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = asyncio.create_task(serve_forever("127.0.0.1", 0, processing_s=0.05))
    printed = ""
    async with asyncio.timeout(5):
        while "http://" not in printed:
            await asyncio.sleep(0.01)
            printed += capsys.readouterr().out
    base_url = re.search(r"http://\S+", printed).group()  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as bare:
        url = f"{base_url}/api/v3/predictions/none/result"
        async with bare.get(url, headers={"Authorization": "Bearer any-key"}) as response:
            assert response.status == 404
    server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server


# --- history ------------------------------------------------------------------------------------


async def history(
    http: aiohttp.ClientSession, fake: FakeWaveSpeed, body: Any
) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{fake.base_url}/api/v3/predictions", json=body) as response:
        return response.status, await response.json()


async def history_ids(
    http: aiohttp.ClientSession, fake: FakeWaveSpeed, page: int, size: int
) -> list[str]:
    status, answer = await history(http, fake, {"page": page, "page_size": size})
    assert status == 200 and answer["code"] == 200 and answer["data"]["page"] == page
    return [item["id"] for item in answer["data"]["items"]]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([1, 20], "JSON object"),
        ({"page_size": 20}, "page is required"),
        ({"page": 1}, "page_size is required"),
        ({"page": "1", "page_size": 20}, "page must be an integer"),
        ({"page": 1.0, "page_size": 20}, "page must be an integer"),
        ({"page": True, "page_size": 20}, "page must be an integer"),
        ({"page": 1, "page_size": False}, "page_size must be an integer"),
        ({"page": 1, "page_size": None}, "page_size must be an integer"),
        ({"page": 0, "page_size": 20}, "page must be at least 1"),
        ({"page": -1, "page_size": 20}, "page must be at least 1"),
        ({"page": 1, "page_size": 0}, "page_size must be from 1 to 100"),
        ({"page": 1, "page_size": 101}, "page_size must be from 1 to 100"),
        ({"page": 1, "page_size": 20, "model": MODEL_ID}, "unknown field(s): model"),
    ],
)
async def test_bad_history_bodies_are_refused(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession, body: Any, problem: str
) -> None:
    status, answer = await history(http, fake_wavespeed, body)
    assert status == 400 and answer["code"] == 400
    assert problem in answer["message"]
    assert len(fake_wavespeed.calls("history")) == 1 and fake_wavespeed.calls("submit") == []


async def test_non_json_history_body_is_refused(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{fake_wavespeed.base_url}/api/v3/predictions", data=b"{") as response:
        assert response.status == 400


async def test_history_needs_the_key(fake_wavespeed: FakeWaveSpeed) -> None:
    url = f"{fake_wavespeed.base_url}/api/v3/predictions"
    async with (
        aiohttp.ClientSession() as bare,
        bare.post(url, json={"page": 1, "page_size": 1}) as r,
    ):
        assert r.status == 401


async def test_history_is_newest_first_and_paginated(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    now = datetime.now(UTC)
    older = fake_wavespeed.add_foreign_task(created_at=now - timedelta(hours=2))
    oldest = fake_wavespeed.add_foreign_task(created_at=now - timedelta(days=3))
    _, answer = await submit(http, fake_wavespeed)
    newest = answer["data"]["id"]
    old = fake_wavespeed.add_foreign_task(created_at=now - timedelta(hours=5))

    assert await history_ids(http, fake_wavespeed, 1, 100) == [newest, older, old, oldest]
    assert await history_ids(http, fake_wavespeed, 1, 3) == [newest, older, old]
    assert await history_ids(http, fake_wavespeed, 2, 3) == [oldest]
    assert await history_ids(http, fake_wavespeed, 3, 3) == []
    assert fake_wavespeed.submissions == [BODY]  # reading the history submits nothing


async def test_history_items_look_like_results(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    _, answer = await submit(http, fake_wavespeed)
    done = await status_when_final(http, fake_wavespeed, answer["data"]["id"])
    _, page = await history(http, fake_wavespeed, {"page": 1, "page_size": 1})
    assert page["message"] == "success"
    assert page["data"]["items"] == [done]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", done["created_at"])


async def test_history_keeps_seven_days_by_the_fake_clock(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    now = datetime.now(UTC)
    six_days = fake_wavespeed.add_foreign_task(created_at=now - timedelta(days=6, hours=23))
    fake_wavespeed.add_foreign_task(created_at=now - timedelta(days=7, minutes=1))
    assert await history_ids(http, fake_wavespeed, 1, 100) == [six_days]

    fake_wavespeed.clock_skew_s = timedelta(hours=2).total_seconds()
    assert await history_ids(http, fake_wavespeed, 1, 100) == []
    assert len(fake_wavespeed.tasks) == 2  # out of the history, not gone


async def test_clock_skew_stamps_created_at(http: aiohttp.ClientSession) -> None:
    async with FakeWaveSpeed(api_key=TEST_API_KEY, clock_skew_s=-3600) as fake:
        _, answer = await submit(http, fake)
    created = datetime.fromisoformat(answer["data"]["created_at"])
    assert abs((datetime.now(UTC) - created).total_seconds() - 3600) < 5


async def test_foreign_tasks_are_in_history_and_pollable(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    other_model = "wavespeed-ai/flux-dev"
    done = fake_wavespeed.add_foreign_task(other_model)
    failed = fake_wavespeed.add_foreign_task(status="failed")
    running = fake_wavespeed.add_foreign_task(status="processing")

    assert set(await history_ids(http, fake_wavespeed, 1, 100)) == {done, failed, running}
    assert fake_wavespeed.submissions == []
    completed = await result(http, fake_wavespeed, done)
    assert completed["model"] == other_model and completed["status"] == "completed"
    async with http.get(completed["outputs"][0]) as video:
        assert await video.read() == sample_video()
    failure = await result(http, fake_wavespeed, failed)
    assert failure["model"] == MODEL_ID and failure["error"].startswith("5000:")
    await asyncio.sleep(0.3)  # longer than a submitted task takes: foreign ones stay put
    assert (await result(http, fake_wavespeed, running))["status"] == "processing"


def test_foreign_task_times_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        FakeWaveSpeed().add_foreign_task(created_at=datetime(2026, 1, 1))


async def test_history_faults_can_be_injected(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    fake_wavespeed.fail_next("history", 503)
    status, _ = await history(http, fake_wavespeed, {"page": 1, "page_size": 10})
    assert status == 503
    assert await history_ids(http, fake_wavespeed, 1, 10) == []


# --- outputs ------------------------------------------------------------------------------------


async def test_completed_with_empty_outputs(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    fake_wavespeed.next_task(empty_outputs=True, nsfw=True)
    _, answer = await submit(http, fake_wavespeed)
    task_id = answer["data"]["id"]
    done = await status_when_final(http, fake_wavespeed, task_id)
    assert done["status"] == "completed" and done["outputs"] == []
    assert done["has_nsfw_contents"] == [] and done["error"] == ""
    async with http.get(f"{fake_wavespeed.base_url}/outputs/{task_id}.mp4") as response:
        assert response.status == 404


async def test_expiring_output_links_are_renewed_by_each_result(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    fake_wavespeed.next_task(output_expires_s=0.3)
    _, answer = await submit(http, fake_wavespeed)
    task_id = answer["data"]["id"]
    link = (await status_when_final(http, fake_wavespeed, task_id))["outputs"][0]
    assert re.search(r"\?exp=[\d.]+&sig=[0-9a-f]{64}$", link)
    async with http.get(link) as video:
        assert video.status == 200 and await video.read() == sample_video()

    await asyncio.sleep(0.35)
    async with http.get(link) as expired:
        assert expired.status == 403 and "expired" in await expired.text()
    fresh = (await result(http, fake_wavespeed, task_id))["outputs"][0]
    assert fresh != link
    async with http.get(fresh) as video:
        assert video.status == 200


async def test_unsigned_or_forged_output_links_are_refused(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    fake_wavespeed.next_task(output_expires_s=60)
    _, answer = await submit(http, fake_wavespeed)
    link = (await status_when_final(http, fake_wavespeed, answer["data"]["id"]))["outputs"][0]
    unsigned = link.partition("?")[0]
    forged = re.sub(r"sig=\w+", "sig=" + "0" * 64, link)
    extended = re.sub(r"exp=([\d.]+)", lambda m: f"exp={float(m.group(1)) + 3600:.3f}", link)
    for bad in (unsigned, forged, extended):
        async with http.get(bad) as response:
            assert response.status == 403, bad


async def test_output_faults_still_apply(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    _, answer = await submit(http, fake_wavespeed)
    link = (await status_when_final(http, fake_wavespeed, answer["data"]["id"]))["outputs"][0]
    fake_wavespeed.fail_next("output", 404, times=2)
    statuses = []
    for _ in range(3):
        async with http.get(link) as response:
            statuses.append(response.status)
    assert statuses == [404, 404, 200]


# --- lost answers -------------------------------------------------------------------------------


@pytest.mark.parametrize("create", [True, False])
async def test_a_lost_answer_times_the_client_out(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession, create: bool
) -> None:
    fake_wavespeed.lose_answer_next("submit", create=create)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await submit(http, fake_wavespeed)
    assert len(fake_wavespeed.tasks) == len(fake_wavespeed.submissions) == int(create)
    status, _ = await submit(http, fake_wavespeed)  # the next one is answered again
    assert status == 200


@pytest.mark.parametrize("create", [True, False])
async def test_a_lost_answer_can_drop_the_connection_at_once(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession, create: bool
) -> None:
    fake_wavespeed.lose_answer_next("submit", create=create, hold_s=0)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await submit(http, fake_wavespeed)
    assert len(fake_wavespeed.tasks) == int(create)


async def test_a_late_proxy_page_creates_nothing(
    fake_wavespeed: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    fake_wavespeed.fail_next("submit", 504, raw=True, delay_s=0.5)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await submit(http, fake_wavespeed)
    assert fake_wavespeed.tasks == {}


async def test_stopping_ends_held_connections_at_once(http: aiohttp.ClientSession) -> None:
    async def late_status(url: str) -> int:
        async with http.get(url) as response:
            return response.status

    loop = asyncio.get_running_loop()
    async with FakeWaveSpeed(api_key=TEST_API_KEY) as fake:
        fake.lose_answer_next("submit", create=True)
        fake.fail_next("result", 503, delay_s=30)
        held = asyncio.create_task(submit(http, fake))
        slow = asyncio.create_task(late_status(f"{fake.base_url}/api/v3/predictions/p/result"))
        while len(fake.requests) < 2:
            await asyncio.sleep(0.01)
        stopping = loop.time()
    assert loop.time() - stopping < 2
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await held
    assert await slow == 503  # the delayed answer is sent early rather than never
