"""REST and CDN routes of the fake Discord, with the checks the real API makes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import re
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.discord_models import (
    EPHEMERAL,
    IS_COMPONENTS_V2,
    LOADING,
    MENTION_KINDS,
    MIB,
    READ_MESSAGE_HISTORY,
    VIEW_CHANNEL,
    Channel,
    FakeInteraction,
    FakeMessage,
)

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord

log = logging.getLogger("tests.fakes.discord")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
API = "/api/v10"


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """JSON with content type exactly ``application/json`` (discord.py compares it verbatim)."""
    body = json.dumps(data).encode()
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


class DiscordError(Exception):
    """An error answer in Discord's shape: ``{"message": ..., "code": ...}`` (+ ``errors``)."""

    def __init__(
        self, status: int, code: int, message: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def response(self) -> web.Response:
        """The HTTP answer."""
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return json_response(body, self.status)


def status_text(status: int) -> str:
    """``"502: Bad Gateway"``; Cloudflare's own statuses (e.g. 524) have no standard phrase."""
    try:
        return f"{status}: {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status}: Error"


def unknown(what: str, code: int) -> DiscordError:
    """404 ``Unknown <what>``."""
    return DiscordError(404, code, f"Unknown {what}")


def form_error(path: str, code: str, message: str) -> DiscordError:
    """400 50035 Invalid Form Body with Discord's nested ``errors`` for ``path`` (dotted)."""
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path.split(".")):
        errors = {key: errors}
    return DiscordError(400, 50035, "Invalid Form Body", errors)


MISSING_PERMISSIONS = DiscordError(403, 50013, "Missing Permissions")
MISSING_ACCESS = DiscordError(403, 50001, "Missing Access")
#: Longest string nonce Discord accepts.
NONCE_MAX_LENGTH = 25
#: Most ids ``allowed_mentions.users`` / ``.roles`` may list.
ALLOWED_MENTIONS_MAX_IDS = 100
HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT = 50, 100


@dataclass(eq=False)
class Fault:
    """A misbehaviour injected for the next ``remaining`` requests matching ``method`` and
    ``pattern`` (see ``FakeDiscord.fail_next``, ``delay_next`` and ``hold_next``).

    ``hits`` counts the requests it caught so far; it is incremented when a request reaches the
    fault's pause point (after the normal processing when ``after_processing``), before any delay
    or hold, so ``await fake.wait_for_fault(fault)`` returns once a request is being held.
    """

    method: str
    pattern: re.Pattern[str]
    remaining: int
    status: int | None = None
    code: int = 0
    message: str = ""
    after_processing: bool = False
    delay_s: float = 0.0
    held: bool = False
    hits: int = 0
    _released: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def matches(self, method: str, path: str) -> bool:
        """Whether it still applies to this request (``path`` without ``/api/v10``)."""
        return (
            self.remaining > 0
            and self.method == method
            and self.pattern.fullmatch(path) is not None
        )

    def release(self) -> None:
        """Answer the requests it holds, and stop holding later ones."""
        self._released.set()

    @property
    def error(self) -> DiscordError | None:
        """The injected error answer, or None to give the normal answer."""
        if self.status is None:
            return None
        return DiscordError(self.status, self.code, self.message or status_text(self.status))

    async def pause(self, stopping: asyncio.Event) -> None:
        """Wait ``delay_s``, then, if held, until released; the fake stopping ends both waits."""
        if self.delay_s > 0:
            # Waiting on ``stopping`` rather than sleeping lets the server shut down promptly.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.delay_s)
        if self.held:
            await self._released.wait()


@dataclass
class Upload:
    """One ``files[n]`` part of a multipart request."""

    filename: str
    data: bytes

    @property
    def content_type(self) -> str | None:
        """What Discord infers from the file name (discord.py always sends octet-stream)."""
        return mimetypes.guess_type(self.filename)[0]


async def read_body(request: web.Request) -> tuple[dict[str, Any], dict[int, Upload]]:
    """The JSON payload (plain or ``payload_json``) and the uploaded files by index."""
    if not request.content_type.startswith("multipart/"):
        raw = await request.read()
        return (json.loads(raw) if raw else {}), {}
    payload: dict[str, Any] = {}
    files: dict[int, Upload] = {}
    reader = await request.multipart()
    async for part in reader:
        name = part.name or ""  # type: ignore[union-attr]
        data = await part.read()  # type: ignore[union-attr]
        if name == "payload_json":
            payload = json.loads(data)
        elif match := re.fullmatch(r"files\[(\d+)\]", name):
            files[int(match[1])] = Upload(part.filename or "file", bytes(data))  # type: ignore[union-attr]
    return payload, files


