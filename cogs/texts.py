"""What members read: status lines, results, refusals. Pure text, no Discord objects."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from datetime import datetime

from bot.domain.access import Denial, VideoAccess
from bot.domain.budget import Balance, BudgetExceeded, TooManyJobs
from bot.domain.job import JobRecord, Stage
from bot.domain.lifecycle import FailureKind, JobState, Settlement
from bot.domain.outcomes import JobFailure
from bot.domain.pricing import format_usd
from bot.domain.request import RANDOM_SEED, GenerationRequest
from bot.domain.variations import Variation, next_duration

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


def sound_label(custom_audio: bool, enable_audio: bool) -> str:
    """How a video sounds: custom audio, audio (generated) or silent."""
    return "custom audio" if custom_audio else ("audio" if enable_audio else "silent")


def describe_request(request: GenerationRequest) -> str:
    """One line with the options that matter: resolution · duration · sound · shot · seed."""
    sound = sound_label(request.audio is not None, request.enable_audio)
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
    request: GenerationRequest,
    price: int,
    balance: Balance,
    stage: Stage,
    elapsed: float,
    *,
    ahead: int | None = None,
    eta_s: float | None = None,
) -> str:
    """The status message shown while a video is being made: with its place in the local
    queue while it waits there, and an estimate of the time left when one is known."""
    detail = duration_text(elapsed)
    if ahead is not None:
        detail = f"{queue_place_text(ahead)} · {detail}"
    if eta_s is not None:
        detail = f"{detail} · {eta_text(eta_s)}"
    return (
        f"⏳ **{stage}** — {detail}\n{quote_prompt(request.prompt)}\n"
        f"{describe_request(request)} · **{format_usd(price)}** · "
        f"you have {format_usd(max(balance.available, 0))} left this period"
    )


def queue_place_text(ahead: int) -> str:
    """Where a job waits in the local queue."""
    if ahead == 0:
        return "yours is next"
    return f"{ahead} video{'s' if ahead != 1 else ''} ahead of yours"


def eta_text(seconds: float) -> str:
    """A rough time left: to 5 s under a minute, to 10 s under five, else to the minute."""
    if seconds < 3:
        return "any moment now"
    if seconds < 60:
        return f"about {max(5, round(seconds / 5) * 5)} s left"
    if seconds < 300:
        rounded = round(seconds / 10) * 10
        return f"about {duration_text(rounded)} left"
    return f"about {round(seconds / 60)} min left"


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


# --- confirm before paying, and the variations of a result ----------------------------------
VARIATION_BUTTONS = {  # label and emoji of each variation's button
    Variation.HD: ("1080p", "🖥️"),
    Variation.AUDIO: ("With audio", "🔊"),
    Variation.SILENT: ("Silent", "🔇"),
    Variation.LONGER: ("Longer", "⏩"),
}
CONFIRM_EXPIRED = "⌛ This price confirmation expired; nothing was reserved or charged."
CONFIRM_CANCELLED = "Cancelled — nothing was reserved or charged."
CONFIRM_STARTING = "✅ Confirmed — starting…"
VARIATION_GONE = "That change no longer applies to this video."


def variation_button(variation: Variation, request: GenerationRequest) -> str:
    """The label of a variation's button under a video made from `request`: Longer says how
    long the new one would be."""
    label = VARIATION_BUTTONS[variation][0]
    if variation is Variation.LONGER:
        label = f"{label} ({next_duration(request.duration)} s)"
    return label


def variation_title(variation: Variation, varied: GenerationRequest) -> str:
    """What a variation makes, for its price confirmation: "The 1080p version"."""
    match variation:
        case Variation.HD:
            return "The 1080p version"
        case Variation.AUDIO:
            return "The version with audio"
        case Variation.SILENT:
            return "The silent version"
        case Variation.LONGER:
            return f"The {varied.duration} s version"


def confirm_text(
    request: GenerationRequest, price: int, balance: Balance, title: str | None = None
) -> str:
    """The private prompt before paying: the exact price, what the member would have left after
    it (or that it would not fit), and that nothing happens before Confirm."""
    what = f"{title} of this video" if title else "This video"
    available = balance.available
    after = (
        f"After it you would have **{format_usd(available - price)}** left this period."
        if price <= available
        else f"⚠️ You have only {format_usd(max(available, 0))} left this period, so it would "
        f"not fit. The budget resets {relative_time(balance.resets_at)}."
    )
    return (
        f"💵 {what} costs **{format_usd(price)}**.\n{quote_prompt(request.prompt)}\n"
        f"{describe_request(request)}\n{after}\n"
        "Confirm within a minute; nothing is reserved or charged before you do."
    )


def confirm_above_summary(confirm_above: int | None) -> str:
    """The settings line for confirm_above."""
    if confirm_above is None:
        first = "Videos start without asking members to confirm their price (confirm_above: off)"
    else:
        first = f"Members confirm the price of videos over **{format_usd(confirm_above)}** first"
    return f"{first}; variations of a result always show their price first."


def price_text(
    resolution: str, duration: int, sound: str, price: int, member: Balance, server: Balance
) -> str:
    """/price's answer: the exact price of such a video, what the member's and the server's
    budgets would have left after it, and which of the two limits the member — or that it
    would not fit."""
    member_binds = member.available <= server.available  # the smaller one runs out first
    limit = member if member_binds else server
    shape = " · ".join([resolution, f"{duration} s", sound])
    lines = [f"💵 A {shape} video costs **{format_usd(price)}**."]
    if price > limit.available:
        whose, other = (
            ("you have", f"the server has {format_usd(max(server.available, 0))}")
            if member_binds
            else ("this server has", f"you have {format_usd(max(member.available, 0))}")
        )
        lines.append(
            f"⚠️ It would not fit: {whose} only {format_usd(max(limit.available, 0))} left this "
            f"period ({other}). The budget resets {relative_time(limit.resets_at)}."
        )
        return "\n".join(lines)
    lines.append(
        f"After it you would have **{format_usd(member.available - price)}** left this period, "
        f"and the server {format_usd(server.available - price)}."
    )
    lines.append(
        "Your own budget is the one that limits you."
        if member_binds
        else "The server's budget is the one that limits you: it has less left than yours."
    )
    return "\n".join(lines)


def member_label(member_id: int, name: str | None) -> str:
    """A member as named on a chart: their display name, or `member <id>` when unknown."""
    return name if name else f"member {member_id}"


NO_CHART = "Nothing has been charged this period yet, so there is no chart."


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


# --- /history -------------------------------------------------------------------------------------
# An embed's description holds at most 4096 characters (Discord's embed limits:
# https://discord.com/developers/docs/resources/message#embed-object-embed-limits).
EMBED_DESCRIPTION_MAX = 4096
# Prompt previews per row, longest first: a page takes the longest that fits in one embed.
HISTORY_PROMPT_CHARS = (120, 60, 20)

REFUND_REASONS = {
    FailureKind.INTERRUPTED: "the bot restarted before sending it",
    FailureKind.CANCELLED: "cancelled",
    FailureKind.BAD_INPUT: "WaveSpeed refused the inputs",
    FailureKind.MODERATION: "WaveSpeed's content filter",
    FailureKind.GENERATION_FAILED: "the generation failed at WaveSpeed",
    FailureKind.WAVESPEED_DOWN: "WaveSpeed was not answering",
    FailureKind.OUT_OF_CREDIT: "the WaveSpeed account was out of credit",
    FailureKind.BAD_API_KEY: "WaveSpeed refused the bot's API key",
    FailureKind.NOT_SUBMITTED: "WaveSpeed never started it",
    FailureKind.HOLD_EXPIRED: "WaveSpeed never confirmed it",
    FailureKind.TIMED_OUT: "it took too long",
    FailureKind.EMPTY_RESULT: "WaveSpeed sent no video",
    FailureKind.OUTPUT_UNREACHABLE: "the video could not be downloaded",
    FailureKind.UNDELIVERABLE: "the video could not be posted",
}

HISTORY_REFUSAL = (
    "🔒 You can look at your own videos with `/history`; other members' histories are for "
    "admins (Manage Server)."
)
USE_AGAIN_REFUSAL = "🔒 Only the member who made this video, or an admin, can use it again."
USE_AGAIN_HINT = (
    "🔁 #n makes that video again (same prompt, image, options and seed), charged to you"
)


def jump_link(job: JobRecord) -> str | None:
    """A link to the message that carries the job's video, if one was posted. A video posted
    elsewhere than the channel it was asked in went by direct message (cogs.delivery)."""
    if job.result_channel_id is None or job.result_message_id is None:
        return None
    place = job.guild_id if job.result_channel_id == job.channel_id else "@me"
    return f"https://discord.com/channels/{place}/{job.result_channel_id}/{job.result_message_id}"


def history_outcome(job: JobRecord) -> str:
    """How a job ended: delivered (with a link to the video), refunded and why, or in progress."""
    if job.state is JobState.DELIVERED:
        link = jump_link(job)
        return "✅ delivered" + (f" · [jump to the video]({link})" if link else "")
    if job.state in (JobState.FAILED, JobState.CLOSED):
        kind = job.failure_kind
        reason = REFUND_REASONS.get(kind, "no video") if kind else "no video"
        if job.settlement is Settlement.CHARGE:  # charged by a wanbot before the lifecycle rules
            return f"❌ failed: {reason} (charged)"
        return f"💸 refunded: {reason}"
    return "⏳ in progress"


def history_row(job: JobRecord, prompt_chars: int) -> str:
    """Three lines about one job: number, when and outcome; the prompt, on one line and quoted
    safely; its shape, seed and price."""
    request = GenerationRequest.model_validate_json(job.request_json)
    prompt = " ".join(request.prompt.split())  # one line per row, whatever the prompt's breaks
    if len(prompt) > prompt_chars:
        prompt = prompt[:prompt_chars] + "…"
    sound = sound_label(request.audio is not None, request.enable_audio)
    shot = "multi-shot" if request.shot_type == "multi" else "single shot"
    seed = "random seed" if request.seed == RANDOM_SEED else f"seed {request.seed}"
    price = format_usd(job.price_micro)
    shape = " · ".join([request.resolution, f"{request.duration} s", sound, shot, seed, price])
    return (
        f"**#{job.id}** · {relative_time(job.created_at)} · {history_outcome(job)}\n"
        f"{quote_prompt(prompt)}\n{shape}"
    )


def history_page(
    member_id: int, own: bool, jobs: list[JobRecord], page: int, pages: int, total: int
) -> tuple[str, str]:
    """/history's page: the embed's description (a heading, then a row per job, the longest
    prompt previews that fit) and its footer."""
    whose = "Your" if own else f"<@{member_id}>'s"
    heading = f"**{whose} videos on this server**"
    if not jobs:
        who = "You have" if own else f"<@{member_id}> has"
        return f"{heading}\n{who} not made any videos here yet.", ""
    for chars in HISTORY_PROMPT_CHARS:
        description = "\n\n".join([heading, *(history_row(job, chars) for job in jobs)])
        if len(description) <= EMBED_DESCRIPTION_MAX:
            break
    videos = f"{total} video{'s' if total != 1 else ''}"
    return description, f"Page {page} of {pages} · {videos}\n{USE_AGAIN_HINT}"
