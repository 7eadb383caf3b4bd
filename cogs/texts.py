"""What members read: status lines, results, refusals. Pure text, no Discord objects."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from datetime import datetime

from bot.domain.access import Denial, VideoAccess
from bot.domain.budget import Balance, BudgetExceeded, TooManyJobs
from bot.domain.job import JobRecord, Stage
from bot.domain.lifecycle import FailureKind
from bot.domain.outcomes import JobFailure
from bot.domain.pricing import format_usd
from bot.domain.request import RANDOM_SEED, GenerationRequest

PROMPT_PREVIEW_CHARS = 300
# Characters Discord reads as markdown (emphasis, code, spoiler, quote, heading, list, masked
# link, escape) or as the start of a mention, channel, role, emoji or timestamp.
_MARKDOWN = re.compile(r"[\\*_~`|>#\-@<:\[\]]")


def quote_prompt(prompt: str) -> str:
    """The prompt as a Discord block quote, shortened if long, that cannot ping or format.

    Markdown characters are backslash-escaped, so they show as typed; `@` and `<` are escaped too,
    which keeps `@everyone` and `<@id>` mentions as plain text. Every line keeps the `> ` prefix.
    """
    text = prompt if len(prompt) <= PROMPT_PREVIEW_CHARS else prompt[:PROMPT_PREVIEW_CHARS] + "…"
    lines = text.splitlines() or [""]
    return "\n".join("> " + _MARKDOWN.sub(r"\\\g<0>", line) for line in lines)


def describe_request(request: GenerationRequest) -> str:
    """One line with the options that matter: resolution · duration · sound · shot · seed."""
    sound = "custom audio" if request.audio else ("audio" if request.enable_audio else "silent")
    seed = "random seed" if request.seed == RANDOM_SEED else f"seed {request.seed}"
    parts = [request.resolution, f"{request.duration} s", sound]
    if request.shot_type == "multi":
        parts.append("multi-shot")
    parts.append(seed)
    return " · ".join(parts)


def duration_text(seconds: float) -> str:
    """0:42, 12:05."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def relative_time(moment: datetime | None) -> str:
    """A Discord timestamp that each reader sees in their own time zone, or 'never'."""
    return f"<t:{int(moment.timestamp())}:R>" if moment else "never (no reset period)"


def status_text(
    request: GenerationRequest, price: int, balance: Balance, stage: Stage, elapsed: float
) -> str:
    """The status message shown while a video is being made."""
    return (
        f"⏳ **{stage}** — {duration_text(elapsed)}\n{quote_prompt(request.prompt)}\n"
        f"{describe_request(request)} · **{format_usd(price)}** · "
        f"you have {format_usd(max(balance.available, 0))} left this period"
    )


def result_text(
    member_id: int, request: GenerationRequest, price: int, elapsed: float, note: str = ""
) -> str:
    """The message that carries a finished video."""
    line = f"<@{member_id}> your video is ready — made in {duration_text(elapsed)}"
    details = f"{describe_request(request)} · {format_usd(price)}"
    return f"{line}\n{quote_prompt(request.prompt)}\n{details}" + (f"\n{note}" if note else "")


def failure_text(member_id: int, failure: JobFailure, price: int, refunded: bool = True) -> str:
    """The message for a job that ended without a video: refunded, unless an older wanbot
    (before the lifecycle rules) had already charged it."""
    money = f"💸 {format_usd(price)} refunded." if refunded else f"{format_usd(price)} was charged."
    return f"❌ <@{member_id}> no video this time. {failure.message}\n{money}"


def withheld_notice(member_id: int) -> str:
    """The public note where a video flagged NSFW was not posted."""
    return (
        f"🔞 <@{member_id}> WaveSpeed flagged your video as NSFW and this channel is not "
        "age-restricted, so it is not posted here; you got it privately."
    )


def refusal_text(error: BudgetExceeded | TooManyJobs) -> str:
    """Why a request was refused before anything was spent."""
    if isinstance(error, TooManyJobs):
        return (
            f"You already have {error.limit} video(s) in progress. "
            "Wait for one to finish, then try again."
        )
    whose = "you have" if error.scope == "member" else "this server has"
    return (
        f"This video costs **{format_usd(error.price)}**, but {whose} only "
        f"{format_usd(max(error.balance.available, 0))} left this period. "
        f"The budget resets {relative_time(error.balance.resets_at)}."
    )


