"""World model of the fake Discord: guilds, channels, members, messages, attachments, interactions.

Everything here is plain data plus the conversion to the JSON payloads Discord sends. The HTTP and
gateway halves (``discord_rest.py``, ``discord_gateway.py``) mutate these objects; tests read them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

DISCORD_EPOCH_MS = 1_420_070_400_000
MIB = 1024 * 1024

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38
#: What @everyone may do in a freshly created server, and so what a normal member may do.
MEMBER_PERMISSIONS = (
    ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_APPLICATION_COMMANDS
    | SEND_MESSAGES_IN_THREADS
)
ALL_PERMISSIONS = (1 << 51) - 1

EPHEMERAL = 1 << 6
LOADING = 1 << 7
IS_COMPONENTS_V2 = 1 << 15
#: Flags an author may set: SUPPRESS_EMBEDS, EPHEMERAL, SUPPRESS_NOTIFICATIONS, COMPONENTS_V2.
SETTABLE_FLAGS = (1 << 2) | EPHEMERAL | (1 << 12) | IS_COMPONENTS_V2

#: How a message's text mentions a user (``<@id>``, legacy ``<@!id>``), a role, or everyone.
USER_MENTION = re.compile(r"<@!?(\d+)>")
ROLE_MENTION = re.compile(r"<@&(\d+)>")
EVERYONE_MENTION = re.compile(r"@(?:everyone|here)")
#: The values ``allowed_mentions.parse`` accepts.
MENTION_KINDS = ("everyone", "users", "roles")

#: Upload limit per file by boost tier (discord.py's ``Guild._PREMIUM_GUILD_LIMITS``).
TIER_FILESIZE_LIMIT = {0: 10 * MIB, 1: 10 * MIB, 2: 50 * MIB, 3: 100 * MIB}


class Clock:
    """Wall clock with a test-controlled offset, so expiry can be tested without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        """Seconds since the Unix epoch, shifted by :meth:`advance`."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.offset += seconds

    def iso(self) -> str:
        """The current time as Discord's ISO 8601 timestamp."""
        return dt.datetime.fromtimestamp(self.now(), dt.UTC).isoformat()


class Notifier:
    """Lets tests wait for a condition on the fake's state instead of sleeping.

    The waiting helpers take a ``timeout`` (ruff's ASYNC109 prefers ``asyncio.timeout`` at the call
    site) so that a test that waits for something that never happens fails in seconds by default.
    """

    def __init__(self) -> None:
        self._changed = asyncio.Condition()

    async def notify(self) -> None:
        """Wake every waiter so it re-checks its condition."""
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, probe: Callable[[], T], timeout: float, what: str) -> T:  # noqa: ASYNC109
        """Wait until ``probe()`` returns something truthy and return it."""
        result: list[T] = []

        def check() -> bool:
            value = probe()
            if value:
                result.append(value)
            return bool(value)

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(check), timeout)
            except TimeoutError:
                raise AssertionError(
                    f"fake Discord: timed out after {timeout}s waiting for {what}"
                ) from None
        return result[0]


class Snowflakes:
    """Generates increasing snowflakes whose timestamp part is the (shifted) current time."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last = 0
        self._counter = itertools.count()

    def next(self) -> int:
        """A new snowflake, strictly greater than every earlier one."""
        ms = int(self._clock.now() * 1000) - DISCORD_EPOCH_MS
        self._last = max(self._last + 1, (ms << 22) | (next(self._counter) & 0xFFF))
        return self._last


def user_payload(user_id: int, username: str, *, bot: bool = False) -> dict[str, Any]:
    """A Discord user object."""
    return {
        "id": str(user_id),
        "username": username,
        "discriminator": "0",
        "global_name": username,
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


@dataclass
class Role:
    """A guild role; the @everyone role has the guild's id."""

    id: int
    name: str
    permissions: int
    position: int = 0

    def to_payload(self) -> dict[str, Any]:
        """Discord role object."""
        return {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }


