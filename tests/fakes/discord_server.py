"""A loopback fake of Discord (REST, gateway websocket, CDN) for the real discord.py client.

Typical use::

    async with FakeDiscord() as fake:
        fake.add_guild(GUILD, "test server")
        fake.add_channel(GUILD, CHANNEL, "general")
        async with running_bot(fake, make_bot) as bot:
            interaction = await fake.invoke_command(
                "echo", guild_id=GUILD, channel_id=CHANNEL, user_id=USER
            )
            await interaction.wait_until_acked()

Only the HTTP routes and gateway events discord.py 2.7 uses for slash commands, buttons, modals and
messages exist; an unknown route answers 404 and is listed in :attr:`FakeDiscord.unhandled`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import hmac
import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Self, TypeVar
from urllib.parse import quote

import discord
import yarl
from aiohttp import web

from tests.fakes.discord_gateway import Gateway
from tests.fakes.discord_models import (
    EPHEMERAL,
    LOADING,
    MEMBER_PERMISSIONS,
    MIB,
    SETTABLE_FLAGS,
    Channel,
    Clock,
    FakeAttachment,
    FakeInteraction,
    FakeMessage,
    Guild,
    Member,
    Notifier,
    Role,
    Snowflakes,
    user_payload,
)
from tests.fakes.discord_rest import API, RestApi, Upload, json_response

ClientT = TypeVar("ClientT", bound=discord.Client)

DEFAULT_OWNER_ID = 100_000_000_000_000_001
ATTACHMENT_URL_LIFETIME_S = 24 * 3600.0

__all__ = [
    "MEMBER_PERMISSIONS",
    "FakeAttachment",
    "FakeDiscord",
    "FakeInteraction",
    "FakeMessage",
    "RequestRecord",
    "running_bot",
]


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request the fake answered (``path`` without the ``/api/v10`` prefix)."""

    method: str
    path: str
    query: dict[str, str]
    status: int


@dataclass
class _RateLimit:
    method: str
    pattern: re.Pattern[str]
    retry_after: float
    remaining: int
    is_global: bool


