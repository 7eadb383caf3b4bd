"""What members read: status lines, results, refusals. Pure text, no Discord objects.

Every sentence comes from the catalogue of the reader's language (bot/i18n.py,
bot/locales/*.json); each function takes that language as `lang`, English by default.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime

from bot.domain.access import Denial, VideoAccess
from bot.domain.alerts import BalanceReading
from bot.domain.budget import AllowanceSource, Balance, BudgetExceeded, RoleTier, TooManyJobs
from bot.domain.job import JobRecord, Stage
from bot.domain.lifecycle import FailureKind, JobState, Settlement
from bot.domain.outcomes import JobFailure, wording
from bot.domain.pricing import format_usd
from bot.domain.request import RANDOM_SEED, GenerationRequest
from bot.domain.variations import Variation, next_duration
from bot.i18n import EN, Language, say, t, tn

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


def sound_label(custom_audio: bool, enable_audio: bool, *, lang: Language = EN) -> str:
    """How a video sounds: custom audio, audio (generated) or silent."""
    sound = "custom" if custom_audio else ("audio" if enable_audio else "silent")
    return t(lang, f"sound.{sound}")


def seed_label(seed: int, *, lang: Language = EN) -> str:
    """`seed 42`, or `random seed`."""
    return t(lang, "shape.random_seed") if seed == RANDOM_SEED else t(lang, "shape.seed", seed=seed)


def describe_request(request: GenerationRequest, *, lang: Language = EN) -> str:
    """One line with the options that matter: resolution · duration · sound · shot · seed."""
    sound = sound_label(request.audio is not None, request.enable_audio, lang=lang)
    parts = [request.resolution, t(lang, "shape.seconds", seconds=request.duration), sound]
    if request.shot_type == "multi":
        parts.append(t(lang, "shape.multi_shot"))
    parts.append(seed_label(request.seed, lang=lang))
    return " · ".join(parts)


def duration_text(seconds: float) -> str:
    """0:42, 12:05."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def relative_time(moment: datetime | None, *, lang: Language = EN) -> str:
    """A Discord timestamp that each reader sees in their own time zone and client language,
    or 'never'."""
    return f"<t:{int(moment.timestamp())}:R>" if moment else t(lang, "time.never")


def status_text(
    request: GenerationRequest,
    price: int,
    balance: Balance,
    stage: Stage,
    elapsed: float,
    *,
    ahead: int | None = None,
    eta_s: float | None = None,
    lang: Language = EN,
) -> str:
    """The status message shown while a video is being made: with its place in the local
    queue while it waits there, and an estimate of the time left when one is known."""
    detail = duration_text(elapsed)
    if ahead is not None:
        detail = f"{queue_place_text(ahead, lang=lang)} · {detail}"
    if eta_s is not None:
        detail = f"{detail} · {eta_text(eta_s, lang=lang)}"
    return t(
        lang,
        "status.text",
        stage=stage_label(stage, lang=lang),
        detail=detail,
        prompt=quote_prompt(request.prompt),
        shape=describe_request(request, lang=lang),
        price=format_usd(price),
        left=format_usd(max(balance.available, 0)),
    )


def stage_label(stage: Stage, *, lang: Language = EN) -> str:
    """What the job is doing: "uploading to WaveSpeed"."""
    return t(lang, f"stage.{stage.name.lower()}")


def queue_place_text(ahead: int, *, lang: Language = EN) -> str:
    """Where a job waits in the local queue."""
    if ahead == 0:
        return t(lang, "queue.next")
    return tn(lang, "queue.ahead", ahead)


def eta_text(seconds: float, *, lang: Language = EN) -> str:
    """A rough time left: to 5 s under a minute, to 10 s under five, else to the minute."""
    if seconds < 3:
        return t(lang, "eta.now")
    if seconds < 60:
        return t(lang, "eta.seconds", seconds=max(5, round(seconds / 5) * 5))
    if seconds < 300:
        rounded = round(seconds / 10) * 10
        return t(lang, "eta.clock", time=duration_text(rounded))
    return t(lang, "eta.minutes", minutes=round(seconds / 60))