@dataclass
class Member:
    """A guild member."""

    user: dict[str, Any]
    roles: list[int]
    joined_at: str
    nick: str | None = None

    def to_payload(self, *, permissions: int | None = None) -> dict[str, Any]:
        """Discord guild member object; interactions add the member's ``permissions``."""
        payload: dict[str, Any] = {
            "user": self.user,
            "roles": [str(r) for r in self.roles],
            "joined_at": self.joined_at,
            "nick": self.nick,
            "avatar": None,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if permissions is not None:
            payload["permissions"] = str(permissions)
        return payload


@dataclass
class Channel:
    """A guild text channel (type 0), a public thread in one (type 11, ``parent_id`` set), or a DM
    (type 1, ``guild_id`` None)."""

    id: int
    name: str
    guild_id: int | None
    bot_user_id: int
    position: int = 0
    nsfw: bool = False
    bot_can_send: bool = True
    bot_can_attach: bool = True
    bot_can_view: bool = True
    bot_can_read_history: bool = True
    recipient: dict[str, Any] | None = None
    parent_id: int | None = None
    owner_id: int | None = None
    created_at: str = ""

    @property
    def is_thread(self) -> bool:
        """A thread (lives in its parent channel; listed in GUILD_CREATE's ``threads``)."""
        return self.parent_id is not None

    @property
    def bot_denied(self) -> int:
        """Permission bits a member overwrite takes away from the bot here."""
        allowed = (
            (self.bot_can_send, SEND_MESSAGES),
            (self.bot_can_attach, ATTACH_FILES),
            (self.bot_can_view, VIEW_CHANNEL),
            (self.bot_can_read_history, READ_MESSAGE_HISTORY),
        )
        denied = 0
        for can, bit in allowed:
            denied |= 0 if can else bit
        return denied

    def to_payload(self, *, permissions: int | None = None) -> dict[str, Any]:
        """Discord channel object (``permissions`` is added in interaction payloads)."""
        if self.guild_id is None:
            return {
                "id": str(self.id),
                "type": 1,
                "recipients": [self.recipient],
                "last_message_id": None,
            }
        if self.is_thread:
            return self._thread_payload(permissions)
        overwrites = []
        if self.bot_denied:
            deny = str(self.bot_denied)
            overwrites.append({"id": str(self.bot_user_id), "type": 1, "allow": "0", "deny": deny})
        payload: dict[str, Any] = {
            "id": str(self.id),
            "type": 0,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "nsfw": self.nsfw,
            "topic": None,
            "parent_id": None,
            "rate_limit_per_user": 0,
            "last_message_id": None,
            "permission_overwrites": overwrites,
        }
        if permissions is not None:
            payload["permissions"] = str(permissions)
        return payload

    def _thread_payload(self, permissions: int | None) -> dict[str, Any]:
        """A public thread: no overwrites of its own (it follows its parent's)."""
        payload: dict[str, Any] = {
            "id": str(self.id),
            "type": 11,
            "guild_id": str(self.guild_id),
            "parent_id": str(self.parent_id),
            "owner_id": str(self.owner_id),
            "name": self.name,
            "nsfw": self.nsfw,
            "rate_limit_per_user": 0,
            "last_message_id": None,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": self.created_at,
                "locked": False,
                "create_timestamp": self.created_at,
            },
        }
        if permissions is not None:
            payload["permissions"] = str(permissions)
        return payload


@dataclass
class Guild:
    """A server with its roles, channels and members."""

    id: int
    name: str
    owner_id: int
    bot_user_id: int
    premium_tier: int = 0
    preferred_locale: str = "en-US"  # the server's language (Community servers choose it)
    roles: dict[int, Role] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)

    @property
    def filesize_limit(self) -> int:
        """Upload limit for bot messages in this guild."""
        return TIER_FILESIZE_LIMIT[self.premium_tier]

    def base_permissions(self, member: Member) -> int:
        """Union of @everyone and the member's roles (owner or administrator: everything)."""
        if member.user["id"] == str(self.owner_id):
            return ALL_PERMISSIONS
        perms = self.roles[self.id].permissions
        for role_id in member.roles:
            perms |= self.roles[role_id].permissions
        return ALL_PERMISSIONS if perms & ADMINISTRATOR else perms

    def to_payload(self, *, gateway: bool = False) -> dict[str, Any]:
        """Discord guild object as in GET /guilds/{id}, or GUILD_CREATE (with the bot's member)."""
        payload = {
            "id": str(self.id),
            "name": self.name,
            "owner_id": str(self.owner_id),
            "premium_tier": self.premium_tier,
            "premium_subscription_count": [0, 2, 7, 14][self.premium_tier],
            "member_count": len(self.members),
            "large": False,
            "unavailable": False,
            "features": [],
            "preferred_locale": self.preferred_locale,
            "roles": [r.to_payload() for r in self.roles.values()],
            "channels": [c.to_payload() for c in self.channels.values() if not c.is_thread],
            "members": [],
            "threads": [c.to_payload() for c in self.channels.values() if c.is_thread],
            "emojis": [],
            "stickers": [],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }
        if gateway:
            payload["members"] = [self.members[self.bot_user_id].to_payload()]
        return payload


