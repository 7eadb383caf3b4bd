"""Typed reads and writes of the per-server settings in bot.domain.server_settings."""

from __future__ import annotations

from typing import TypeVar

from bot.domain.server_settings import ServerSetting
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
