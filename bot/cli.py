"""The `wanbot` command: run | generate | quote | audit | migrate-db | fake-api."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bot.config import ConfigError, Settings, load_settings
from bot.domain.budget import CLI_GUILD_ID, CLI_MEMBER_ID, BudgetError, BudgetExceeded
from bot.domain.job import JobOwner, JobRecord
from bot.domain.media import InvalidMedia, MediaFile, MediaLimits, check_audio, check_image
from bot.domain.outcomes import JobFailure
from bot.domain.pricing import format_usd, price_micro
from bot.domain.request import GenerationRequest, InvalidRequest
from bot.logs import setup_logging
from bot.runner import MAX_VIDEO_BYTES, Posted, Progress, Video
from bot.services import Services, Tuning
from bot.wavespeed import PollPolicy
from storage import open_storage
from storage.transfer import TransferError, transfer_database

CLI_OWNER = JobOwner(guild_id=CLI_GUILD_ID, channel_id=0, member_id=CLI_MEMBER_ID)
UPLOAD_PLACEHOLDER = "https://upload.invalid/"  # a local file's URL until the runner uploads it


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = argparse.ArgumentParser(
        prog="wanbot", description="Turn a picture into a short video (Wan 2.6 I2V Flash)."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start the Discord bot")

    quote = commands.add_parser("quote", help="print the price of a video")
    _add_price_options(quote)

    generate = commands.add_parser("generate", help="make one video from the terminal")
    generate.add_argument("image", help="a local image file or an http(s) URL")
    generate.add_argument("prompt", help="the motion you want")
    _add_price_options(generate)
    generate.add_argument("--audio-file", help="custom audio to sync (local WAV/MP3 or URL)")
    generate.add_argument("--negative-prompt", help="what to avoid")
    generate.add_argument("--shot-type", choices=["single", "multi"], default="single")
    generate.add_argument("--prompt-expansion", action="store_true", help="let WaveSpeed expand it")
    generate.add_argument("--seed", type=int, default=-1, help="-1 for random")
    generate.add_argument("-o", "--output", type=Path, default=Path("wanbot.mp4"))
    generate.add_argument(
        "--poll-seconds",
        type=_positive_float,
        default=PollPolicy.first_delay_s,
        help="first status check after this many seconds, then 1.5x longer each time up to "
        f"{PollPolicy.max_interval_s:g} s (default %(default)g; shorten it for `wanbot fake-api`)",
    )

    commands.add_parser(
        "audit", help="check every running balance against the ledger (exit 1 on a difference)"
    )

    migrate = commands.add_parser(
        "migrate-db", help="copy a SQLite database into an empty PostgreSQL one, and verify it"
    )
    migrate.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="SQLITE_URL",
        help="sqlite:///path.db or a file path (only read)",
    )
    migrate.add_argument(
        "--to",
        dest="target",
        required=True,
        metavar="POSTGRES_URL",
        help="postgresql://user:password@host:port/database[?search_path=schema] (must be empty)",
    )

    fake = commands.add_parser("fake-api", help="serve a fake WaveSpeed API for offline tries")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8378)
    fake.add_argument("--api-key", help="the only key it accepts (default: any non-empty key)")
    fake.add_argument("--queue-seconds", type=float, default=2.0)
    fake.add_argument("--processing-seconds", type=float, default=8.0)
    fake.add_argument("--max-concurrent", type=int, default=None)
    return parser


def _add_price_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=int, default=5, help="2-15 seconds (default 5)")
    parser.add_argument("--resolution", choices=["720p", "1080p"], default="720p")
    parser.add_argument(
        "--audio",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="generate sound (doubles the price; default on)",
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `wanbot` console script and `python -m bot`."""
    args = build_parser().parse_args(argv)
    try:
        match args.command:
            case "quote":
                return quote(args)
            case "fake-api":
                return fake_api(args)
            case "run":
                return run_bot(load_settings())
            case "generate":
                return generate_command(args)
            case "audit":
                return asyncio.run(audit(load_settings()))
            case "migrate-db":
                return asyncio.run(migrate_db(args.source, args.target))
    except ConfigError as exc:
        print(f"wanbot: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


def quote(args: argparse.Namespace) -> int:
    """Print the price of one video."""
    try:
        print(format_usd(price_micro(args.duration, args.resolution, args.audio)))
    except ValueError as exc:
        print(f"wanbot: {exc}", file=sys.stderr)
        return 2
    return 0


async def audit(settings: Settings) -> int:
    """Recompute the balances from the ledger; print each difference. 0: clean, 1: not."""
    storage = await open_storage(settings.database_url, settings.budget_policy)
    try:
        differences = await storage.audit()
    finally:
        await storage.close()
    for line in differences:
        print(line)
    if differences:
        count = len(differences)
        print(f"wanbot audit: {count} balance(s) differ from the ledger", file=sys.stderr)
        return 1
    print("wanbot audit: every balance matches the ledger")
    return 0


async def migrate_db(source_url: str, target_url: str) -> int:
    """Move a SQLite database into an empty PostgreSQL one, verified. 0: done, 1: refused or
    failed (one line on stderr, never a password; nothing committed)."""
    try:
        report = await transfer_database(source_url, target_url)
    except TransferError as exc:
        print(f"wanbot migrate-db: {exc}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    return 0


def fake_api(args: argparse.Namespace) -> int:
    """Serve the fake WaveSpeed API until interrupted."""
    from bot.testing.fake_wavespeed import run_fake_api

    run_fake_api(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        queue_s=args.queue_seconds,
        processing_s=args.processing_seconds,
        max_concurrent=args.max_concurrent,
    )
    return 0


def run_bot(settings: Settings) -> int:
    """Start the Discord bot and run until it is stopped."""
    from bot.app import run

    token = settings.require_discord_token()
    settings.require_api_key()
    setup_logging(settings.log_level, _secrets(settings))
    run(settings, token)
    return 0


def generate_command(args: argparse.Namespace) -> int:
    """`wanbot generate`: check the settings and the inputs locally, then make the video."""
    settings = load_settings()
    settings.require_api_key()  # before anything is opened
    try:
        request, uploads = prepare(args, settings.media_limits)
    except (InvalidRequest, InvalidMedia, OSError) as exc:
        print(f"wanbot: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(generate(args, settings, request, uploads))


def prepare(
    args: argparse.Namespace, limits: MediaLimits
) -> tuple[GenerationRequest, dict[str, MediaFile]]:
    """Check everything that can be checked locally: the options, the files, the output folder.

    Returns the request and the local files the runner uploads once the price is reserved (their
    fields hold a placeholder URL until then). Raises InvalidRequest, InvalidMedia or OSError.
    """
    uploads: dict[str, MediaFile] = {}

    def source(
        field: str, value: str, check: Callable[[str, bytes, MediaLimits], MediaFile]
    ) -> str:
        if value.startswith(("http://", "https://")):
            return value
        path = Path(value)
        if not path.is_file():
            raise FileNotFoundError(f"no {field} file {value}")
        uploads[field] = check(path.name, path.read_bytes(), limits)
        return UPLOAD_PLACEHOLDER + field

    if not args.output.parent.is_dir():
        raise NotADirectoryError(f"no folder {args.output.parent} to save the video in")
    request = GenerationRequest.parse(
        image=source("image", args.image, check_image),
        prompt=args.prompt,
        audio=source("audio", args.audio_file, check_audio) if args.audio_file else None,
        negative_prompt=args.negative_prompt,
        resolution=args.resolution,
        duration=args.duration,
        shot_type=args.shot_type,
        enable_prompt_expansion=args.prompt_expansion,
        enable_audio=args.audio,
        seed=args.seed,
    )
    return request, uploads


async def generate(
    args: argparse.Namespace,
    settings: Settings,
    request: GenerationRequest,
    uploads: dict[str, MediaFile],
) -> int:
    """Make one video, charged to the local "cli" budget, with a live progress line.

    The price is reserved before anything is uploaded or submitted.
    """
    setup_logging("WARNING", _secrets(settings))
    poll = PollPolicy(first_delay_s=args.poll_seconds, timeout_s=settings.job_timeout_s)
    services = await Services.open(settings, Tuning(poll=poll, webhooks=False))
    try:
        balance = await services.storage.member_balance(CLI_GUILD_ID, CLI_OWNER.member_id)
        print(
            f"Price {format_usd(request.price_micro)}; "
            f"the cli budget has {format_usd(balance.available)} left."
        )
        await finish_earlier_jobs(services, args.output.parent)
        terminal = TerminalDelivery(args.output)
        job = await services.runner.reserve(CLI_OWNER, request)
        services.runner.run(job, terminal, uploads)
        await services.runner.wait(job.id)
        return 0 if terminal.succeeded else 1
    except BudgetExceeded as exc:
        resets = exc.balance.resets_at
        when = f"; it resets {resets:%Y-%m-%d %H:%M} UTC" if resets else ""
        print(f"wanbot: not enough budget: {exc}{when}", file=sys.stderr)
        return 3
    except BudgetError as exc:
        print(f"wanbot: {exc}", file=sys.stderr)
        return 3
    finally:
        await services.close()


async def finish_earlier_jobs(services: Services, folder: Path) -> None:
    """Deliver CLI jobs that an interrupted run left unfinished, to wanbot-job-N.mp4 files.

    Only the jobs no live process holds the lease of: several runs on one database each finish
    different ones, and never one that another run is still making."""
    count = await services.runner.resume(
        lambda job: TerminalDelivery(folder / f"wanbot-job-{job.id}.mp4"),
        include=lambda job: job.guild_id == CLI_GUILD_ID,
    )
    if count:
        print(f"Finishing {count} job(s) that an earlier run left unfinished…")
        await services.runner.wait_all()


class TerminalDelivery:
    """Shows progress on one rewritten terminal line and saves the video to a file."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.succeeded = False

    async def progress(self, job: JobRecord, progress: Progress) -> None:
        print(f"\r{progress.stage:<22} {progress.elapsed_s:6.0f}s", end="", file=sys.stderr)

    async def attach_limit(self, job: JobRecord) -> int:
        return MAX_VIDEO_BYTES  # a local file has no upload limit: only the runner's cap

    async def post_video(self, job: JobRecord, video: Video) -> Posted:
        print(file=sys.stderr)
        if video.path is None:
            print(f"The video is too large to save here; it is at {video.url}")
        else:
            # Moved whole or not at all, so a file that exists is a finished delivery: renamed
            # if on the same file system as the runner's folder, else copied beside the output
            # first (in a thread: that is a full copy).
            partial = self.output.with_name(self.output.name + ".part")
            await asyncio.to_thread(shutil.move, video.path, partial)
            partial.replace(self.output)
            print(f"Saved {self.output} ({video.size:,} bytes) in {video.elapsed_s:.0f}s.")
        return Posted(None, None)

    async def find_post(self, job: JobRecord) -> Posted | None:
        return Posted(None, None) if self.output.exists() else None

    async def delivered(self, job: JobRecord, video: Video) -> None:
        print(f"Charged {format_usd(job.price_micro)}.")
        self.succeeded = True

    async def failed(self, job: JobRecord, failure: JobFailure) -> None:
        print(file=sys.stderr)
        print(
            f"Failed: {failure.message} (refunded {format_usd(job.price_micro)})", file=sys.stderr
        )

    async def undecided(self, job: JobRecord, candidate_ids: list[str]) -> None:
        print(
            f"\nWaveSpeed did not answer the submission and {len(candidate_ids)} of its tasks "
            f"could be it ({', '.join(candidate_ids)}); the price stays held meanwhile.",
            file=sys.stderr,
        )


def _secrets(settings: Settings) -> list[str]:
    return [s.get_secret_value() for s in (settings.discord_token, settings.wavespeed_api_key) if s]