@dataclass(eq=False)
class FakeAttachment:
    """A file held by the fake CDN: an input for a command, or a file the bot uploaded."""

    id: int
    filename: str
    data: bytes
    content_type: str | None
    url: str
    expires_at: float
    width: int | None = None
    height: int | None = None

    @property
    def size(self) -> int:
        """Size in bytes."""
        return len(self.data)

    def to_payload(self) -> dict[str, Any]:
        """Discord attachment object."""
        payload: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
            "width": self.width,
            "height": self.height,
        }
        if self.content_type is not None:
            payload["content_type"] = self.content_type
        return payload


@dataclass(frozen=True)
class Pings:
    """Who a message notifies: users, roles, and whether @everyone/@here."""

    users: frozenset[int] = frozenset()
    roles: frozenset[int] = frozenset()
    everyone: bool = False


def compute_pings(
    text: str, allowed_mentions: dict[str, Any] | None, replied_user_id: int | None
) -> Pings:
    """Who ``text`` pings under Discord's allowed-mentions rules.

    Without ``allowed_mentions`` every mention in the text pings, and a reply pings the replied
    user. With it, a mention pings only when ``parse`` names its kind or the ``users``/``roles``
    list names it (and the text still mentions it: the lists never add pings the text lacks),
    and a reply pings the replied user only with ``replied_user: true``.

    Deliberately not applied: the author's Mention Everyone permission and a role's
    ``mentionable`` flag, which decide on Discord whether @everyone and role mentions notify.
    The result is what the payload permits, i.e. what pings once a server grants those rights.
    """
    users = {int(i) for i in USER_MENTION.findall(text)}
    roles = {int(i) for i in ROLE_MENTION.findall(text)}
    everyone = EVERYONE_MENTION.search(text) is not None
    replied = replied_user_id is not None
    if allowed_mentions is not None:
        parse = set(allowed_mentions.get("parse") or [])
        if "users" not in parse:
            users &= {int(i) for i in allowed_mentions.get("users") or []}
        if "roles" not in parse:
            roles &= {int(i) for i in allowed_mentions.get("roles") or []}
        everyone = everyone and "everyone" in parse
        replied = replied and bool(allowed_mentions.get("replied_user"))
    if replied and replied_user_id is not None:
        users.add(replied_user_id)
    return Pings(frozenset(users), frozenset(roles), everyone)


