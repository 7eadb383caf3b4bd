"""Gateway websocket of the fake Discord: HELLO, heartbeats, IDENTIFY/READY, RESUME, dispatch.

Sharding works like Discord's: an IDENTIFY with ``"shard": [id, count]`` gets READY and GUILD_CREATE
only for the guilds with ``(guild_id >> 22) % count == id``, and a guild's events go only to the
sessions of that shard (events without a guild to shard 0). An IDENTIFY without ``"shard"`` gets
every guild. Two sessions may identify as the same shard; both then receive its events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord

log = logging.getLogger("tests.fakes.discord")

HEARTBEAT_INTERVAL_MS = 41_250
#: GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT: need switching on in the developer portal.
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | (1 << 15)
#: Close codes after which Discord drops the session (no RESUME).
FINAL_CLOSE_CODES = (1000, 1001)


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard that receives a guild's events (Discord's formula)."""
    return (guild_id >> 22) % shard_count


def parse_shard(value: Any) -> tuple[int, int] | None:
    """IDENTIFY's ``shard`` as (id, count); None when absent. ValueError when Discord would close
    with 4010 Invalid shard."""
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in value)
    ):
        raise ValueError(f"shard must be [id, count], not {value!r}")
    shard_id, count = value
    if not 0 <= shard_id < count:
        raise ValueError(f"shard id {shard_id} is not below the shard count {count}")
    return shard_id, count


@dataclass(eq=False)
class GatewaySession:
    """One identified session; keeps its dispatches so a RESUME can replay what was missed."""

    id: str
    intents: int
    ws: web.WebSocketResponse | None
    seq: int = 0
    frames: list[dict[str, Any]] = field(default_factory=list)
    ready: bool = False
    #: (shard id, shard count) from IDENTIFY; None: the session receives every guild.
    shard: tuple[int, int] | None = None

    def receives(self, guild_id: int | None) -> bool:
        """Whether this session gets the events of ``guild_id`` (None: not a guild's, e.g. a DM;
        Discord sends those to shard 0)."""
        if self.shard is None:
            return True
        shard_id, count = self.shard
        return shard_id == (0 if guild_id is None else shard_of(guild_id, count))


