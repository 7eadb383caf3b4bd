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

Beyond Discord's own checks the fake can misbehave on request: 429s (:meth:`inject_rate_limit`),
errors, late or held answers (:meth:`fail_next`, :meth:`delay_next`, :meth:`hold_next`), and
deleted channels (:meth:`delete_channel`). It records who each message pings and whether the bot
said which mentions it allows (:attr:`sends`, :meth:`sends_without_allowed_mentions`).

Bots may run gateway shards: each shard's session gets only its guilds and their events (see
:mod:`tests.fakes.discord_gateway`); GET /gateway/bot recommends ``recommended_shards``.
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

from tests.fakes.discord_gateway import Gateway, shard_of
from tests.fakes.discord_models import (
    ADMINISTRATOR,
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
    compute_pings,
    user_payload,
)
from tests.fakes.discord_rest import API, Fault, RestApi, Upload, json_response

ClientT = TypeVar("ClientT", bound=discord.Client)

DEFAULT_OWNER_ID = 100_000_000_000_000_001
ATTACHMENT_URL_LIFETIME_S = 24 * 3600.0
#: Discord de-duplicates enforced nonces "in the past few minutes"; the fake says five.
NONCE_WINDOW_S = 5 * 60.0

__all__ = [
    "MEMBER_PERMISSIONS",
    "FakeAttachment",
    "FakeDiscord",
    "FakeInteraction",
    "FakeMessage",
    "Fault",
    "MessageSend",
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


@dataclass(frozen=True)
class MessageSend:
    """One request that created or edited a bot message, and who the message pings after it.

    Recorded for channel messages, follow-ups, message and webhook-message (``@original``) edits,
    and interaction callbacks that carry message data (types 4 and 7); a create answered through
    ``enforce_nonce`` with an earlier message is recorded too. ``path`` is without ``/api/v10``.
    ``allowed_mentions`` is the payload's object, None when it had none (Discord then pings every
    mention in the text). ``may_ping``: the request created the message or replaced its text; an
    edit that leaves the text alone changes no mentions.
    """

    method: str
    path: str
    message_id: int
    creates: bool
    may_ping: bool
    allowed_mentions: dict[str, Any] | None
    pinged_users: frozenset[int]
    pinged_roles: frozenset[int]
    pinged_everyone: bool


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
        nonce_window_s: float = NONCE_WINDOW_S,
        recommended_shards: int = 1,
    ) -> None:
        """``privileged_intents``: privileged intent bits switched on in the "developer portal".

        ``recommended_shards``: the shard count GET /gateway/bot recommends (what an
        ``AutoShardedClient`` without ``shard_count`` runs).

        ``nonce_window_s``: how long an ``enforce_nonce`` create finds an earlier message with the
        same nonce (Discord: "in the past few minutes"); an attribute, so tests may change it.
        """
        self.bot_token = bot_token
        self.application_id = application_id
        self.bot_user_id = bot_user_id
        self.bot_user = user_payload(bot_user_id, bot_name, bot=True)
        self.token_lifetime_s = token_lifetime_s
        self.ack_deadline_s = ack_deadline_s
        self.privileged_intents = privileged_intents
        self.nonce_window_s = nonce_window_s
        # a slow gateway: seconds between IDENTIFY and READY, and when each READY went out
        self.ready_delay_s = 0.0
        self.ready_sent_at: list[float] = []
        self.recommended_shards = recommended_shards
        self.clock = Clock()
        self.notifier = Notifier()
        self._ids = Snowflakes(self.clock)
        self._secret = secrets.token_bytes(16)
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        #: Channels removed by :meth:`delete_channel`.
        self.deleted_channels: dict[int, Channel] = {}
        self.users: dict[int, dict[str, Any]] = {bot_user_id: self.bot_user}
        self.messages: dict[int, FakeMessage] = {}
        self.deleted: set[int] = set()
        self.attachments: dict[int, FakeAttachment] = {}
        self.interactions: dict[int, FakeInteraction] = {}
        self.interactions_by_token: dict[str, FakeInteraction] = {}
        #: Synced application commands: ``None`` → global, guild id → that guild's.
        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self.requests: list[RequestRecord] = []
        #: Every message create/edit request of the bot, in order (see :class:`MessageSend`).
        self.sends: list[MessageSend] = []
        self.unhandled: list[str] = []
        self._rate_limits: list[_RateLimit] = []
        self.faults: list[Fault] = []
        #: Set while stopping, so that delayed and held answers go out and the server can close.
        self.stopping = asyncio.Event()
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
        self.stopping.clear()
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
        """Release held and delayed answers, close connections, stop serving, restore discord.py's
        URLs."""
        self.stopping.set()
        for fault in self.faults:
            fault.release()
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
        self,
        guild_id: int,
        name: str,
        *,
        premium_tier: int = 0,
        owner_id: int = DEFAULT_OWNER_ID,
        locale: str = "en-US",
    ) -> Guild:
        """A server with @everyone (normal member permissions), the bot and the owner as members;
        ``locale`` is its preferred locale (``guild_locale`` in its interactions)."""
        guild = Guild(guild_id, name, owner_id, self.bot_user_id, premium_tier, locale)
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
        bot_can_view: bool = True,
        bot_can_read_history: bool = True,
    ) -> Channel:
        """A text channel; ``bot_can_*=False`` adds a member overwrite denying the bot that
        (Send Messages, Attach Files, View Channel, Read Message History)."""
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
            bot_can_view=bot_can_view,
            bot_can_read_history=bot_can_read_history,
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
            bot_can_view=parent.bot_can_view,
            bot_can_read_history=parent.bot_can_read_history,
            parent_id=parent_id,
            owner_id=owner_id,
            created_at=self.clock.iso(),
        )
        guild.channels[thread_id] = thread
        self.channels[thread_id] = thread
        return thread

    async def delete_channel(self, channel_id: int) -> Channel:
        """Delete a channel (a text channel's threads go with it), as a moderator would.

        Afterwards every route on it answers 404 10003 Unknown Channel (sending, fetching and
        listing messages, editing or deleting them, GET /channels/{id}), and so do callbacks,
        follow-ups and ``@original`` reads or edits of interactions invoked in it. Its messages
        stay in :attr:`messages` for inspection. Connected bots get CHANNEL_DELETE (THREAD_DELETE
        for a thread), so discord.py drops it from its cache. Returns the deleted channel.
        """
        channel = self.channels[channel_id]
        doomed = [channel, *(c for c in self.channels.values() if c.parent_id == channel_id)]
        for gone in doomed:
            del self.channels[gone.id]
            self.deleted_channels[gone.id] = gone
            if gone.guild_id is not None:
                del self.guilds[gone.guild_id].channels[gone.id]
        if channel.is_thread:
            event = {
                "id": str(channel.id),
                "guild_id": str(channel.guild_id),
                "parent_id": str(channel.parent_id),
                "type": 11,
            }
            await self.gateway.dispatch("THREAD_DELETE", event)
        else:
            # discord.py drops the channel's threads from its cache itself.
            await self.gateway.dispatch("CHANNEL_DELETE", channel.to_payload())
        await self.notifier.notify()
        return channel

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
        channel = self._live_channel(channel_id)
        return self.new_message(channel, self.users[author_id], {"content": content}, {})

    def advance_time(self, seconds: float) -> None:
        """Move the fake's clock (ack deadlines, token lifetimes, URL expiry) forward."""
        self.clock.advance(seconds)

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int,
        code: int = 0,
        message: str = "",
        *,
        times: int = 1,
        after_processing: bool = False,
        delay_s: float = 0.0,
    ) -> Fault:
        """Answer the next ``times`` matching requests with ``status`` and a Discord error body
        ``{"code": code, "message": message}`` (message default: ``"<status>: <reason>"``).

        ``path_pattern`` full-matches the path without ``/api/v10``, e.g.
        ``r"/channels/\\d+/messages"`` or ``r"/webhooks/\\d+/[^/]+"`` (follow-ups).
        ``after_processing=False``: the request is refused before anything happens.
        ``after_processing=True``: it is carried out (the message IS created or edited) and only
        its answer is replaced by the error: "the post landed but its answer was lost".
        ``delay_s`` waits that long before answering. An injected 429 (:meth:`inject_rate_limit`)
        for the same request comes first and does not use up the fault.

        discord.py retries some errors itself, so a test may see the request again: its REST
        client (channel messages, edits, fetches) retries 500, 502, 504 and 524 up to 5 tries,
        sleeping 1, 3, 5, 7 s between them, while its webhook client (interaction callbacks,
        follow-ups, ``@original``) retries every status >= 500 the same way; other statuses
        (e.g. 503 on the REST client, any 4xx) raise at once. Use ``times`` > 1 to outlast the
        retries, or a non-retried status to fail on the first answer.
        """
        if status < 400:
            raise ValueError(f"fail_next needs an error status, not {status}")
        return self._add_fault(
            method,
            path_pattern,
            times,
            status=status,
            code=code,
            message=message,
            after_processing=after_processing,
            delay_s=delay_s,
        )

    def clear_faults(self) -> None:
        """Release every held answer and forget every pending fault."""
        for fault in self.faults:
            fault.release()
        self.faults.clear()

    def delay_next(
        self,
        method: str,
        path_pattern: str,
        delay_s: float,
        *,
        times: int = 1,
        after_processing: bool = True,
    ) -> Fault:
        """Give the next ``times`` matching requests their normal answer ``delay_s`` late.

        ``after_processing=True`` (default): processed at once, answered late; ``False``: the
        request waits before it is processed. Stopping the fake cuts the delay short.
        """
        return self._add_fault(
            method, path_pattern, times, after_processing=after_processing, delay_s=delay_s
        )

    def hold_next(
        self,
        method: str,
        path_pattern: str,
        *,
        times: int = 1,
        after_processing: bool = True,
        status: int | None = None,
        code: int = 0,
        message: str = "",
    ) -> Fault:
        """Hold the answers of the next ``times`` matching requests until ``fault.release()``.

        With ``after_processing=True`` (default) the request is carried out first, so a test can
        ``await fake.wait_for_fault(fault)`` and then kill the bot while the answer is pending.
        After release the normal answer goes out, or, with ``status``, that error instead; the
        request shows in :attr:`requests` once answered. Stopping the fake releases every hold.
        """
        return self._add_fault(
            method,
            path_pattern,
            times,
            status=status,
            code=code,
            message=message,
            after_processing=after_processing,
            held=True,
        )

    async def wait_for_fault(
        self,
        fault: Fault,
        hits: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until ``fault`` caught ``hits`` requests (and, if held, holds the last one)."""
        await self.notifier.wait_for(
            lambda: fault.hits >= hits, timeout, f"{hits} hit(s) of {fault}"
        )

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
            self._live_channel(channel_id),
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
        locale: str = "en-US",
    ) -> FakeInteraction:
        """Click a button on a stored message (INTERACTION_CREATE type 3) as a user whose client
        speaks ``locale``.

        Raises ``ValueError`` for what a user cannot click: no such button, or a disabled one.
        """
        stored = self.messages[message if isinstance(message, int) else message.id]
        button = stored.component(custom_id)
        if stored.deleted or button is None or button.get("type") != 2 or button.get("disabled"):
            raise ValueError(f"message {stored.id} has no enabled button {custom_id!r}")
        channel = self._live_channel(stored.channel_id)
        member = self._member(self.guilds[stored.guild_id or 0], user_id, roles)
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._dispatch_interaction(
            3,
            channel,
            member,
            data,
            permissions=permissions,
            attachment_size_limit=attachment_size_limit,
            locale=locale,
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
        channel = self._live_channel(opener.channel_id)
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

    def sends_without_allowed_mentions(self) -> list[MessageSend]:
        """The bot's requests that could ping (creates, text edits) but carried no
        ``allowed_mentions``, so Discord pinged every mention in their text."""
        return [s for s in self.sends if s.may_ping and s.allowed_mentions is None]

    def channel_history(self, channel_id: int) -> list[FakeMessage]:
        """What GET /channels/{id}/messages lists: not deleted, not ephemeral; oldest first."""
        listed = [m for m in self.messages_in(channel_id) if not m.ephemeral]
        return sorted(listed, key=lambda m: m.id)

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

    async def wait_ready(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109
        *,
        sessions: int = 1,
    ) -> None:
        """Wait until ``sessions`` connected sessions (e.g. one per shard) identified and got READY
        and every GUILD_CREATE of their shard."""

        def ready() -> bool:
            live = [s for s in self.gateway.sessions.values() if s.ready and s.ws is not None]
            return len(live) >= sessions

        await self.notifier.wait_for(ready, timeout, f"{sessions} READY gateway session(s)")

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

    def bot_permissions(self, channel: Channel) -> int:
        """The bot's permissions in a channel: its roles, minus the channel's overwrites for it
        (an administrator keeps everything); in a DM what a member has."""
        if channel.guild_id is None:
            return MEMBER_PERMISSIONS
        guild = self.guilds[channel.guild_id]
        base = guild.base_permissions(guild.members[self.bot_user_id])
        return base if base & ADMINISTRATOR else base & ~channel.bot_denied

    def message_with_nonce(
        self, channel_id: int, author_id: int, nonce: int | str
    ) -> FakeMessage | None:
        """The newest message (deleted too) ``author_id`` created in the channel with this nonce
        within :attr:`nonce_window_s`; nonces compare as strings (``123`` equals ``"123"``)."""
        cutoff = self.clock.now() - self.nonce_window_s
        for message in reversed(self.messages.values()):
            if message.created_at < cutoff:
                break  # the store is in creation order, so every older one is out of the window
            if (
                message.channel_id == channel_id
                and message.author_id == author_id
                and message.nonce is not None
                and str(message.nonce) == str(nonce)
            ):
                return message
        return None

    def take_fault(self, request: web.Request) -> Fault | None:
        """The first injected fault matching this API request, with one use taken off it."""
        if not request.path.startswith(API + "/"):
            return None  # the gateway websocket and the CDN are not faulted
        path = request.path.removeprefix(API)
        for fault in self.faults:
            if fault.matches(request.method, path):
                fault.remaining -= 1
                return fault
        return None

    def record_send(
        self,
        request: web.Request,
        message: FakeMessage,
        payload: dict[str, Any],
        *,
        creates: bool,
    ) -> None:
        """Add a :class:`MessageSend` to :attr:`sends`."""
        send = MessageSend(
            method=request.method,
            path=request.path.removeprefix(API),
            message_id=message.id,
            creates=creates,
            may_ping=creates or message.changes_mention_text(payload),
            allowed_mentions=payload.get("allowed_mentions"),
            pinged_users=frozenset(message.pinged_users),
            pinged_roles=frozenset(message.pinged_roles),
            pinged_everyone=message.pinged_everyone,
        )
        self.sends.append(send)

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
        *,
        reference: FakeMessage | None = None,
    ) -> FakeMessage:
        """Store a message built from a create payload (ephemeral only through an interaction);
        ``reference``: the message it replies to."""
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
            reference=reference,
        )
        message.attachments = self._attachments_after(message, payload, files)
        self._update_pings(message, payload.get("allowed_mentions"))
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
        if message.changes_mention_text(payload):
            # Discord rebuilds the mentions from the new text under the edit's own
            # allowed_mentions (defaults if it has none), ignoring the create's.
            self._update_pings(message, payload.get("allowed_mentions"))

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

    def _live_channel(self, channel_id: int) -> Channel:
        """A channel users can act in; ``ValueError`` once it was deleted (or never existed)."""
        channel = self.channels.get(channel_id)
        if channel is None:
            state = "was deleted" if channel_id in self.deleted_channels else "does not exist"
            raise ValueError(f"channel {channel_id} {state}")
        return channel

    def _update_pings(self, message: FakeMessage, allowed: dict[str, Any] | None) -> None:
        """Recompute who the message pings, and its ``mentions`` user objects."""
        replied = None if message.reference is None else message.reference.author_id
        pings = compute_pings(message.mention_text, allowed, replied)
        message.set_pings(pings)
        message.mentions = [
            self.users.get(user_id) or user_payload(user_id, f"user{user_id}")
            for user_id in sorted(pings.users)
        ]

    def _add_fault(self, method: str, path_pattern: str, times: int, **behaviour: Any) -> Fault:
        fault = Fault(method.upper(), re.compile(path_pattern), times, **behaviour)
        self.faults.append(fault)
        return fault

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
        guild = self.guilds[channel.guild_id or 0]
        if not self.gateway.sessions_for(guild.id):
            raise RuntimeError(f"no bot is connected to the fake gateway for guild {guild.id}")
        if permissions is None:
            permissions = guild.base_permissions(member)
        bot_permissions = self.bot_permissions(channel)
        interaction_id, token = self._ids.next(), "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": kind,
            "token": token,
            "version": 1,
            "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": guild.preferred_locale, "features": []},
            "channel": channel.to_payload(permissions=permissions),
            "channel_id": str(channel.id),
            "member": member.to_payload(permissions=permissions),
            "app_permissions": str(bot_permissions),
            "locale": locale,
            "guild_locale": guild.preferred_locale,
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
    and has every guild of its shards, yield it, then close it.

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
    shards = _shards_run_by(bot)
    expected = [
        gid for gid in fake.guilds if shards is None or shard_of(gid, shards[1]) in shards[0]
    ]

    def missing() -> bool:
        return any(g is None or g.unavailable for g in map(bot.get_guild, expected))

    while missing():
        await bot.wait_for("guild_available")


def _shards_run_by(bot: discord.Client) -> tuple[set[int], int] | None:
    """The shard ids a connected bot runs and the shard count; None when it is not sharded."""
    if bot.shard_count is None:
        return None
    if isinstance(bot, discord.AutoShardedClient):
        return set(bot.shards), bot.shard_count
    return {bot.shard_id or 0}, bot.shard_count