@dataclass(eq=False)
class FakeMessage:
    """A message in the fake's store; ``history`` holds a snapshot from before each edit.

    ``pinged_users``/``pinged_roles``/``pinged_everyone`` say who the message notifies, as of its
    latest create or content edit (see :func:`compute_pings`); ``mentions`` are the pinged users'
    objects, as Discord lists them. ``nonce`` is the create request's nonce, if it had one;
    ``nonce_replays`` counts later creates with ``enforce_nonce`` answered with this message.
    """

    id: int
    channel_id: int
    guild_id: int | None
    author: dict[str, Any]
    timestamp: str
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[FakeAttachment] = field(default_factory=list)
    flags: int = 0
    edited_timestamp: str | None = None
    interaction_id: int | None = None
    webhook_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False
    nonce: int | str | None = None
    nonce_replays: int = 0
    reference: FakeMessage | None = field(default=None, repr=False)
    pinged_users: set[int] = field(default_factory=set)
    pinged_roles: set[int] = field(default_factory=set)
    pinged_everyone: bool = False
    mentions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def created_at(self) -> float:
        """Creation time (Unix seconds on the fake's clock), from the snowflake like Discord."""
        return ((self.id >> 22) + DISCORD_EPOCH_MS) / 1000

    @property
    def mention_text(self) -> str:
        """The text mentions are parsed from: the content, and text displays in components v2."""
        if not self.flags & IS_COMPONENTS_V2:
            return self.content
        texts = [c.get("content") or "" for c in self.iter_components() if c.get("type") == 10]
        return "\n".join([self.content, *texts])

    def changes_mention_text(self, payload: dict[str, Any]) -> bool:
        """Whether an edit payload replaces the text mentions are parsed from."""
        return "content" in payload or (
            "components" in payload and bool(self.flags & IS_COMPONENTS_V2)
        )

    def set_pings(self, pings: Pings) -> None:
        """Record who the message notifies."""
        self.pinged_users = set(pings.users)
        self.pinged_roles = set(pings.roles)
        self.pinged_everyone = pings.everyone

    @property
    def ephemeral(self) -> bool:
        """Whether only the invoking user can see it."""
        return bool(self.flags & EPHEMERAL)

    @property
    def author_id(self) -> int:
        """The author's user id."""
        return int(self.author["id"])

    def snapshot(self) -> dict[str, Any]:
        """A copy of the editable state (attachments as filenames)."""
        return json.loads(
            json.dumps(
                {
                    "content": self.content,
                    "embeds": self.embeds,
                    "components": self.components,
                    "attachments": [a.filename for a in self.attachments],
                    "flags": self.flags,
                    "edited_timestamp": self.edited_timestamp,
                }
            )
        )

    def iter_components(self) -> Iterator[dict[str, Any]]:
        """Every component, depth first (rows, their children, labels, containers...)."""
        stack = list(reversed(self.components))
        while stack:
            component = stack.pop()
            yield component
            children = list(component.get("components", []))
            if "component" in component:
                children.append(component["component"])
            stack.extend(reversed(children))

    def component(self, custom_id: str) -> dict[str, Any] | None:
        """The component with this ``custom_id``, if the message has one."""
        return next((c for c in self.iter_components() if c.get("custom_id") == custom_id), None)

    @property
    def message_type(self) -> int:
        """Message type: 20 for an interaction response, 19 for a reply, else 0 (default)."""
        if self.interaction_metadata is not None:
            return 20
        return 0 if self.reference is None else 19

    def to_payload(self, *, nested: bool = False) -> dict[str, Any]:
        """Discord message object (``nested``: as a ``referenced_message``, without its own)."""
        payload: dict[str, Any] = {
            "id": str(self.id),
            "type": self.message_type,
            "channel_id": str(self.channel_id),
            "author": self.author,
            "content": self.content,
            "embeds": self.embeds,
            "components": self.components,
            "attachments": [a.to_payload() for a in self.attachments],
            "flags": self.flags,
            "mentions": self.mentions,
            "mention_roles": [str(r) for r in sorted(self.pinged_roles)],
            "mention_everyone": self.pinged_everyone,
            "pinned": False,
            "tts": False,
            "timestamp": self.timestamp,
            "edited_timestamp": self.edited_timestamp,
        }
        if self.guild_id is not None:
            payload["guild_id"] = str(self.guild_id)
        if self.webhook_id is not None:
            payload["webhook_id"] = str(self.webhook_id)
            payload["application_id"] = str(self.webhook_id)
        if self.interaction_metadata is not None:
            payload["interaction_metadata"] = self.interaction_metadata
        if self.reference is not None and not nested:
            payload.update(self._reference_payload(self.reference))
        return payload

    @staticmethod
    def _reference_payload(reference: FakeMessage) -> dict[str, Any]:
        """A reply's ``message_reference``, and the replied message unless it was deleted."""
        ref: dict[str, Any] = {
            "type": 0,
            "message_id": str(reference.id),
            "channel_id": str(reference.channel_id),
        }
        if reference.guild_id is not None:
            ref["guild_id"] = str(reference.guild_id)
        replied = None if reference.deleted else reference.to_payload(nested=True)
        return {"message_reference": ref, "referenced_message": replied}


@dataclass(eq=False)
class FakeInteraction:
    """One interaction the fake dispatched, and everything the bot did with it."""

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    dispatched_at: float
    notifier: Notifier = field(repr=False)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    original: FakeMessage | None = None
    followups: list[FakeMessage] = field(default_factory=list)

    @property
    def user_id(self) -> int:
        """The invoking user."""
        return int(self.payload["member"]["user"]["id"])

    @property
    def channel_id(self) -> int:
        """The channel it was invoked in."""
        return int(self.payload["channel_id"])

    @property
    def message_id(self) -> int | None:
        """For a component (or modal from a component) interaction: the message it came from."""
        message = self.payload.get("message")
        return None if message is None else int(message["id"])

    @property
    def attachment_size_limit(self) -> int:
        """Upload limit for responses and follow-ups."""
        return int(self.payload["attachment_size_limit"])

    @property
    def acked(self) -> bool:
        """Whether the bot answered the callback."""
        return bool(self.callbacks)

    @property
    def response_type(self) -> int | None:
        """The callback type the bot answered with (4, 5, 6, 7 or 9), if any."""
        return self.callbacks[0]["type"] if self.callbacks else None

    @property
    def modal(self) -> dict[str, Any] | None:
        """The modal the bot opened (callback type 9 data), if any."""
        return self.callbacks[0]["data"] if self.response_type == 9 else None

    async def wait_for(
        self,
        predicate: Callable[[FakeInteraction], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until ``predicate(self)`` holds."""
        await self.notifier.wait_for(lambda: predicate(self), timeout, f"interaction {self.id}")

    async def wait_until_acked(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait for the bot's callback."""
        await self.wait_for(lambda i: i.acked, timeout)

    async def wait_for_followups(
        self,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[FakeMessage]:
        """Wait until the bot sent at least ``count`` follow-ups and return them."""
        await self.wait_for(lambda i: len(i.followups) >= count, timeout)
        return self.followups