def result_text(
    member_id: int,
    request: GenerationRequest,
    price: int,
    elapsed: float,
    note: str = "",
    *,
    lang: Language = EN,
) -> str:
    """The message that carries a finished video."""
    text = t(
        lang,
        "result.ready",
        member_id=member_id,
        elapsed=duration_text(elapsed),
        prompt=quote_prompt(request.prompt),
        shape=describe_request(request, lang=lang),
        price=format_usd(price),
    )
    return text + (f"\n{note}" if note else "")


def failure_reason(failure: JobFailure, *, lang: Language = EN) -> str:
    """Why a job ended without a video, in `lang` when its sentence is known; as stored (in
    English, or WaveSpeed's words) otherwise."""
    sentence = wording(failure)
    return failure.message if sentence is None else say(lang, sentence)


def failure_text(
    member_id: int, failure: JobFailure, price: int, refunded: bool = True, *, lang: Language = EN
) -> str:
    """The message for a job that ended without a video: refunded, unless an older wanbot
    (before the lifecycle rules) had already charged it."""
    money = t(lang, "failure.refunded" if refunded else "failure.charged", price=format_usd(price))
    reason = failure_reason(failure, lang=lang)
    return t(lang, "failure.text", member_id=member_id, reason=reason, money=money)


def withheld_notice(member_id: int, *, lang: Language = EN) -> str:
    """The public note where a video flagged NSFW was not posted."""
    return t(lang, "result.withheld", member_id=member_id)


def refusal_text(error: BudgetExceeded | TooManyJobs, *, lang: Language = EN) -> str:
    """Why a request was refused before anything was spent."""
    if isinstance(error, TooManyJobs):
        return t(lang, "refusal.too_many_jobs", limit=error.limit)
    return t(
        lang,
        f"refusal.budget.{'member' if error.scope == 'member' else 'server'}",
        price=format_usd(error.price),
        left=format_usd(max(error.balance.available, 0)),
        resets=relative_time(error.balance.resets_at, lang=lang),
    )


# --- confirm before paying, and the variations of a result ----------------------------------
VARIATION_EMOJI = {
    Variation.HD: "🖥️",
    Variation.AUDIO: "🔊",
    Variation.SILENT: "🔇",
    Variation.LONGER: "⏩",
}


def variation_button(
    variation: Variation, request: GenerationRequest, *, lang: Language = EN
) -> str:
    """The label of a variation's button under a video made from `request`: Longer says how
    long the new one would be."""
    return t(lang, f"variation.{variation.value}", seconds=next_duration(request.duration))


def variation_title(variation: Variation, varied: GenerationRequest, *, lang: Language = EN) -> str:
    """What a variation makes, for its price confirmation: "The 1080p version"."""
    return t(lang, f"variation.title.{variation.value}", seconds=varied.duration)


def confirm_text(
    request: GenerationRequest,
    price: int,
    balance: Balance,
    title: str | None = None,
    *,
    lang: Language = EN,
) -> str:
    """The private prompt before paying: the exact price, what the member would have left after
    it (or that it would not fit), and that nothing happens before Confirm."""
    cost = (
        t(lang, "confirm.price_of", title=title, price=format_usd(price))
        if title
        else t(lang, "confirm.price", price=format_usd(price))
    )
    available = balance.available
    after = (
        t(lang, "confirm.after", left=format_usd(available - price))
        if price <= available
        else t(
            lang,
            "confirm.short",
            left=format_usd(max(available, 0)),
            resets=relative_time(balance.resets_at, lang=lang),
        )
    )
    shape = describe_request(request, lang=lang)
    hint = t(lang, "confirm.hint")
    return f"{cost}\n{quote_prompt(request.prompt)}\n{shape}\n{after}\n{hint}"


def confirm_above_summary(confirm_above: int | None, *, lang: Language = EN) -> str:
    """The settings line for confirm_above."""
    if confirm_above is None:
        return t(lang, "settings.confirm.off")
    return t(lang, "settings.confirm.above", price=format_usd(confirm_above))