ADMIN_ADVICE = {
    FailureKind.OUT_OF_CREDIT: "The WaveSpeed account is out of credit: top it up at wavespeed.ai.",
    FailureKind.BAD_API_KEY: "WaveSpeed refused the API key: check WAVESPEED_API_KEY and restart.",
    FailureKind.HOLD_EXPIRED: (
        "WaveSpeed never answered a submission, and its task list could not settle whether the "
        "task exists before the hold ran out."
    ),
    FailureKind.EMPTY_RESULT: "WaveSpeed reported the task completed but listed no video.",
    FailureKind.OUTPUT_UNREACHABLE: "WaveSpeed's video link could not be downloaded.",
    FailureKind.UNDELIVERABLE: "I could not post the video to the member anywhere.",
}


def admin_notice(failure: JobFailure, job: JobRecord) -> str:
    """A message for the server's log channel about a failure an admin should know of."""
    advice = ADMIN_ADVICE.get(failure.kind, failure.message)
    lines = [f"⚠️ **wanbot needs an admin.** {advice}"]
    if job.prediction_id:
        lines.append(f"WaveSpeed prediction id (to raise with WaveSpeed): `{job.prediction_id}`")
    if failure.kind is FailureKind.UNDELIVERABLE and job.output_url:
        lines.append(f"The video, for <@{job.member_id}> (link expires): {job.output_url}")
    lines.append(f"Job {job.id}; {format_usd(job.price_micro)} was refunded to the member.")
    return "\n".join(lines)


def undecided_notice(job: JobRecord, candidate_ids: list[str]) -> str:
    """A message for the log channel: an unanswered submit matches several WaveSpeed tasks."""
    ids = ", ".join(f"`{task_id}`" for task_id in candidate_ids)
    return (
        f"⚠️ **wanbot needs an admin.** WaveSpeed never answered the submission of job {job.id} "
        f"({format_usd(job.price_micro)} held), and {len(candidate_ids)} tasks created at that "
        f"moment could be it: {ids}. The price stays held and is refunded if this is still "
        f"unclear at {relative_time(job.hold_until)}."
    )


def join_words(words: Iterable[str], conjunction: str) -> str:
    """Words in prose: `a`, `a or b`, `a, b or c`."""
    items = list(words)
    if len(items) < 2:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def channel_mentions(ids: Iterable[int], conjunction: str, gone: Collection[int] = ()) -> str:
    """Channel mentions; those in `gone` (deleted, or archived threads) are marked."""
    return join_words((f"<#{i}>" + (" (not found)" if i in gone else "") for i in ids), conjunction)


def role_mentions(ids: Iterable[int], conjunction: str, gone: Collection[int] = ()) -> str:
    """Role mentions; those in `gone` (deleted) are marked."""
    return join_words(
        (f"<@&{i}>" + (" (not found)" if i in gone else "") for i in ids), conjunction
    )


def access_refusal(denial: Denial) -> str:
    """Why /video or a button was refused here, naming where and who may make videos."""
    channels = channel_mentions(denial.access.channel_ids, "or")
    roles = role_mentions(denial.access.role_ids, "or")
    where = f"Videos can be made only in {channels} (threads in them count too)"
    if denial.wrong_channel and denial.missing_role:
        return f"🚫 {where}, by members with the {roles} role."
    if denial.wrong_channel:
        return f"🚫 {where}."
    return (
        f"🚫 Making videos on this server needs the {roles} role. "
        "Ask a server admin if you should have it."
    )


def access_summary(access: VideoAccess, gone: Collection[int] = ()) -> str:
    """Two lines for the settings reply: where /video works and who may use it."""
    where = (
        f"only in {channel_mentions(access.channel_ids, 'and', gone)} (and threads in them)"
        if access.channel_ids
        else "in **any channel**"
    )
    who = (
        f"Only members with the {role_mentions(access.role_ids, 'or', gone)} role"
        if access.role_ids
        else "**Every member**"
    )
    return f"Videos can be made {where}.\n{who} can make videos."