def check_size(files: dict[int, Upload], limit: int) -> None:
    """413 40005 when any file is over the upload limit."""
    if any(len(f.data) > limit for f in files.values()):
        raise DiscordError(413, 40005, "Request entity too large")


def check_components(
    components: list[dict[str, Any]], flags: int, path: str = "components"
) -> None:
    """Action row / button / custom_id limits."""
    if not flags & IS_COMPONENTS_V2 and len(components) > 5:
        raise form_error(path, "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
    seen: set[str] = set()
    for index, row in enumerate(components):
        children = row.get("components", [])
        if row.get("type") == 1 and not 1 <= len(children) <= 5:
            raise form_error(
                f"{path}.{index}.components",
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 5 in length.",
            )
        for position, child in enumerate([row, *children, row.get("component") or {}]):
            custom_id = child.get("custom_id")
            if custom_id is None:
                continue
            where = (
                f"{path}.{index}" if position == 0 else f"{path}.{index}.components.{position - 1}"
            )
            if len(custom_id) > 100:
                raise form_error(
                    f"{where}.custom_id", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length."
                )
            if custom_id in seen:
                raise form_error(
                    f"{where}.custom_id",
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                )
            seen.add(custom_id)


def check_allowed_mentions(allowed: Any) -> None:
    """What Discord rejects in ``allowed_mentions``: unknown ``parse`` kinds, a kind both parsed
    and listed, more than 100 ids."""
    if allowed is None:
        return
    if not isinstance(allowed, dict):
        raise form_error(
            "allowed_mentions", "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType"
        )
    parse = allowed.get("parse") or []
    for index, kind in enumerate(parse):
        if kind not in MENTION_KINDS:
            raise form_error(
                f"allowed_mentions.parse.{index}",
                "BASE_TYPE_CHOICES",
                "Value must be one of {'everyone', 'users', 'roles'}.",
            )
    for kind in ("users", "roles"):
        listed = allowed.get(kind)
        if listed is None:
            continue
        if kind in parse:
            raise form_error(
                "allowed_mentions",
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.',
            )
        if len(listed) > ALLOWED_MENTIONS_MAX_IDS:
            raise form_error(
                f"allowed_mentions.{kind}",
                "BASE_TYPE_MAX_LENGTH",
                "Must be 100 or fewer in length.",
            )


def check_nonce(payload: dict[str, Any]) -> tuple[int | str | None, bool]:
    """The create payload's ``nonce`` (an integer or a string, at most 25 characters) and
    ``enforce_nonce`` (a boolean, default false), with Discord's error codes."""
    nonce = payload.get("nonce")
    if nonce is not None:
        # JSON true/false arrive as bool, which Python counts as int.
        if isinstance(nonce, bool) or not isinstance(nonce, int | str):
            raise form_error(
                "nonce", "NONCE_TYPE_INVALID_TYPE", "This field must be a string or integer."
            )
        if len(str(nonce)) > NONCE_MAX_LENGTH:
            raise form_error(
                "nonce",
                "NONCE_TYPE_TOO_LONG",
                f"Must be {NONCE_MAX_LENGTH} or fewer characters long.",
            )
    enforce = payload.get("enforce_nonce", False)
    if not isinstance(enforce, bool):
        raise form_error("enforce_nonce", "BASE_TYPE_BOOLEAN", "Must be either true or false.")
    return nonce, enforce


@dataclass(frozen=True)
class HistoryQuery:
    """``GET /channels/{id}/messages``'s query: a page size and at most one anchor."""

    limit: int
    around: int | None = None
    before: int | None = None
    after: int | None = None

    def page(self, messages: list[FakeMessage]) -> list[FakeMessage]:
        """The page of ``messages`` (oldest first) it selects, newest first like Discord.

        ``after`` takes the ``limit`` messages right after the anchor (the oldest ones), the others
        the newest ones before it; ``around`` takes ``limit // 2`` after the anchor and the rest up
        to and including it.
        """
        if self.around is not None:
            newer = [m for m in messages if m.id > self.around][: self.limit // 2]
            older = [m for m in messages if m.id <= self.around]
            older = older[max(0, len(older) - (self.limit - self.limit // 2)) :]
            chosen = older + newer
        elif self.after is not None:
            chosen = [m for m in messages if m.id > self.after][: self.limit]
        else:
            below = [m for m in messages if self.before is None or m.id < self.before]
            chosen = below[max(0, len(below) - self.limit) :]
        return chosen[::-1]


def parse_history_query(query: Mapping[str, str]) -> HistoryQuery:
    """Validate ``limit`` (1-100, default 50) and the ``before``/``after``/``around`` snowflakes.

    Discord documents the anchors as mutually exclusive but does not refuse several; the fake
    then uses one of them, ``around`` over ``after`` over ``before`` (reports say ``after`` wins).
    """
    raw_limit = query.get("limit")
    limit = HISTORY_DEFAULT_LIMIT if raw_limit is None else _integer("limit", raw_limit, "int")
    if limit < 1:
        raise form_error(
            "limit", "NUMBER_TYPE_MIN", "int value should be greater than or equal to 1."
        )
    if limit > HISTORY_MAX_LIMIT:
        raise form_error(
            "limit",
            "NUMBER_TYPE_MAX",
            f"int value should be less than or equal to {HISTORY_MAX_LIMIT}.",
        )
    anchors = {
        key: _integer(key, query[key], "snowflake")
        for key in ("around", "after", "before")
        if key in query
    }
    for key in ("around", "after", "before"):
        if key in anchors:
            return HistoryQuery(limit, **{key: anchors[key]})
    return HistoryQuery(limit)


def _integer(key: str, raw: str, kind: str) -> int:
    """``raw`` as a non-negative integer, or Discord's coercion error for the query key."""
    if not raw.isdigit():
        raise form_error(key, "NUMBER_TYPE_COERCE", f'Value "{raw}" is not {kind}.')
    return int(raw)


def check_message(
    payload: dict[str, Any], files: dict[int, Upload], limit: int, *, creating: bool
) -> None:
    """What Discord rejects in a message create or edit."""
    check_size(files, limit)
    check_allowed_mentions(payload.get("allowed_mentions"))
    content = payload.get("content") or ""
    if len(content) > 2000:
        raise form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
    embeds = payload.get("embeds") or []
    if len(embeds) > 10:
        raise form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    check_embed_text(embeds)
    if len(files) > 10:
        raise form_error("files", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    components = payload.get("components") or []
    check_components(components, payload.get("flags") or 0)
    has_body = (
        content
        or embeds
        or components
        or files
        or payload.get("sticker_ids")
        or payload.get("poll")
    )
    if creating and not has_body:
        raise DiscordError(400, 50006, "Cannot send an empty message")


# Discord's embed limits: characters per text field, and in all of a message's embeds together.
EMBED_TEXT_LIMITS = {"title": 256, "description": 4096}
EMBED_FOOTER_MAX = 2048
EMBEDS_TOTAL_MAX = 6000


def check_embed_text(embeds: list[dict[str, Any]]) -> None:
    """What Discord rejects in embeds' text: a title, description or footer too long, or more
    than 6000 characters in all of them."""
    total = 0
    for index, embed in enumerate(embeds):
        for key, limit in [*EMBED_TEXT_LIMITS.items(), ("footer", EMBED_FOOTER_MAX)]:
            value = embed.get(key) or ""
            text = (value.get("text") or "") if isinstance(value, dict) else value
            if len(text) > limit:
                raise form_error(
                    f"embeds.{index}.{key}",
                    "BASE_TYPE_MAX_LENGTH",
                    f"Must be {limit} or fewer in length.",
                )
            total += len(text)
    if total > EMBEDS_TOTAL_MAX:
        raise form_error(
            "embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"
        )


def check_modal(data: dict[str, Any]) -> None:
    """What Discord rejects in a modal (callback type 9)."""
    if not 1 <= len(data.get("custom_id") or "") <= 100:
        raise form_error(
            "data.custom_id", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
        )
    if not 1 <= len(data.get("title") or "") <= 45:
        raise form_error(
            "data.title", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 45 in length."
        )
    components = data.get("components") or []
    if not 1 <= len(components) <= 5:
        raise form_error(
            "data.components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length."
        )
    check_components(components, 0, "data.components")


# Application commands: Discord's naming rules and the locales it accepts
# (https://discord.com/developers/docs/interactions/application-commands#application-command-object
# and #localization; https://discord.com/developers/docs/reference#locales).
DISCORD_LOCALES = frozenset(
    [
        "id",
        "da",
        "de",
        "en-GB",
        "en-US",
        "es-ES",
        "es-419",
        "fr",
        "hr",
        "it",
        "lt",
        "hu",
        "nl",
        "no",
        "pl",
        "pt-BR",
        "ro",
        "fi",
        "sv-SE",
        "vi",
        "tr",
        "cs",
        "el",
        "bg",
        "ru",
        "uk",
        "hi",
        "th",
        "zh-CN",
        "ja",
        "zh-TW",
        "ko",
    ]
)
CHAT_INPUT = 1  # a command's type: a slash command
SUBCOMMAND, SUBCOMMAND_GROUP = 1, 2  # option types that hold options


def _name_char(char: str) -> bool:
    """A character of ^[-_\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]$: Devanagari (and its
    extension) and Thai bring their combining marks."""
    code = ord(char)
    return (
        char in "-_"
        or unicodedata.category(char)[0] in "LN"
        or 0x0900 <= code <= 0x097F
        or 0xA8E0 <= code <= 0xA8FF
        or 0x0E00 <= code <= 0x0E7F
    )


def _check_name(name: Any, path: str) -> None:
    """A chat-input command's or option's name: 1–32 name characters, lowercase."""
    if not isinstance(name, str) or not 1 <= len(name) <= 32 or not all(map(_name_char, name)):
        raise form_error(path, "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
    if name != name.lower():
        raise form_error(path, "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")


def _check_text(text: Any, path: str, limit: int = 100) -> None:
    if not isinstance(text, str) or not 1 <= len(text) <= limit:
        raise form_error(path, "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {limit} in length.")


def _localizations(entry: dict[str, Any], field: str, path: str) -> dict[str, str]:
    """`field`_localizations of `entry`, its locales checked (null: none)."""
    found = entry.get(f"{field}_localizations") or {}
    for locale in found:
        if locale not in DISCORD_LOCALES:
            raise form_error(
                f"{path}.{field}_localizations.{locale}", "LOCALE_INVALID", "Invalid locale"
            )
    return found


def _names_by_locale(entry: dict[str, Any], path: str) -> dict[str, str]:
    """The name `entry` shows in every locale (its own where it has no localization), each
    checked."""
    _check_name(entry.get("name"), f"{path}.name")
    localized = _localizations(entry, "name", path)
    for locale, name in localized.items():
        _check_name(name, f"{path}.name_localizations.{locale}")
    return {locale: localized.get(locale, entry["name"]) for locale in DISCORD_LOCALES}


def _check_unique(entries: list[dict[str, Any]], path: str, code: str) -> None:
    """No two entries share a name in any locale."""
    seen: dict[tuple[str, str], int] = {}
    for index, entry in enumerate(entries):
        where = f"{path}.{index}" if path else str(index)
        for locale, name in _names_by_locale(entry, where).items():
            if seen.setdefault((locale, name), index) != index:
                raise form_error(f"{where}.name", code, "Application command names must be unique")


def _check_described(entry: dict[str, Any], path: str) -> None:
    _check_text(entry.get("description"), f"{path}.description")
    for locale, text in _localizations(entry, "description", path).items():
        _check_text(text, f"{path}.description_localizations.{locale}")


def _check_options(options: list[dict[str, Any]], path: str) -> None:
    _check_unique(options, path, "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS")
    for index, option in enumerate(options):
        where = f"{path}.{index}"
        _check_described(option, where)
        for number, choice in enumerate(option.get("choices") or []):
            _check_text(choice.get("name"), f"{where}.choices.{number}.name")
            for locale, name in _localizations(choice, "name", f"{where}.choices.{number}").items():
                _check_text(name, f"{where}.choices.{number}.name_localizations.{locale}")
        if option.get("type") in (SUBCOMMAND, SUBCOMMAND_GROUP):
            _check_options(option.get("options") or [], f"{where}.options")


def check_commands(commands: Any) -> None:
    """What Discord rejects in a bulk overwrite of chat-input commands: invalid or uppercase
    names (localized ones too), descriptions outside 1–100 characters, unknown locales, and
    names two commands (or two options of one) share in some locale."""
    if not isinstance(commands, list):
        raise form_error("_", "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
    chat_input = [c for c in commands if c.get("type", CHAT_INPUT) == CHAT_INPUT]
    _check_unique(chat_input, "", "APPLICATION_COMMANDS_DUPLICATE_NAME")
    for index, command in enumerate(chat_input):
        _check_described(command, str(index))
        _check_options(command.get("options") or [], f"{index}.options")


class RestApi:
    """The aiohttp routes: Discord's REST API under ``/api/v10`` plus the attachment CDN."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    def register(self, app: web.Application) -> None:
        """Add every route, then a catch-all that answers unknown routes with 404."""
        bot_routes: list[tuple[str, str, Handler]] = [
            ("GET", "/users/@me", self.get_me),
            ("GET", "/oauth2/applications/@me", self.get_application),
            ("GET", "/gateway/bot", self.get_gateway_bot),
            ("POST", "/channels/{channel_id}/messages", self.create_message),
            ("GET", "/channels/{channel_id}/messages", self.list_messages),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self.edit_message),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete_message),
            ("GET", "/channels/{channel_id}", self.get_channel),
            ("GET", "/guilds/{guild_id}", self.get_guild),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member),
            ("POST", "/users/@me/channels", self.create_dm),
            ("GET", "/applications/{app_id}/commands", self.get_commands),
            ("PUT", "/applications/{app_id}/commands", self.put_commands),
            ("GET", "/applications/{app_id}/guilds/{guild_id}/commands", self.get_commands),
            ("PUT", "/applications/{app_id}/guilds/{guild_id}/commands", self.put_commands),
        ]
        for method, path, handler in bot_routes:
            app.router.add_route(method, API + path, self.bot_auth(handler))
        token_routes: list[tuple[str, str, Handler]] = [
            ("GET", "/gateway", self.get_gateway),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self.interaction_callback),
            ("POST", "/webhooks/{app_id}/{token}", self.execute_webhook),
            ("GET", "/webhooks/{app_id}/{token}/messages/{message_id}", self.get_webhook_message),
            (
                "PATCH",
                "/webhooks/{app_id}/{token}/messages/{message_id}",
                self.edit_webhook_message,
            ),
            (
                "DELETE",
                "/webhooks/{app_id}/{token}/messages/{message_id}",
                self.delete_webhook_message,
            ),
        ]
        for method, path, handler in token_routes:
            app.router.add_route(method, API + path, handler)
        app.router.add_get(
            "/{kind:(ephemeral-)?attachments}/{scope}/{attachment_id}/{filename}", self.cdn
        )
        app.router.add_route("*", "/{tail:.*}", self.not_found)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Injected rate limits and faults, Discord-style errors, the request log, waking
        waiters."""
        try:
            response = self.fake.take_rate_limit(request) or await self.respond(request, handler)
        except DiscordError as error:
            response = error.response()
        self.fake.record_request(request, response.status)
        await self.fake.notifier.notify()
        return response

    async def respond(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The handler's answer, bent by the first injected fault that matches the request."""
        fault = self.fake.take_fault(request)
        if fault is None:
            return await handler(request)
        processed: web.StreamResponse | None = None
        if fault.after_processing:
            try:
                processed = await handler(request)
            except DiscordError as error:
                # The answer is what gets lost, whether it was a success or an error.
                processed = error.response()
        fault.hits += 1
        await self.fake.notifier.notify()
        await fault.pause(self.fake.stopping)
        error = fault.error
        if error is not None:
            raise error
        return processed if processed is not None else await handler(request)

    def bot_auth(self, handler: Handler) -> Handler:
        """Require ``Authorization: Bot <token>`` like every bot route."""

        async def checked(request: web.Request) -> web.StreamResponse:
            if request.headers.get("Authorization") != f"Bot {self.fake.bot_token}":
                raise DiscordError(401, 0, "401: Unauthorized")
            return await handler(request)

        return checked

    async def not_found(self, request: web.Request) -> web.Response:
        """Unknown route: 404, logged loudly and kept in ``fake.unhandled``."""
        log.error("fake Discord has no route for %s %s", request.method, request.path_qs)
        self.fake.unhandled.append(f"{request.method} {request.path_qs}")
        raise DiscordError(404, 0, "404: Not Found")

    # Login and gateway discovery

    async def get_me(self, request: web.Request) -> web.Response:
        """GET /users/@me."""
        return json_response(self.fake.bot_user)

    async def get_application(self, request: web.Request) -> web.Response:
        """GET /oauth2/applications/@me."""
        return json_response(self.fake.application_payload())

    async def get_gateway(self, request: web.Request) -> web.Response:
        """GET /gateway."""
        return json_response({"url": self.fake.gateway_url})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        """GET /gateway/bot (used by AutoShardedClient)."""
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        return json_response(
            {
                "url": self.fake.gateway_url,
                "shards": self.fake.recommended_shards,
                "session_start_limit": limit,
            }
        )

    # Bot-token routes

    def channel(self, request: web.Request) -> Channel:
        """The channel named in the path: 404 10003 if there is none (or it was deleted), 403 50001
        if the bot cannot view it."""
        channel = self.fake.channels.get(int(request.match_info["channel_id"]))
        if channel is None:
            raise unknown("Channel", 10003)
        if not self.fake.bot_permissions(channel) & VIEW_CHANNEL:
            raise MISSING_ACCESS
        return channel

    def upload_limit(self, channel: Channel) -> int:
        """The bot's per-file upload limit in this channel (its server's boost tier)."""
        guild = self.fake.guilds.get(channel.guild_id or 0)
        return guild.filesize_limit if guild else 10 * MIB

    def reply_target(self, channel: Channel, payload: dict[str, Any]) -> FakeMessage | None:
        """The message a create replies to (``message_reference`` of type 0, default).

        An unknown target is 400 50035, unless ``fail_if_not_exists`` is false: then the message
        is sent as a plain message.
        """
        reference = payload.get("message_reference")
        if not reference or reference.get("type", 0) != 0:
            return None
        target = self.fake.messages.get(int(reference.get("message_id") or 0))
        if target is None or target.deleted or target.ephemeral or target.channel_id != channel.id:
            if reference.get("fail_if_not_exists", True):
                raise form_error(
                    "message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
            return None
        return target

    def channel_message(self, request: web.Request) -> FakeMessage:
        """A message the bot can see in the path's channel, or 404 10008."""
        channel = self.channel(request)
        message = self.fake.messages.get(int(request.match_info["message_id"]))
        if (
            message is None
            or message.deleted
            or message.ephemeral
            or message.channel_id != channel.id
        ):
            raise unknown("Message", 10008)
        return message

    async def create_message(self, request: web.Request) -> web.Response:
        """POST /channels/{id}/messages: checks permissions, size by boost tier, limits, nonces.

        With ``enforce_nonce`` a nonce the bot used in this channel within the fake's
        ``nonce_window_s`` answers the message it created then and creates nothing; if that
        message was deleted since, 404 10008 (discord.py documents NotFound for this case).
        """
        channel = self.channel(request)
        payload, files = await read_body(request)
        if not channel.bot_can_send or (files and not channel.bot_can_attach):
            raise MISSING_PERMISSIONS
        nonce, enforce_nonce = check_nonce(payload)
        check_message(payload, files, self.upload_limit(channel), creating=True)
        reference = self.reply_target(channel, payload)
        earlier = None
        if enforce_nonce and nonce is not None:
            earlier = self.fake.message_with_nonce(channel.id, self.fake.bot_user_id, nonce)
        if earlier is not None:
            if earlier.deleted:
                raise unknown("Message", 10008)
            earlier.nonce_replays += 1
            message = earlier
        else:
            message = self.fake.new_message(
                channel, self.fake.bot_user, payload, files, reference=reference
            )
            message.nonce = nonce
        self.fake.record_send(request, message, payload, creates=True)
        answer = message.to_payload()
        if message.nonce is not None:
            answer["nonce"] = message.nonce  # echoed in the create answer only, like Discord
        return json_response(answer)

    async def list_messages(self, request: web.Request) -> web.Response:
        """GET /channels/{id}/messages: a page of the channel's visible messages, newest first.

        Needs View Channel (else 403 50001); without Read Message History Discord answers an
        empty list. Ephemeral and deleted messages are never listed.
        """
        channel = self.channel(request)
        query = parse_history_query(request.query)
        if not self.fake.bot_permissions(channel) & READ_MESSAGE_HISTORY:
            return json_response([])
        page = query.page(self.fake.channel_history(channel.id))
        return json_response([m.to_payload() for m in page])

    async def get_message(self, request: web.Request) -> web.Response:
        """GET /channels/{id}/messages/{id}: needs Read Message History (else 403 50013)."""
        message = self.channel_message(request)
        permissions = self.fake.bot_permissions(self.fake.channels[message.channel_id])
        if not permissions & READ_MESSAGE_HISTORY:
            raise MISSING_PERMISSIONS
        return json_response(message.to_payload())

    async def edit_message(self, request: web.Request) -> web.Response:
        """PATCH /channels/{id}/messages/{id}: only the bot's own messages."""
        message = self.channel_message(request)
        if message.author_id != self.fake.bot_user_id:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        payload, files = await read_body(request)
        channel = self.fake.channels[message.channel_id]
        if files and not channel.bot_can_attach:
            raise MISSING_PERMISSIONS
        check_message(payload, files, self.upload_limit(channel), creating=False)
        self.fake.edit_message(message, payload, files)
        self.fake.record_send(request, message, payload, creates=False)
        return json_response(message.to_payload())

    async def delete_message(self, request: web.Request) -> web.Response:
        """DELETE /channels/{id}/messages/{id}: the bot has no Manage Messages."""
        message = self.channel_message(request)
        if message.author_id != self.fake.bot_user_id:
            raise MISSING_PERMISSIONS
        self.fake.delete_message(message)
        return web.Response(status=204)

    async def get_channel(self, request: web.Request) -> web.Response:
        """GET /channels/{id}."""
        return json_response(self.channel(request).to_payload())

    async def get_guild(self, request: web.Request) -> web.Response:
        """GET /guilds/{id}."""
        guild = self.fake.guilds.get(int(request.match_info["guild_id"]))
        if guild is None:
            raise unknown("Guild", 10004)
        return json_response(guild.to_payload())

    async def get_member(self, request: web.Request) -> web.Response:
        """GET /guilds/{id}/members/{user_id}."""
        guild = self.fake.guilds.get(int(request.match_info["guild_id"]))
        if guild is None:
            raise unknown("Guild", 10004)
        member = guild.members.get(int(request.match_info["user_id"]))
        if member is None:
            raise unknown("Member", 10007)
        return json_response(member.to_payload())

    async def create_dm(self, request: web.Request) -> web.Response:
        """POST /users/@me/channels."""
        payload, _ = await read_body(request)
        user = self.fake.users.get(int(payload.get("recipient_id", 0)))
        if user is None:
            raise unknown("User", 10013)
        return json_response(self.fake.dm_channel(user).to_payload())

    def check_app(self, request: web.Request) -> int | None:
        """403 50001 for another application's commands; returns the guild id, if any."""
        if int(request.match_info["app_id"]) != self.fake.application_id:
            raise DiscordError(403, 50001, "Missing Access")
        guild_id = request.match_info.get("guild_id")
        if guild_id is not None and int(guild_id) not in self.fake.guilds:
            raise unknown("Guild", 10004)
        return None if guild_id is None else int(guild_id)

    async def get_commands(self, request: web.Request) -> web.Response:
        """GET /applications/{id}[/guilds/{id}]/commands."""
        return json_response(self.fake.commands.get(self.check_app(request), []))

    async def put_commands(self, request: web.Request) -> web.Response:
        """PUT (bulk overwrite) /applications/{id}[/guilds/{id}]/commands."""
        guild_id = self.check_app(request)
        payload, _ = await read_body(request)
        check_commands(payload)
        return json_response(self.fake.sync_commands(guild_id, payload))

    # Interaction routes (authorised by the interaction token, not the bot token)

    async def interaction_callback(self, request: web.Request) -> web.Response:
        """POST /interactions/{id}/{token}/callback: within the ack deadline, only once."""
        interaction = self.fake.interactions.get(int(request.match_info["interaction_id"]))
        if interaction is None or interaction.token != request.match_info["token"]:
            raise DiscordError(404, 10062, "Unknown interaction")
        if interaction.acked:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        if self.fake.clock.now() - interaction.dispatched_at > self.fake.ack_deadline_s:
            raise DiscordError(404, 10062, "Unknown interaction")
        self.check_channel_exists(interaction)
        payload, files = await read_body(request)
        kind, data = payload.get("type"), payload.get("data") or {}
        message = self.apply_callback(interaction, kind, data, files)
        interaction.callbacks.append({"type": kind, "data": data})
        if message is not None and kind in (4, 7):  # the callbacks that carry message data
            self.fake.record_send(request, message, data, creates=kind == 4)
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        return json_response(self.callback_response(interaction, kind, message))

    def apply_callback(
        self,
        interaction: FakeInteraction,
        kind: Any,
        data: dict[str, Any],
        files: dict[int, Upload],
    ) -> FakeMessage | None:
        """Carry out one callback; returns the message it created or updated."""
        channel = self.fake.channels[interaction.channel_id]
        if kind == 4:
            check_message(data, files, interaction.attachment_size_limit, creating=True)
            message = self.fake.new_message(channel, self.fake.bot_user, data, files, interaction)
            interaction.original = message
            return message
        if kind == 5:
            flags = (data.get("flags") or 0) & EPHEMERAL
            message = self.fake.new_message(
                channel, self.fake.bot_user, {"flags": flags}, {}, interaction
            )
            message.flags |= LOADING
            interaction.original = message
            return message
        if kind in (6, 7) and interaction.message_id is not None:
            message = self.fake.messages[interaction.message_id]
            interaction.original = message
            if kind == 7:
                check_message(data, files, interaction.attachment_size_limit, creating=False)
                self.fake.edit_message(message, data, files)
            return message
        if kind == 9 and interaction.type in (2, 3):
            check_modal(data)
            return None
        raise form_error(
            "type", "INTERACTION_RESPONSE_TYPE_INVALID", f"Invalid response type {kind}."
        )

    @staticmethod
    def callback_response(
        interaction: FakeInteraction, kind: int, message: FakeMessage | None
    ) -> dict[str, Any]:
        """The ``with_response`` body: ``{"interaction": ..., "resource": ...}``."""
        summary: dict[str, Any] = {"id": str(interaction.id), "type": interaction.type}
        resource: dict[str, Any] = {"type": kind}
        if message is not None:
            summary["response_message_id"] = str(message.id)
            summary["response_message_loading"] = kind == 5
            summary["response_message_ephemeral"] = message.ephemeral
            resource["message"] = message.to_payload()
        return {"interaction": summary, "resource": resource}

    def webhook_interaction(self, request: web.Request) -> FakeInteraction:
        """The interaction behind ``/webhooks/{app_id}/{token}``: known, acked and not expired."""
        interaction = self.fake.interactions_by_token.get(request.match_info["token"])
        if interaction is None or int(request.match_info["app_id"]) != self.fake.application_id:
            raise unknown("Webhook", 10015)
        if self.fake.clock.now() - interaction.dispatched_at > self.fake.token_lifetime_s:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        if not interaction.acked:
            raise unknown("Webhook", 10015)
        self.check_channel_exists(interaction)
        return interaction

    def check_channel_exists(self, interaction: FakeInteraction) -> None:
        """404 10003 once the interaction's channel was deleted (callbacks, follow-ups, edits)."""
        if interaction.channel_id not in self.fake.channels:
            raise unknown("Channel", 10003)

    def webhook_message(self, request: web.Request) -> tuple[FakeInteraction, FakeMessage]:
        """``@original`` or a follow-up of this interaction, or 404 10008."""
        interaction = self.webhook_interaction(request)
        wanted = request.match_info["message_id"]
        candidates = [interaction.original, *interaction.followups]
        if wanted == "@original":
            candidates = candidates[:1]
        for message in candidates:
            if (
                message is not None
                and not message.deleted
                and wanted in ("@original", str(message.id))
            ):
                return interaction, message
        raise unknown("Message", 10008)

    async def execute_webhook(self, request: web.Request) -> web.Response:
        """POST /webhooks/{app_id}/{token}: a follow-up, within the interaction's upload limit."""
        interaction = self.webhook_interaction(request)
        payload, files = await read_body(request)
        check_message(payload, files, interaction.attachment_size_limit, creating=True)
        channel = self.fake.channels[interaction.channel_id]
        message = self.fake.new_message(channel, self.fake.bot_user, payload, files, interaction)
        interaction.followups.append(message)
        self.fake.record_send(request, message, payload, creates=True)
        if request.query.get("wait", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        return json_response(message.to_payload())

    async def get_webhook_message(self, request: web.Request) -> web.Response:
        """GET /webhooks/{app_id}/{token}/messages/{@original|id}."""
        return json_response(self.webhook_message(request)[1].to_payload())

    async def edit_webhook_message(self, request: web.Request) -> web.Response:
        """PATCH /webhooks/{app_id}/{token}/messages/{@original|id}."""
        interaction, message = self.webhook_message(request)
        payload, files = await read_body(request)
        check_message(payload, files, interaction.attachment_size_limit, creating=False)
        self.fake.edit_message(message, payload, files)
        self.fake.record_send(request, message, payload, creates=False)
        return json_response(message.to_payload())

    async def delete_webhook_message(self, request: web.Request) -> web.Response:
        """DELETE /webhooks/{app_id}/{token}/messages/{@original|id}."""
        self.fake.delete_message(self.webhook_message(request)[1])
        return web.Response(status=204)

    # CDN

    async def cdn(self, request: web.Request) -> web.Response:
        """GET an attachment URL: 404 once its signature has expired, like the real CDN."""
        attachment = self.fake.attachments.get(int(request.match_info["attachment_id"]))
        if attachment is None or not self.fake.url_is_valid(attachment, request):
            return web.Response(status=404, text="This content is no longer available.")
        content_type = attachment.content_type or "application/octet-stream"
        return web.Response(body=attachment.data, content_type=content_type)