def price_text(
    resolution: str,
    duration: int,
    sound: str,
    price: int,
    member: Balance,
    server: Balance,
    *,
    lang: Language = EN,
) -> str:
    """/price's answer: the exact price of such a video, what the member's and the server's
    budgets would have left after it, and which of the two limits the member — or that it
    would not fit."""
    member_binds = member.available <= server.available  # the smaller one runs out first
    limit, other = (member, server) if member_binds else (server, member)
    whose = "member" if member_binds else "server"
    shape = " · ".join([resolution, t(lang, "shape.seconds", seconds=duration), sound])
    lines = [t(lang, "price.shape", shape=shape, price=format_usd(price))]
    if price > limit.available:
        short = t(
            lang,
            f"price.short.{whose}",
            left=format_usd(max(limit.available, 0)),
            other=format_usd(max(other.available, 0)),
            resets=relative_time(limit.resets_at, lang=lang),
        )
        return "\n".join([*lines, short])
    after = t(
        lang,
        "price.after",
        left=format_usd(member.available - price),
        server_left=format_usd(server.available - price),
    )
    return "\n".join([*lines, after, t(lang, f"price.limit.{whose}")])


def member_label(member_id: int, name: str | None, *, lang: Language = EN) -> str:
    """A member as named on a chart: their display name, or `member <id>` when unknown."""
    return name if name else t(lang, "chart.member", member_id=member_id)


def admin_notice(failure: JobFailure, job: JobRecord, *, lang: Language = EN) -> str:
    """A message for the server's log channel about a failure an admin should know of."""
    advice_key = f"admin.advice.{failure.kind.value}"
    advice = (
        t(lang, advice_key)
        if failure.tells_admins
        else failure_reason(failure, lang=lang)  # told here only because the member was not
    )
    lines = [t(lang, "admin.needed", advice=advice)]
    if job.prediction_id:
        lines.append(t(lang, "admin.prediction", prediction_id=job.prediction_id))
    if failure.kind is FailureKind.UNDELIVERABLE and job.output_url:
        lines.append(t(lang, "admin.video_link", member_id=job.member_id, url=job.output_url))
    lines.append(t(lang, "admin.refunded", job_id=job.id, price=format_usd(job.price_micro)))
    return "\n".join(lines)


def undecided_notice(job: JobRecord, candidate_ids: list[str], *, lang: Language = EN) -> str:
    """A message for the log channel: an unanswered submit matches several WaveSpeed tasks."""
    return t(
        lang,
        "admin.undecided",
        job_id=job.id,
        price=format_usd(job.price_micro),
        count=len(candidate_ids),
        ids=", ".join(f"`{task_id}`" for task_id in candidate_ids),
        when=relative_time(job.hold_until, lang=lang),
    )


def join_words(words: Iterable[str], conjunction: str, *, lang: Language = EN) -> str:
    """Words in prose: `a`, `a or b`, `a, b or c`; `conjunction` is `or` or `and`."""
    items = list(words)
    if len(items) < 2:
        return "".join(items)
    return f"{', '.join(items[:-1])} {t(lang, f'words.{conjunction}')} {items[-1]}"


def _mentions(
    template: str,
    ids: Iterable[int],
    conjunction: str,
    gone: Collection[int],
    lang: Language,
) -> str:
    """Mentions made with `template` (`<#{}>`, `<@&{}>`); those in `gone` are marked."""
    marked = (
        t(lang, "access.not_found", mention=template.format(i)) if i in gone else template.format(i)
        for i in ids
    )
    return join_words(marked, conjunction, lang=lang)


def channel_mentions(
    ids: Iterable[int], conjunction: str, gone: Collection[int] = (), *, lang: Language = EN
) -> str:
    """Channel mentions; those in `gone` (deleted, or archived threads) are marked."""
    return _mentions("<#{}>", ids, conjunction, gone, lang)


def role_mentions(
    ids: Iterable[int], conjunction: str, gone: Collection[int] = (), *, lang: Language = EN
) -> str:
    """Role mentions; those in `gone` (deleted) are marked."""
    return _mentions("<@&{}>", ids, conjunction, gone, lang)


def access_refusal(denial: Denial, *, lang: Language = EN) -> str:
    """Why /video or a button was refused here, naming where and who may make videos."""
    channels = channel_mentions(denial.access.channel_ids, "or", lang=lang)
    roles = role_mentions(denial.access.role_ids, "or", lang=lang)
    if denial.wrong_channel and denial.missing_role:
        return t(lang, "access.denied.both", channels=channels, roles=roles)
    if denial.wrong_channel:
        return t(lang, "access.denied.channel", channels=channels)
    return t(lang, "access.denied.role", roles=roles)


