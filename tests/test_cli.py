"""The `wanbot` command, run as a real subprocess (`python -m bot …`) against the in-process fake.

The fake WaveSpeed API runs in the test's event loop, so a test can script it (`next_task`) and
inspect what it received while the CLI, in its own process, talks to it over loopback.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
import sys
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from bot.cli import CLI_OWNER, main
from bot.config import Settings
from bot.domain.budget import BudgetPeriod, BudgetPolicy
from bot.domain.job import LedgerEntry
from bot.domain.lifecycle import JobState
from bot.domain.request import GenerationRequest
from bot.testing.fake_wavespeed import FakeWaveSpeed
from bot.wavespeed import WaveSpeedClient
from storage import open_storage
from tests.conftest import TEST_API_KEY
from tests.fakes.images import tiny_png

ROOT = Path(__file__).resolve().parents[1]
PYTHON_M_BOT = (sys.executable, "-m", "bot")
FAST_POLL = ("--poll-seconds", "0.05")
RUN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Run:
    """How one CLI process ended."""

    code: int
    out: str
    err: str

    @property
    def err_line(self) -> str:
        """stderr, which must be exactly one line."""
        lines = self.err.splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got {self.err!r}"
        return lines[0]


_SETTINGS = frozenset(Settings.model_fields)


def cli_env(**settings: str) -> dict[str, str]:
    """This process's environment without any wanbot setting, plus `settings` (upper-cased).

    The source tree goes on PYTHONPATH so `python -m bot` works from a checkout too.
    """
    env = {name: value for name, value in os.environ.items() if name.lower() not in _SETTINGS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.update({name.upper(): value for name, value in settings.items()})
    return env


async def wanbot(
    *args: str | Path,
    cwd: Path,
    env: dict[str, str],
    command: Sequence[str] = PYTHON_M_BOT,
) -> Run:
    """Run the command to its end; every run must keep the API key and tracebacks to itself."""
    process = await asyncio.create_subprocess_exec(
        *command,
        *map(str, args),
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    run = Run(process.returncode, out.decode(), err.decode())
    assert TEST_API_KEY not in run.out + run.err
    assert "Traceback" not in run.err, run.err
    return run


@dataclass
class Workspace:
    """A folder with an image and a database, and the fake the CLI is pointed at."""

    fake: FakeWaveSpeed
    dir: Path

    @property
    def image(self) -> Path:
        return self.dir / "cat.png"

    @property
    def database(self) -> Path:
        return self.dir / "wanbot.db"

    def env(self, **settings: str) -> dict[str, str]:
        """Settings pointing at the fake and the database; a setting given as "" is left out."""
        base = {
            "wavespeed_base_url": self.fake.base_url,
            "wavespeed_api_key": TEST_API_KEY,
            "database_url": f"sqlite:///{self.database}",
            # roomy account limits: several runs a minute must not wait for a turn
            "wavespeed_max_per_minute": "1000",
            "wavespeed_max_concurrent": "1000",
        }
        return cli_env(**{k: v for k, v in (base | settings).items() if v})

    async def run(self, *args: str | Path, **settings: str) -> Run:
        return await wanbot(*args, cwd=self.dir, env=self.env(**settings))

    async def generate(self, image: str | Path, *options: str, **settings: str) -> Run:
        """`wanbot generate IMAGE PROMPT -o out.mp4 …` with fast polling."""
        command = ("generate", image, "the cat turns its head", "-o", "out.mp4", *FAST_POLL)
        return await self.run(*command, *options, **settings)

    async def ledger(self) -> list[LedgerEntry]:
        """Every ledger row of the "cli" budget (guild 0)."""
        if not self.database.exists():
            return []
        policy = BudgetPolicy(0, 0, BudgetPeriod.MONTH)
        storage = await open_storage(f"sqlite:///{self.database}", policy)
        try:
            return await storage.ledger(0)
        finally:
            await storage.close()


@pytest.fixture
def workspace(fake_wavespeed: FakeWaveSpeed, tmp_path: Path) -> Workspace:
    space = Workspace(fake_wavespeed, tmp_path)
    space.image.write_bytes(tiny_png())
    return space


def money(ledger: list[LedgerEntry]) -> list[tuple[str, int]]:
    """The ledger as (kind, amount) pairs, all of one job."""
    assert len({entry.job_id for entry in ledger}) <= 1
    return [(entry.kind, entry.amount_micro) for entry in ledger]


# --- quote ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "price"),
    [
        # the model page's worked examples
        (["--duration", "5", "--resolution", "720p", "--no-audio"], "$0.125"),
        (["--duration", "10", "--resolution", "720p", "--audio"], "$0.50"),
        (["--duration", "15", "--resolution", "1080p", "--audio"], "$1.125"),
        # the per-5-second table, audio off and on
        (["--resolution", "1080p", "--no-audio"], "$0.1875"),
        (["--resolution", "1080p"], "$0.375"),  # audio is on by default
        (["--duration", "10", "--no-audio"], "$0.25"),
        (["--duration", "2", "--no-audio"], "$0.05"),
    ],
)
def test_quote_prints_the_price(
    options: list[str], price: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["quote", *options]) == 0
    assert capsys.readouterr() == (f"{price}\n", "")


@pytest.mark.parametrize("duration", ["1", "16", "0"])
def test_quote_refuses_a_duration_out_of_range(
    duration: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["quote", "--duration", duration]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "wanbot: duration must be 2–15 seconds\n"


async def test_quote_in_a_real_process(tmp_path: Path) -> None:
    run = await wanbot(
        "quote", "--duration", "10", "--resolution", "720p", "--audio", cwd=tmp_path, env=cli_env()
    )
    assert (run.code, run.out, run.err) == (0, "$0.50\n", "")

    run = await wanbot("quote", "--duration", "16", cwd=tmp_path, env=cli_env())
    assert (run.code, run.out) == (2, "")
    assert "duration" in run.err_line


async def test_python_m_bot_is_the_wanbot_command(tmp_path: Path) -> None:
    script = shutil.which("wanbot", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the wanbot console script is not installed (pip install -e .)")
    for options in (["--duration", "15", "--resolution", "1080p"], ["--duration", "99"]):
        runs = [
            await wanbot("quote", *options, cwd=tmp_path, env=cli_env(), command=command)
            for command in ([script], PYTHON_M_BOT)
        ]
        assert runs[0] == runs[1]


# --- generate ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", ["0", "-1", "soon", "inf"])
def test_poll_seconds_must_be_a_positive_number(
    seconds: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["generate", "cat.png", "blink", "--poll-seconds", seconds])
    assert exited.value.code == 2
    assert "--poll-seconds" in capsys.readouterr().err


async def test_generate_uploads_a_local_image_submits_once_and_charges(
    workspace: Workspace,
) -> None:
    workspace.fake.next_task(processing_s=0.6)  # long enough for progress lines before the end
    run = await workspace.generate(
        workspace.image,
        "--duration", "7", "--resolution", "1080p", "--no-audio", "--seed", "42",
        "--negative-prompt", "blurry", "--shot-type", "multi", "--prompt-expansion",
    )  # fmt: skip

    assert run.code == 0, run.err
    video = (workspace.dir / "out.mp4").read_bytes()
    assert video[4:8] == b"ftyp"
    fake = workspace.fake
    (upload,) = fake.uploads.values()
    assert upload.data == tiny_png()
    assert fake.submissions == [
        {
            "image": f"{fake.base_url}/media/{upload.name}",
            "prompt": "the cat turns its head",
            "negative_prompt": "blurry",
            "resolution": "1080p",
            "duration": 7,
            "shot_type": "multi",
            "enable_prompt_expansion": True,
            "enable_audio": False,
            "seed": 42,
        }
    ]
    price = 262_500  # 7 s × $0.025 × 1.5 for 1080p, silent
    assert money(await workspace.ledger()) == [("reserve", price), ("charge", price)]
    assert "Charged $0.2625." in run.out
    assert re.search(r"(queued at WaveSpeed|generating) +\d+s", run.err), run.err


async def test_generate_sends_an_image_url_as_is(workspace: Workspace) -> None:
    url = "https://cdn.example/cat.png"  # not loopback: the fake takes it unfetched

    run = await workspace.generate(url, "--duration", "5")

    assert run.code == 0, run.err
    assert workspace.fake.uploads == {}
    (body,) = workspace.fake.submissions
    assert (body["image"], body["enable_audio"], body["duration"]) == (url, True, 5)
    assert money(await workspace.ledger()) == [("reserve", 250_000), ("charge", 250_000)]


async def test_generate_first_finishes_a_job_an_interrupted_run_left(
    workspace: Workspace, wavespeed_client: WaveSpeedClient
) -> None:
    policy = BudgetPolicy(5_000_000, 50_000_000, BudgetPeriod.MONTH)
    storage = await open_storage(f"sqlite:///{workspace.database}", policy)
    try:  # what a run stopped by Ctrl-C right after WaveSpeed accepted its job leaves behind
        image = await wavespeed_client.upload(tiny_png(), "cat.png", "image/png")
        request = GenerationRequest.parse(image=image, prompt="an earlier run")
        job = await storage.reserve(CLI_OWNER, request.model_dump_json(), request.price_micro, 2)
        await storage.advance(job.id, JobState.QUEUED)
        await storage.advance(job.id, JobState.SUBMITTING)
        prediction = await wavespeed_client.submit(request.to_api_body())
        await storage.advance(job.id, JobState.SUBMITTED, prediction_id=prediction.id)
    finally:
        await storage.close()

    run = await workspace.generate(workspace.image)

    assert run.code == 0, run.err
    assert "Finishing 1 job(s) that an earlier run left unfinished" in run.out
    assert (workspace.dir / f"wanbot-job-{job.id}.mp4").read_bytes()[4:8] == b"ftyp"
    assert (workspace.dir / "out.mp4").read_bytes()[4:8] == b"ftyp"
    assert len(workspace.fake.submissions) == 2  # the earlier job was not submitted again
    kinds = [entry.kind for entry in await workspace.ledger()]
    assert sorted(kinds) == ["charge", "charge", "reserve", "reserve"]


async def test_a_failed_task_exits_1_and_is_refunded(workspace: Workspace) -> None:
    workspace.fake.next_task("failed", error_code=1200)

    run = await workspace.generate(workspace.image)

    assert run.code == 1
    assert "content filter" in run.err
    assert "refunded $0.25" in run.err
    assert not (workspace.dir / "out.mp4").exists()
    assert money(await workspace.ledger()) == [("reserve", 250_000), ("refund", 250_000)]


async def test_out_of_budget_exits_3_and_sends_nothing(workspace: Workspace) -> None:
    run = await workspace.generate(workspace.image, member_budget_usd="0.10")

    assert run.code == 3
    message = run.err_line
    assert "price $0.25" in message
    assert "available $0.10" in message
    assert re.search(r"resets \d{4}-\d\d-\d\d \d\d:\d\d UTC", message), message
    assert workspace.fake.requests == []  # not even the upload
    assert await workspace.ledger() == []


async def test_a_missing_api_key_is_one_line_and_opens_nothing(workspace: Workspace) -> None:
    run = await workspace.generate(workspace.image, wavespeed_api_key="")

    assert run.code == 2
    assert run.err_line.startswith("wanbot: configuration error: WAVESPEED_API_KEY is not set")
    assert not workspace.database.exists()


async def test_a_malformed_setting_is_one_line_naming_it(workspace: Workspace) -> None:
    run = await workspace.generate(workspace.image, member_budget_usd="lots")

    assert run.code == 2
    assert "MEMBER_BUDGET_USD" in run.err_line
    assert workspace.fake.requests == []


async def test_a_file_that_is_not_an_image_costs_nothing(workspace: Workspace) -> None:
    notes = workspace.dir / "notes.png"
    notes.write_text("not a picture")

    run = await workspace.generate(notes)

    assert run.code == 2
    assert "isn't an image" in run.err_line
    assert workspace.fake.requests == []
    assert await workspace.ledger() == []


# --- fake-api and run -------------------------------------------------------------------------


async def test_fake_api_serves_until_terminated(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *PYTHON_M_BOT, "fake-api", "--port", "0",
        cwd=tmp_path, env=cli_env(), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        banner = (await asyncio.wait_for(process.stdout.readline(), RUN_TIMEOUT_S)).decode()
        found = re.search(r"http://127\.0\.0\.1:\d+", banner)
        assert found, banner
        url = f"{found.group()}/api/v3/predictions/no-such-task/result"
        async with (
            aiohttp.ClientSession() as http,
            http.get(url, headers={"Authorization": f"Bearer {TEST_API_KEY}"}) as response,
        ):
            assert response.status == 404
            assert await response.json() == {"code": 404, "message": "prediction not found"}
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), RUN_TIMEOUT_S)


async def test_run_without_a_discord_token_says_so(tmp_path: Path) -> None:
    run = await wanbot("run", cwd=tmp_path, env=cli_env(wavespeed_api_key=TEST_API_KEY))

    assert run.code == 2
    assert "DISCORD_TOKEN" in run.err_line
    assert run.out == ""


async def test_audit_is_clean_after_use_and_names_a_tampered_balance(workspace: Workspace) -> None:
    assert (await workspace.generate(workspace.image)).code == 0
    workspace.fake.next_task("failed", error_code=1403)
    assert (await workspace.generate(workspace.image)).code == 1

    clean = await workspace.run("audit")
    assert (clean.code, clean.out) == (0, "wanbot audit: every balance matches the ledger\n")

    with closing(sqlite3.connect(workspace.database)) as db, db:
        db.execute("UPDATE balances SET spent = spent + 1 WHERE member_id = 0")
    drifted = await workspace.run("audit")
    assert drifted.code == 1
    assert "guild 0, the server" in drifted.out and "1 balance(s) differ" in drifted.err


# --- several runs on one database --------------------------------------------------------------


async def test_two_runs_at_once_finish_an_earlier_job_once(
    workspace: Workspace, wavespeed_client: WaveSpeedClient
) -> None:
    """Two `generate` runs start together while an earlier run's job is still generating: its
    lease gives it to one of them, which alone polls it, saves it and is charged for it."""
    workspace.fake.next_task(processing_s=3.0)  # still generating while both runs start
    policy = BudgetPolicy(5_000_000, 50_000_000, BudgetPeriod.MONTH)
    storage = await open_storage(f"sqlite:///{workspace.database}", policy)
    try:  # what a run stopped right after WaveSpeed accepted its job leaves: no lease held
        request = GenerationRequest.parse(image="https://cdn.example/cat.png", prompt="earlier")
        job = await storage.reserve(CLI_OWNER, request.model_dump_json(), request.price_micro, 2)
        await storage.advance(job.id, JobState.QUEUED)
        await storage.advance(job.id, JobState.SUBMITTING)
        prediction = await wavespeed_client.submit(request.to_api_body())
        await storage.advance(job.id, JobState.SUBMITTED, prediction_id=prediction.id)
    finally:
        await storage.close()

    runs = await asyncio.gather(
        *(
            workspace.generate(workspace.image, "-o", f"run-{n}.mp4", max_jobs_per_member="5")
            for n in range(2)
        )
    )

    assert [run.code for run in runs] == [0, 0], [run.err for run in runs]
    assert sorted("Finishing 1 job(s)" in run.out for run in runs) == [False, True]
    assert (workspace.dir / f"wanbot-job-{job.id}.mp4").read_bytes()[4:8] == b"ftyp"
    for n in range(2):
        assert (workspace.dir / f"run-{n}.mp4").read_bytes()[4:8] == b"ftyp"
    polls = [call.at for call in workspace.fake.calls("result") if prediction.id in call.path]
    gaps = [polls[i] - polls[i - 1] for i in range(1, len(polls))]
    assert min(gaps) >= float(FAST_POLL[1]) * 0.9, gaps  # one follower, never two at once
    assert len(workspace.fake.submissions) == 3
    ledger = await workspace.ledger()
    earlier = [(entry.kind, entry.amount_micro) for entry in ledger if entry.job_id == job.id]
    assert earlier == [("reserve", job.price_micro), ("charge", job.price_micro)]
    assert sorted(entry.kind for entry in ledger) == ["charge"] * 3 + ["reserve"] * 3