class FakeDiscord:
    """The fake: world model, message store, interaction records, and the aiohttp server."""

    def __init__(
        self,
        *,
        bot_token: str = "fake-bot-token",
        application_id: int = 900_000_000_000_000_001,
        bot_user_id: int = 900_000_000_000_000_002,
        bot_name: str = "wanbot",
        token_lifetime_s: float = 900.0,
        ack_deadline_s: float = 3.0,
        privileged_intents: int = 0,
    ) -> None:
        """``privileged_intents``: privileged intent bits switched on in the "developer portal"."""
        self.bot_token = bot_token
        self.application_id = application_id
        self.bot_user_id = bot_user_id
        self.bot_user = user_payload(bot_user_id, bot_name, bot=True)
        self.token_lifetime_s = token_lifetime_s
        self.ack_deadline_s = ack_deadline_s
        self.privileged_intents = privileged_intents
        self.clock = Clock()
        self.notifier = Notifier()
        self._ids = Snowflakes(self.clock)
        self._secret = secrets.token_bytes(16)
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.users: dict[int, dict[str, Any]] = {bot_user_id: self.bot_user}
        self.messages: dict[int, FakeMessage] = {}
        self.deleted: set[int] = set()
        self.attachments: dict[int, FakeAttachment] = {}
        self.interactions: dict[int, FakeInteraction] = {}
        self.interactions_by_token: dict[str, FakeInteraction] = {}
        #: Synced application commands: ``None`` → global, guild id → that guild's.
        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self.requests: list[RequestRecord] = []
        self.unhandled: list[str] = []
        self._rate_limits: list[_RateLimit] = []
        self.rest = RestApi(self)
        self.gateway = Gateway(self)
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._saved: tuple[str, yarl.URL] | None = None

    # Lifecycle

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def gateway_url(self) -> str:
        """The websocket URL (also READY's ``resume_gateway_url``)."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self) -> None:
        """Serve on 127.0.0.1 (free port) and point discord.py's REST and gateway URLs here."""
        app = web.Application(middlewares=[self.rest.middleware], client_max_size=200 * MIB)
        app.router.add_get("/gateway", self.gateway.handle)
        self.rest.register(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
        discord.http.Route.BASE = self.base_url + API
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)

    async def stop(self) -> None:
        """Close connections, stop serving, restore discord.py's URLs."""
        if self._saved is not None:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self._saved
            self._saved = None
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # World model

    def add_guild(
        self, guild_id: int, name: str, *, premium_tier: int = 0, owner_id: int = DEFAULT_OWNER_ID
    ) -> Guild:
        """A server with @everyone (normal member permissions), the bot and the owner as members."""
        guild = Guild(guild_id, name, owner_id, self.bot_user_id, premium_tier)
        guild.roles[guild_id] = Role(guild_id, "@everyone", MEMBER_PERMISSIONS)
        self.guilds[guild_id] = guild
        self.add_member(guild_id, self.bot_user_id)
        self.add_member(guild_id, owner_id)
        return guild

    def add_role(self, guild_id: int, role_id: int, name: str, *, permissions: int = 0) -> Role:
        """A role members can be given."""
        guild = self.guilds[guild_id]
        role = Role(role_id, name, permissions, position=len(guild.roles))
        guild.roles[role_id] = role
        return role

    def add_member(
        self,
        guild_id: int,
        user_id: int,
        *,
        username: str | None = None,
        roles: Iterable[int] = (),
        nick: str | None = None,
    ) -> Member:
        """A member (the user is created on first use)."""
        user = self.users.setdefault(user_id, user_payload(user_id, username or f"user{user_id}"))
        member = Member(user, list(roles), self.clock.iso(), nick)
        self.guilds[guild_id].members[user_id] = member
        return member

    def add_channel(
        self,
        guild_id: int,
        channel_id: int,
        name: str,
        *,
        nsfw: bool = False,
        bot_can_send: bool = True,
        bot_can_attach: bool = True,
    ) -> Channel:
        """A text channel; ``bot_can_*=False`` adds a member overwrite denying the bot that."""
        guild = self.guilds[guild_id]
        channel = Channel(
            channel_id,
            name,
            guild_id,
            self.bot_user_id,
            position=len(guild.channels),
            nsfw=nsfw,
            bot_can_send=bot_can_send,
            bot_can_attach=bot_can_attach,
        )
        guild.channels[channel_id] = channel
        self.channels[channel_id] = channel
        return channel

    def add_thread(
        self, guild_id: int, thread_id: int, name: str, *, parent_id: int, owner_id: int
    ) -> Channel:
        """An active public thread in channel ``parent_id``, started by ``owner_id``.

        Like Discord, it inherits the parent's NSFW flag and permissions, and GUILD_CREATE lists it
        under ``threads``; commands, buttons and messages work in it as in a channel.
        """
        guild = self.guilds[guild_id]
        parent = guild.channels[parent_id]
        thread = Channel(
            thread_id,
            name,
            guild_id,
            self.bot_user_id,
            nsfw=parent.nsfw,
            bot_can_send=parent.bot_can_send,
            bot_can_attach=parent.bot_can_attach,
            parent_id=parent_id,
            owner_id=owner_id,
            created_at=self.clock.iso(),
        )
        guild.channels[thread_id] = thread
        self.channels[thread_id] = thread
        return thread

    def dm_channel(self, user: dict[str, Any]) -> Channel:
        """The bot's DM channel with ``user`` (created on first use)."""
        for channel in self.channels.values():
            if channel.recipient is not None and channel.recipient["id"] == user["id"]:
                return channel
        channel = Channel(self._ids.next(), "", None, self.bot_user_id, recipient=user)
        self.channels[channel.id] = channel
        return channel

    def add_attachment(
        self,
        filename: str,
        data: bytes,
        content_type: str | None,
        *,
        width: int | None = None,
        height: int | None = None,
        expires_in_s: float | None = None,
    ) -> dict[str, Any]:
        """A file a user attached to a command: the Discord attachment object with a signed CDN URL.

        The URL stops working ``expires_in_s`` (default 24 h) from now, like Discord's signed URLs.
        """
        lifetime = ATTACHMENT_URL_LIFETIME_S if expires_in_s is None else expires_in_s
        attachment = self._store_file(
            f"/ephemeral-attachments/{self.application_id}", filename, data, content_type, lifetime
        )
        attachment.width, attachment.height = width, height
        return attachment.to_payload()

    def add_message(self, channel_id: int, content: str, *, author_id: int) -> FakeMessage:
        """A message some user posted (for tests that touch messages the bot did not write)."""
        channel = self.channels[channel_id]
        return self.new_message(channel, self.users[author_id], {"content": content}, {})

    def advance_time(self, seconds: float) -> None:
        """Move the fake's clock (ack deadlines, token lifetimes, URL expiry) forward."""
        self.clock.advance(seconds)

    def inject_rate_limit(
        self,
        method: str,
        path_regex: str,
        retry_after: float,
        *,
        times: int = 1,
        is_global: bool = False,
    ) -> None:
        """Answer the next ``times`` matching requests with 429.

        ``path_regex`` full-matches the path without ``/api/v10``: ``r"/channels/\\d+/messages"``.
        """
        pattern = re.compile(path_regex)
        self._rate_limits.append(_RateLimit(method.upper(), pattern, retry_after, times, is_global))

    # Invoking

    async def invoke_command(
        self,
        name: str,
        *,
        guild_id: int,
        channel_id: int,
        user_id: int,
        options: Iterable[dict[str, Any]] = (),
        attachments: Iterable[dict[str, Any]] = (),
        permissions: int | None = None,
        attachment_size_limit: int = 10 * MIB,
        roles: Iterable[int] = (),
        locale: str = "en-US",
    ) -> FakeInteraction:
        """Dispatch a slash command (INTERACTION_CREATE type 2).

        ``permissions`` defaults to what the member's ``roles`` (see :meth:`add_role`) give.
        ``options`` are Discord option objects ``{"name", "type", "value"}``; a subcommand is
        ``{"name", "type": 1, "options": [...]}``. An attachment option (type 11) may carry the
        attachment object from :meth:`add_attachment` as its value, a user option (type 6) a user
        id, a channel option (type 7) a channel id of this guild (resolved with the invoking
        member's ``permissions``, like Discord), a role option (type 8) a role id of this guild;
        all are put into ``data.resolved``. A subcommand group is ``{"name", "type": 2,
        "options": [<subcommand>]}``.
        ``attachments`` adds further resolved attachments.
        """
        guild = self.guilds[guild_id]
        member = self._member(guild, user_id, roles)
        member_permissions = guild.base_permissions(member) if permissions is None else permissions
        resolved: dict[str, dict[str, Any]] = {}
        data: dict[str, Any] = {
            "id": "",
            "name": name,
            "type": 1,
            "options": [
                self._resolve_option(guild, o, resolved, member_permissions) for o in options
            ],
        }
        for attachment in attachments:
            resolved.setdefault("attachments", {})[attachment["id"]] = attachment
        if resolved:
            data["resolved"] = resolved
        data.update(self._command_ref(name, guild_id))
        return await self._dispatch_interaction(
            2,
            self.channels[channel_id],
            member,
            data,
            permissions=permissions,
            attachment_size_limit=attachment_size_limit,
            locale=locale,
        )

    async def click_button(
        self,
        message: FakeMessage | int,
        custom_id: str,
        *,
        user_id: int,
        permissions: int | None = None,
        attachment_size_limit: int = 10 * MIB,
        roles: Iterable[int] = (),
    ) -> FakeInteraction:
        """Click a button on a stored message (INTERACTION_CREATE type 3).

        Raises ``ValueError`` for what a user cannot click: no such button, or a disabled one.
        """
        stored = self.messages[message if isinstance(message, int) else message.id]
        button = stored.component(custom_id)
        if stored.deleted or button is None or button.get("type") != 2 or button.get("disabled"):
            raise ValueError(f"message {stored.id} has no enabled button {custom_id!r}")
        channel = self.channels[stored.channel_id]
        member = self._member(self.guilds[stored.guild_id or 0], user_id, roles)
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._dispatch_interaction(
            3,
            channel,
            member,
            data,
            permissions=permissions,
            attachment_size_limit=attachment_size_limit,
            message=stored,
        )

    async def submit_modal(
        self,
        custom_id: str,
        values: dict[str, str],
        *,
        user_id: int,
        permissions: int | None = None,
        attachment_size_limit: int = 10 * MIB,
    ) -> FakeInteraction:
        """Submit the modal ``custom_id`` the bot showed ``user_id`` (INTERACTION_CREATE type 5).

        ``values`` maps text input custom_ids to what the user typed; inputs left out keep their
        prefilled value. Raises ``ValueError`` when no such modal was shown to the user, for unknown
        inputs, and for what the client would refuse (a required input empty, bad length).
        """
        opener = self._modal_opener(custom_id, user_id)
        assert opener.modal is not None
        data = {"custom_id": custom_id, "components": _modal_answers(opener.modal, values)}
        channel = self.channels[opener.channel_id]
        member = self._member(self.guilds[channel.guild_id or 0], user_id, ())
        source = self.messages.get(opener.message_id or 0)
        return await self._dispatch_interaction(
            5,
            channel,
            member,
            data,
            permissions=permissions,
            attachment_size_limit=attachment_size_limit,
            message=source,
        )

    # Looking at what happened

    def message(self, message_id: int) -> FakeMessage:
        """A stored message (deleted ones too: see ``FakeMessage.deleted``)."""
        return self.messages[message_id]

    def messages_in(self, channel_id: int) -> list[FakeMessage]:
        """Messages in a channel that were not deleted, oldest first (ephemeral ones included)."""
        return [m for m in self.messages.values() if m.channel_id == channel_id and not m.deleted]

    async def wait_for_message(
        self,
        predicate: Callable[[FakeMessage], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> FakeMessage:
        """The first (oldest) live message matching ``predicate``, once there is one."""

        def probe() -> FakeMessage | None:
            return next((m for m in self.messages.values() if not m.deleted and predicate(m)), None)

        return await self.notifier.wait_for(probe, timeout, "a matching message")

    def requests_to(self, method: str, path_regex: str) -> list[RequestRecord]:
        """Logged requests with this method whose path full-matches ``path_regex``."""
        pattern = re.compile(path_regex)
        return [r for r in self.requests if r.method == method and pattern.fullmatch(r.path)]

    @property
    def connected_clients(self) -> int:
        """Open gateway connections."""
        return len(self.gateway.connections)

    async def wait_ready(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until a client identified and got READY and every GUILD_CREATE."""

        def ready() -> bool:
            return any(s.ready and s.ws is not None for s in self.gateway.sessions.values())

        await self.notifier.wait_for(ready, timeout, "a READY gateway session")

    async def wait_disconnected(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until no client is connected to the gateway."""
        await self.notifier.wait_for(lambda: not self.gateway.connections, timeout, "disconnect")

    async def request_reconnect(self) -> None:
        """Ask every client to reconnect (op 7); discord.py then RESUMEs its session."""
        await self.gateway.reconnect_all()

    # Used by the REST routes

    def application_payload(self) -> dict[str, Any]:
        """GET /oauth2/applications/@me."""
        return {
            "id": str(self.application_id),
            "name": self.bot_user["username"],
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self.users.get(DEFAULT_OWNER_ID, user_payload(DEFAULT_OWNER_ID, "owner")),
            "verify_key": "0" * 64,
            "flags": self.application_flags,
            "interactions_endpoint_url": None,
            "bot": self.bot_user,
        }

    @property
    def application_flags(self) -> int:
        """Application flags: the ``*_LIMITED`` intent flags for the enabled privileged intents."""
        flags = 0
        for intent, flag in ((1 << 1, 1 << 15), (1 << 8, 1 << 13), (1 << 15, 1 << 19)):
            if self.privileged_intents & intent:
                flags |= flag
        return flags

    def take_rate_limit(self, request: web.Request) -> web.Response | None:
        """A 429 for the request if one was injected for it."""
        path = request.path.removeprefix(API)
        for limit in self._rate_limits:
            if limit.remaining and limit.method == request.method and limit.pattern.fullmatch(path):
                limit.remaining -= 1
                return self._too_many_requests(limit)
        return None

    def _too_many_requests(self, limit: _RateLimit) -> web.Response:
        body = {
            "message": "You are being rate limited.",
            "retry_after": limit.retry_after,
            "global": limit.is_global,
        }
        headers = {
            "Via": "1.1 google",
            "Retry-After": str(max(1, round(limit.retry_after))),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{self.clock.now() + limit.retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{limit.retry_after:.3f}",
            "X-RateLimit-Bucket": hashlib.md5(limit.pattern.pattern.encode()).hexdigest(),
            "X-RateLimit-Scope": "global" if limit.is_global else "user",
        }
        if limit.is_global:
            headers["X-RateLimit-Global"] = "true"
        return json_response(body, 429, headers)

    def record_request(self, request: web.Request, status: int) -> None:
        """Add to :attr:`requests`."""
        path = request.path.removeprefix(API)
        self.requests.append(RequestRecord(request.method, path, dict(request.query), status))

    def new_message(
        self,
        channel: Channel,
        author: dict[str, Any],
        payload: dict[str, Any],
        files: dict[int, Upload],
        interaction: FakeInteraction | None = None,
    ) -> FakeMessage:
        """Store a message built from a create payload (ephemeral only through an interaction)."""
        settable = SETTABLE_FLAGS if interaction else SETTABLE_FLAGS & ~EPHEMERAL
        message = FakeMessage(
            id=self._ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=author,
            timestamp=self.clock.iso(),
            content=payload.get("content") or "",
            embeds=payload.get("embeds") or [],
            components=payload.get("components") or [],
            flags=(payload.get("flags") or 0) & settable,
        )
        message.attachments = self._attachments_after(message, payload, files)
        if interaction is not None:
            message.interaction_id = interaction.id
            message.webhook_id = self.application_id
            message.interaction_metadata = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": interaction.payload["member"]["user"],
                "authorizing_integration_owners": interaction.payload[
                    "authorizing_integration_owners"
                ],
            }
        self.messages[message.id] = message
        return message

    def edit_message(
        self, message: FakeMessage, payload: dict[str, Any], files: dict[int, Upload]
    ) -> None:
        """Apply an edit payload, keeping the previous state in ``message.history``."""
        message.history.append(message.snapshot())
        for key in ("embeds", "components"):
            if key in payload:
                setattr(message, key, payload[key] or [])
        if "content" in payload:
            message.content = payload["content"] or ""
        if "flags" in payload:
            kept = message.flags & EPHEMERAL
            message.flags = kept | ((payload["flags"] or 0) & SETTABLE_FLAGS & ~EPHEMERAL)
        message.flags &= ~LOADING
        message.attachments = self._attachments_after(message, payload, files)
        message.edited_timestamp = self.clock.iso()

    def delete_message(self, message: FakeMessage) -> None:
        """Mark deleted (it stays readable through :meth:`message`)."""
        message.deleted = True
        self.deleted.add(message.id)

    def sync_commands(
        self, guild_id: int | None, commands: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Bulk-overwrite a command scope, keeping ids of commands that already existed."""
        old = {(c["name"], c["type"]): c["id"] for c in self.commands.get(guild_id, [])}
        synced = []
        for command in commands:
            kind = command.get("type", 1)
            entry = {
                "description": "",
                "options": [],
                "default_member_permissions": None,
                "nsfw": False,
                **command,
                "id": old.get((command["name"], kind)) or str(self._ids.next()),
                "type": kind,
                "application_id": str(self.application_id),
                "version": str(self._ids.next()),
            }
            if guild_id is not None:
                entry["guild_id"] = str(guild_id)
            synced.append(entry)
        self.commands[guild_id] = synced
        return synced

    def url_is_valid(self, attachment: FakeAttachment, request: web.Request) -> bool:
        """Whether a CDN request carries this attachment's valid, unexpired signature."""
        ex, issued, signature = (request.query.get(k, "") for k in ("ex", "is", "hm"))
        expected = self._sign(request.path, ex, issued)
        if not (ex and hmac.compare_digest(signature, expected)):
            return False
        return self.clock.now() <= int(ex, 16) and str(attachment.id) in request.path.split("/")

    # Internals

    def _sign(self, path: str, ex: str, issued: str) -> str:
        return hmac.new(self._secret, f"{path}|{ex}|{issued}".encode(), hashlib.sha256).hexdigest()

    def _store_file(
        self, scope: str, filename: str, data: bytes, content_type: str | None, lifetime_s: float
    ) -> FakeAttachment:
        attachment_id = self._ids.next()
        path = f"{scope}/{attachment_id}/{filename}"
        now = self.clock.now()
        ex, issued = f"{int(now + lifetime_s):x}", f"{int(now):x}"
        query = f"ex={ex}&is={issued}&hm={self._sign(path, ex, issued)}&"
        url = f"{self.base_url}{quote(path)}?{query}"
        attachment = FakeAttachment(
            attachment_id, filename, data, content_type, url, now + lifetime_s
        )
        self.attachments[attachment_id] = attachment
        return attachment

    def _attachments_after(
        self, message: FakeMessage, payload: dict[str, Any], files: dict[int, Upload]
    ) -> list[FakeAttachment]:
        """Kept attachments (listed by id in ``payload["attachments"]``) plus the uploads."""
        scope = f"/attachments/{message.channel_id}"
        uploaded = {
            index: self._store_file(
                scope, f.filename, f.data, f.content_type, ATTACHMENT_URL_LIFETIME_S
            )
            for index, f in sorted(files.items())
        }
        entries = payload.get("attachments")
        if entries is None:
            return [*message.attachments, *uploaded.values()]
        existing = {a.id: a for a in message.attachments}
        kept = [uploaded.get(int(e["id"])) or existing.get(int(e["id"])) for e in entries]
        return [a for a in kept if a is not None]

    def _member(self, guild: Guild, user_id: int, roles: Iterable[int]) -> Member:
        member = guild.members.get(user_id) or self.add_member(guild.id, user_id)
        member.roles = sorted(set(member.roles) | set(roles))
        return member

    def _resolve_option(
        self,
        guild: Guild,
        option: dict[str, Any],
        resolved: dict[str, dict[str, Any]],
        permissions: int,
    ) -> dict[str, Any]:
        """The option as Discord sends it; users, members, channels, attachments into resolved."""
        option = copy.deepcopy(option)
        if option.get("type") in (1, 2):
            option["options"] = [
                self._resolve_option(guild, o, resolved, permissions)
                for o in option.get("options", [])
            ]
        elif option.get("type") == 11 and isinstance(option.get("value"), dict):
            attachment = option["value"]
            resolved.setdefault("attachments", {})[attachment["id"]] = attachment
            option["value"] = attachment["id"]
        elif option.get("type") == 6:
            user_id = int(option["value"])
            option["value"] = str(user_id)
            resolved.setdefault("users", {})[str(user_id)] = self.users[user_id]
            if user_id in guild.members:
                member = guild.members[user_id].to_payload(
                    permissions=guild.base_permissions(guild.members[user_id])
                )
                del member["user"]
                resolved.setdefault("members", {})[str(user_id)] = member
        elif option.get("type") == 8:
            role = guild.roles.get(int(option["value"]))
            if role is None:
                raise ValueError(f"guild {guild.id} has no role {option['value']}")
            option["value"] = str(role.id)
            resolved.setdefault("roles", {})[str(role.id)] = role.to_payload()
        elif option.get("type") == 7:
            channel_id = int(option["value"])
            channel = guild.channels.get(channel_id)
            if channel is None:
                raise ValueError(f"guild {guild.id} has no channel {channel_id}")
            option["value"] = str(channel_id)
            payload = channel.to_payload(permissions=permissions)
            resolved.setdefault("channels", {})[str(channel_id)] = payload
        return option

    def _command_ref(self, name: str, guild_id: int) -> dict[str, str]:
        """The synced command's id, and ``guild_id`` when it is a guild command."""
        for scope in (guild_id, None):
            for command in self.commands.get(scope, []):
                if command["name"] == name and command["type"] == 1:
                    ref = {"id": command["id"]}
                    return {**ref, "guild_id": str(guild_id)} if scope is not None else ref
        return {"id": str(self._ids.next())}

    def _modal_opener(self, custom_id: str, user_id: int) -> FakeInteraction:
        for interaction in reversed(self.interactions.values()):
            modal = interaction.modal
            if (
                modal is not None
                and modal.get("custom_id") == custom_id
                and interaction.user_id == user_id
            ):
                return interaction
        raise ValueError(f"the bot never showed modal {custom_id!r} to user {user_id}")

    async def _dispatch_interaction(
        self,
        kind: int,
        channel: Channel,
        member: Member,
        data: dict[str, Any],
        *,
        permissions: int | None,
        attachment_size_limit: int,
        locale: str = "en-US",
        message: FakeMessage | None = None,
    ) -> FakeInteraction:
        """``permissions`` None: what the member's roles give (the owner: everything)."""
        if not self.gateway.live_sessions:
            raise RuntimeError("no bot is connected to the fake gateway")
        guild = self.guilds[channel.guild_id or 0]
        if permissions is None:
            permissions = guild.base_permissions(member)
        bot_permissions = (
            guild.base_permissions(guild.members[self.bot_user_id]) & ~channel.bot_denied
        )
        interaction_id, token = self._ids.next(), "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": kind,
            "token": token,
            "version": 1,
            "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
            "channel": channel.to_payload(permissions=permissions),
            "channel_id": str(channel.id),
            "member": member.to_payload(permissions=permissions),
            "app_permissions": str(bot_permissions),
            "locale": locale,
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": attachment_size_limit,
            "data": data,
        }
        if message is not None:
            payload["message"] = message.to_payload()
        interaction = FakeInteraction(
            interaction_id, token, kind, payload, self.clock.now(), self.notifier
        )
        self.interactions[interaction_id] = interaction
        self.interactions_by_token[token] = interaction
        await self.gateway.dispatch("INTERACTION_CREATE", payload)
        return interaction


def _modal_answers(modal: dict[str, Any], values: dict[str, str]) -> list[dict[str, Any]]:
    """The submitted components, shaped like the modal's (action rows or labels)."""
    values = dict(values)
    answers = []
    for component in modal.get("components", []):
        wrapped = (
            component["components"][0] if component["type"] == 1 else component.get("component", {})
        )
        if wrapped.get("type") != 4:
            continue
        custom_id = wrapped["custom_id"]
        value = values.pop(custom_id, wrapped.get("value") or "")
        _check_text_input(wrapped, value)
        answer = {"type": 4, "custom_id": custom_id, "value": value}
        answers.append(
            {"type": 1, "components": [answer]}
            if component["type"] == 1
            else {"type": 18, "component": answer}
        )
    if values:
        raise ValueError(f"modal {modal.get('custom_id')!r} has no text inputs {sorted(values)}")
    return answers


def _check_text_input(text_input: dict[str, Any], value: str) -> None:
    """What the Discord client refuses to submit."""
    custom_id = text_input["custom_id"]
    if not value:
        if text_input.get("required", True):
            raise ValueError(f"text input {custom_id!r} is required")
        return
    low, high = text_input.get("min_length", 0), text_input.get("max_length", 4000)
    if not low <= len(value) <= high:
        raise ValueError(
            f"text input {custom_id!r} needs {low}..{high} characters, got {len(value)}"
        )


@contextlib.asynccontextmanager
async def running_bot(
    fake: FakeDiscord,
    bot_factory: Callable[[], ClientT],
    *,
    ready_within: float = 10.0,
    guild_ready_timeout: float = 0.05,
) -> AsyncIterator[ClientT]:
    """Log a bot in against ``fake`` (running its ``setup_hook``), connect, wait until it is ready
    and has every guild, yield it, then close it.

    discord.py fires ``on_ready`` only after ``guild_ready_timeout`` (2 s by default) passes without
    a GUILD_CREATE; the fake sends them all right after READY, so this waits ``guild_ready_timeout``
    (default 50 ms) instead. ``TimeoutError`` if not ready within ``ready_within`` seconds.
    Errors from login or connect (e.g. ``LoginFailure``,
    ``PrivilegedIntentsRequired``) propagate.
    """
    bot = bot_factory()
    # The documented ``Client(guild_ready_timeout=...)`` option, set here so factories needn't.
    bot._connection.guild_ready_timeout = guild_ready_timeout
    connection: asyncio.Task[None] | None = None
    try:
        await bot.login(fake.bot_token)
        connection = asyncio.create_task(bot.connect())
        async with asyncio.timeout(ready_within):
            await _wait_until_ready(bot, connection)
            await _wait_for_guilds(bot, fake)
        yield bot
    finally:
        await bot.close()
        if connection is not None:
            await asyncio.gather(connection, return_exceptions=True)


async def _wait_until_ready(bot: discord.Client, connection: asyncio.Task[None]) -> None:
    """Ready, or the connection's error (login went fine but e.g. the gateway refused)."""
    ready = asyncio.ensure_future(bot.wait_until_ready())
    try:
        await asyncio.wait({connection, ready}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
    if connection.done():
        connection.result()
        raise RuntimeError("the bot disconnected before it was ready")


async def _wait_for_guilds(bot: discord.Client, fake: FakeDiscord) -> None:
    """A GUILD_CREATE processed after ``on_ready`` still counts (it then fires guild_available)."""

    def missing() -> bool:
        return any(g is None or g.unavailable for g in map(bot.get_guild, fake.guilds))

    while missing():
        await bot.wait_for("guild_available")