class Gateway:
    """Serves ``/gateway``: plain-text JSON frames (discord.py only inflates binary frames)."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.sessions: dict[str, GatewaySession] = {}
        self.connections: set[web.WebSocketResponse] = set()
        #: Every frame a client sent, tokens redacted, in order.
        self.received: list[dict[str, Any]] = []
        #: The connect URL's query (``v``, ``encoding``, ``compress``) of every connection.
        self.queries: list[dict[str, str]] = []

    @property
    def live_sessions(self) -> list[GatewaySession]:
        """Sessions that receive dispatches (connected, or resumable)."""
        return [s for s in self.sessions.values() if s.ready]

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """One websocket connection from HELLO to close."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.queries.append(dict(request.query))
        if request.query.get("v") != "10" or request.query.get("encoding", "json") != "json":
            await ws.close(code=4012, message=b"Invalid API version")
            return ws
        self.connections.add(ws)
        session: GatewaySession | None = None
        try:
            await self.send(ws, {"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}})
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                session = await self.on_frame(ws, json.loads(msg.data), session)
                await self.fake.notifier.notify()
        finally:
            self.connections.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
                if ws.close_code in FINAL_CLOSE_CODES:
                    del self.sessions[session.id]
            await self.fake.notifier.notify()
        return ws

    async def on_frame(
        self, ws: web.WebSocketResponse, frame: dict[str, Any], session: GatewaySession | None
    ) -> GatewaySession | None:
        """Answer one client frame; returns the connection's session (new after IDENTIFY/RESUME)."""
        op, data = frame.get("op"), frame.get("d")
        self.received.append(redact(frame))
        if op == 1:
            await self.send(ws, {"op": 11})
        elif op == 2:
            return await self.identify(ws, data or {})
        elif op == 6:
            return await self.resume(ws, data or {})
        elif op == 8 and session is not None:
            await self.send_member_chunk(data or {})
        elif op != 3:
            log.warning("fake Discord gateway ignored op %s", op)
        return session

    async def identify(
        self, ws: web.WebSocketResponse, data: dict[str, Any]
    ) -> GatewaySession | None:
        """IDENTIFY: check the token, intents and shard, then READY and a GUILD_CREATE per guild
        of the session's shard."""
        if data.get("token") != self.fake.bot_token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        intents = data.get("intents")
        if not isinstance(intents, int):
            await ws.close(code=4013, message=b"Invalid intent(s).")
            return None
        if intents & PRIVILEGED_INTENTS & ~self.fake.privileged_intents:
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            return None
        try:
            shard = parse_shard(data.get("shard"))
        except ValueError:
            await ws.close(code=4010, message=b"Invalid shard.")
            return None
        session = GatewaySession(id=secrets.token_hex(16), intents=intents, ws=ws, shard=shard)
        self.sessions[session.id] = session
        await asyncio.sleep(self.fake.ready_delay_s)
        self.fake.ready_sent_at.append(asyncio.get_running_loop().time())
        await self.dispatch_to(session, "READY", self.ready_payload(session))
        for guild in self.fake.guilds.values():
            if session.receives(guild.id):
                await self.dispatch_to(session, "GUILD_CREATE", guild.to_payload(gateway=True))
        session.ready = True
        return session

    def ready_payload(self, session: GatewaySession) -> dict[str, Any]:
        """READY: the shard's guilds as unavailable stubs, the session and where to resume it."""
        guilds = [gid for gid in self.fake.guilds if session.receives(gid)]
        payload: dict[str, Any] = {
            "v": 10,
            "user": self.fake.bot_user,
            "guilds": [{"id": str(gid), "unavailable": True} for gid in guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.fake.gateway_url,
            "application": {
                "id": str(self.fake.application_id),
                "flags": self.fake.application_flags,
            },
            "private_channels": [],
            "relationships": [],
        }
        if session.shard is not None:
            payload["shard"] = list(session.shard)
        return payload

    async def resume(
        self, ws: web.WebSocketResponse, data: dict[str, Any]
    ) -> GatewaySession | None:
        """RESUME: replay what the session missed, then RESUMED; else op 9 (re-identify)."""
        session = self.sessions.get(data.get("session_id") or "")
        if session is None or data.get("token") != self.fake.bot_token:
            await self.send(ws, {"op": 9, "d": False})
            return None
        session.ws = ws
        seen = data.get("seq") or 0
        for frame in session.frames:
            if frame["s"] > seen:
                await self.send(ws, frame)
        await self.dispatch_to(session, "RESUMED", {})
        return session

    async def send_member_chunk(self, data: dict[str, Any]) -> None:
        """REQUEST_GUILD_MEMBERS (op 8): every member in one GUILD_MEMBERS_CHUNK."""
        guild = self.fake.guilds[int(data["guild_id"])]
        chunk = {
            "guild_id": str(guild.id),
            "members": [m.to_payload() for m in guild.members.values()],
            "chunk_index": 0,
            "chunk_count": 1,
            "nonce": data.get("nonce"),
        }
        await self.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send an event to every live session of the shard of its ``guild_id`` (buffered for
        sessions that are reconnecting)."""
        for session in self.sessions_for(_guild_id(data)):
            await self.dispatch_to(session, event, data)

    def sessions_for(self, guild_id: int | None) -> list[GatewaySession]:
        """Live sessions that receive the events of ``guild_id`` (None: events of no guild)."""
        return [s for s in self.live_sessions if s.receives(guild_id)]

    async def dispatch_to(self, session: GatewaySession, event: str, data: dict[str, Any]) -> None:
        """One op 0 frame with the session's next sequence number."""
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.frames.append(frame)
        if session.ws is not None and not session.ws.closed:
            with contextlib.suppress(ConnectionResetError):
                await self.send(session.ws, frame)

    async def reconnect_all(self) -> None:
        """Send op 7 RECONNECT: clients reconnect and RESUME."""
        for ws in list(self.connections):
            await self.send(ws, {"op": 7, "d": None})

    async def close(self) -> None:
        """Close every connection (server going away)."""
        for ws in list(self.connections):
            await ws.close(code=1001)

    @staticmethod
    async def send(ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        """Send a frame as a text message."""
        await ws.send_str(json.dumps(frame))


def _guild_id(data: dict[str, Any]) -> int | None:
    """The guild an event belongs to, from its ``guild_id`` field."""
    guild_id = data.get("guild_id")
    return None if guild_id is None else int(guild_id)


def redact(frame: dict[str, Any]) -> dict[str, Any]:
    """The frame without its token."""
    data = frame.get("d")
    if isinstance(data, dict) and "token" in data:
        return {**frame, "d": {**data, "token": "<redacted>"}}
    return frame