def access_summary(access: VideoAccess, gone: Collection[int] = (), *, lang: Language = EN) -> str:
    """Two lines for the settings reply: where /video works and who may use it."""
    where = (
        t(
            lang,
            "access.summary.channels",
            channels=channel_mentions(access.channel_ids, "and", gone, lang=lang),
        )
        if access.channel_ids
        else t(lang, "access.summary.anywhere")
    )
    who = (
        t(
            lang,
            "access.summary.roles",
            roles=role_mentions(access.role_ids, "or", gone, lang=lang),
        )
        if access.role_ids
        else t(lang, "access.summary.everyone")
    )
    return f"{where}\n{who}"


# --- /history -------------------------------------------------------------------------------------
# An embed's description holds at most 4096 characters (Discord's embed limits:
# https://discord.com/developers/docs/resources/message#embed-object-embed-limits).
EMBED_DESCRIPTION_MAX = 4096
# Prompt previews per row, longest first: a page takes the longest that fits in one embed.
HISTORY_PROMPT_CHARS = (120, 60, 20)


def jump_link(job: JobRecord) -> str | None:
    """A link to the message that carries the job's video, if one was posted. A video posted
    elsewhere than the channel it was asked in went by direct message (cogs.delivery)."""
    if job.result_channel_id is None or job.result_message_id is None:
        return None
    place = job.guild_id if job.result_channel_id == job.channel_id else "@me"
    return f"https://discord.com/channels/{place}/{job.result_channel_id}/{job.result_message_id}"


def history_outcome(job: JobRecord, *, lang: Language = EN) -> str:
    """How a job ended: delivered (with a link to the video), refunded and why, or in progress."""
    if job.state is JobState.DELIVERED:
        link = jump_link(job)
        return (
            t(lang, "history.delivered_link", link=link) if link else t(lang, "history.delivered")
        )
    if job.state in (JobState.FAILED, JobState.CLOSED):
        kind = job.failure_kind
        reason = t(lang, f"history.reason.{kind.value}" if kind else "history.no_video")
        if job.settlement is Settlement.CHARGE:  # charged by a wanbot before the lifecycle rules
            return t(lang, "history.failed_charged", reason=reason)
        return t(lang, "history.refunded", reason=reason)
    return t(lang, "history.in_progress")


def history_row(job: JobRecord, prompt_chars: int, *, lang: Language = EN) -> str:
    """Three lines about one job: number, when and outcome; the prompt, on one line and quoted
    safely; its shape, seed and price."""
    request = GenerationRequest.model_validate_json(job.request_json)
    prompt = " ".join(request.prompt.split())  # one line per row, whatever the prompt's breaks
    if len(prompt) > prompt_chars:
        prompt = prompt[:prompt_chars] + "…"
    shape = " · ".join(
        [
            request.resolution,
            t(lang, "shape.seconds", seconds=request.duration),
            sound_label(request.audio is not None, request.enable_audio, lang=lang),
            t(lang, "shape.multi_shot" if request.shot_type == "multi" else "shape.single_shot"),
            seed_label(request.seed, lang=lang),
            format_usd(job.price_micro),
        ]
    )
    when = relative_time(job.created_at, lang=lang)
    return (
        f"**#{job.id}** · {when} · {history_outcome(job, lang=lang)}\n"
        f"{quote_prompt(prompt)}\n{shape}"
    )


def history_page(
    member_id: int,
    own: bool,
    jobs: list[JobRecord],
    page: int,
    pages: int,
    total: int,
    *,
    lang: Language = EN,
) -> tuple[str, str]:
    """/history's page: the embed's description (a heading, then a row per job, the longest
    prompt previews that fit) and its footer."""
    whose = "own" if own else "other"
    heading = t(lang, f"history.heading.{whose}", member_id=member_id)
    if not jobs:
        return f"{heading}\n{t(lang, f'history.empty.{whose}', member_id=member_id)}", ""
    for chars in HISTORY_PROMPT_CHARS:
        rows = (history_row(job, chars, lang=lang) for job in jobs)
        description = "\n\n".join([heading, *rows])
        if len(description) <= EMBED_DESCRIPTION_MAX:
            break
    place = t(lang, "history.page", page=page, pages=pages)
    videos = tn(lang, "history.videos", total)
    return description, f"{place} · {videos}\n{t(lang, 'history.use_again_hint')}"


