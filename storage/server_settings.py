"""Typed reads and writes of the per-server settings in bot.domain.server_settings."""

from __future__ import annotations

from typing import TypeVar

from bot.domain.access import VideoAccess
from bot.domain.server_settings import VIDEO_CHANNELS, VIDEO_ROLES, ServerSetting
from storage.base import Storage

T = TypeVar("T")


async def load_setting(storage: Storage, guild_id: int, setting: ServerSetting[T]) -> T:
    """A server's value of `setting`, or its default."""
    return setting.read(await storage.get_guild_setting(guild_id, setting.key))


async def save_setting(
    storage: Storage, guild_id: int, setting: ServerSetting[T], value: T
) -> None:
    """Store a server's value of `setting` (a value encoded as None goes back to the default)."""
    await storage.set_guild_setting(guild_id, setting.key, setting.encode(value))


async def load_video_access(storage: Storage, guild_id: int) -> VideoAccess:
    """A server's current rules for who may make videos where."""
    return VideoAccess(
        channel_ids=await load_setting(storage, guild_id, VIDEO_CHANNELS),
        role_ids=await load_setting(storage, guild_id, VIDEO_ROLES),
    )