# --- money alerts (cogs/alerts.py): spend thresholds, the WaveSpeed balance, out of credit -------
# Fixed sentences: t(lang, "alerts.no_credit_refusal"), t(lang, "alerts.low_balance_invalid").


def no_credit_notice(price: int, reading: BalanceReading, *, lang: Language = EN) -> str:
    """For the log channel: a request was refused because the account cannot pay for it."""
    return t(
        lang,
        "alerts.no_credit_notice",
        balance=format_usd(reading.micro),
        read=relative_time(reading.read_at, lang=lang),
        price=format_usd(price),
    )


def spend_alert(pct: int, balance: Balance, *, lang: Language = EN) -> str:
    """For the log channel: the server's spend this period reached `pct` % of its budget."""
    return t(
        lang,
        "alerts.spend.full" if pct >= 100 else "alerts.spend.partial",
        pct=pct,
        spent=format_usd(balance.spent),
        budget=format_usd(balance.allowance + balance.granted),
        resets=relative_time(balance.resets_at, lang=lang),
    )


def low_balance_warning(reading: BalanceReading, threshold: int, *, lang: Language = EN) -> str:
    """For the log channel: the account's balance fell below the server's low_balance_usd."""
    return t(
        lang,
        "alerts.low_balance",
        balance=format_usd(reading.micro),
        threshold=format_usd(threshold),
    )


def balance_summary(
    reading: BalanceReading | None, low_balance: int | None, *, lang: Language = EN
) -> str:
    """Two lines for the settings reply: the last known balance and the warning level."""
    if reading is None:
        known = t(lang, "alerts.balance.unknown")
    else:
        known = t(
            lang,
            "alerts.balance.known",
            balance=format_usd(reading.micro),
            read=relative_time(reading.read_at, lang=lang),
        )
    if low_balance is None:
        warn = t(lang, "alerts.warn.off")
    else:
        warn = t(lang, "alerts.warn.below", threshold=format_usd(low_balance))
    return f"{known}\n{warn}"


# --- role tiers (/budget roles), and why /budget show's allowance applies -------------------------
def allowance_reason(balance: Balance, own: bool, *, lang: Language = EN) -> str:
    """Which allowance applies to a member and why: their own, a role's tier, or the server's
    default (bot.domain.budget.effective_allowance). `own`: the reader is that member."""
    whose = "yours" if own else "theirs"
    match balance.source:
        case AllowanceSource.OWN:
            source = "own"
        case AllowanceSource.TIER:
            source = "tier"
        case _:
            source = "default"
    return t(lang, f"tiers.reason.{source}.{whose}", role_id=balance.tier_role_id)


def role_tier_set(role_id: int, amount: int, *, lang: Language = EN) -> str:
    """/budget roles set's answer."""
    return t(lang, "tiers.set", role_id=role_id, amount=format_usd(amount))


def role_tier_cleared(role_id: int, had_tier: bool, *, lang: Language = EN) -> str:
    """/budget roles clear's answer."""
    return t(lang, "tiers.cleared" if had_tier else "tiers.cleared.none", role_id=role_id)


# Refusing @everyone a tier: LocalizedError("tiers.everyone").


def role_tiers_list(tiers: Sequence[RoleTier], default: int, *, lang: Language = EN) -> str:
    """/budget roles list's answer: each tier with who set it when, largest first."""
    heading = t(lang, "tiers.heading", default=format_usd(default))
    if not tiers:
        return f"{heading}\n{t(lang, 'tiers.none')}"
    lines = [
        t(
            lang,
            "tiers.line",
            role_id=tier.role_id,
            amount=format_usd(tier.amount_micro),
            actor_id=tier.actor_id,
            when=relative_time(tier.set_at, lang=lang),
        )
        for tier in tiers
    ]
    return "\n".join([heading, *lines])
