"""The per-server settings registry: keys, defaults, text forms, and reading and writing them
through a real store (storage/server_settings.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.domain.access import VideoAccess
from bot.domain.budget import BudgetPeriod, BudgetPolicy
from bot.domain.server_settings import (
    CONFIRM_ABOVE,
    LOG_CHANNEL,
    LOW_BALANCE,
    NSFW_POLICY,
    REGISTRY,
    VIDEO_CHANNELS,
    VIDEO_ROLES,
    NsfwPolicy,
    ServerSetting,
    format_ids,
    parse_ids,
)
from storage import open_storage
from storage.server_settings import load_setting, load_video_access, save_setting
from storage.sqlite import SqliteStorage

GUILD = 1001
OTHER_GUILD = 1002
POLICY = BudgetPolicy(member_allowance=1, server_allowance=1, period=BudgetPeriod.DAY)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    storage = await open_storage(str(tmp_path / "wanbot.db"), POLICY)
    yield storage
    await storage.close()


# --- the registry itself ----------------------------------------------------------------------
def test_registry_lists_every_setting_once_under_its_stored_key() -> None:
    assert REGISTRY == (
        LOG_CHANNEL,
        NSFW_POLICY,
        VIDEO_CHANNELS,
        VIDEO_ROLES,
        CONFIRM_ABOVE,
        LOW_BALANCE,
    )
    # the keys are what existing databases hold: renaming one would forget every server's value
    assert [setting.key for setting in REGISTRY] == [
        "log_channel_id",
        "nsfw_policy",
        "video_channel_ids",
        "video_role_ids",
        "confirm_above_micro",
        "low_balance_micro",
    ]


@pytest.mark.parametrize(
    ("setting", "default"),
    [
        (LOG_CHANNEL, None),
        (NSFW_POLICY, NsfwPolicy.SPOILER),
        (VIDEO_CHANNELS, ()),
        (VIDEO_ROLES, ()),
        (CONFIRM_ABOVE, None),
    ],
    ids=lambda value: getattr(value, "key", None),
)
def test_never_set_reads_as_the_default(setting: ServerSetting[Any], default: object) -> None:
    assert setting.default == default
    assert setting.read(None) == default


@pytest.mark.parametrize(
    ("setting", "value", "text"),
    [
        (LOG_CHANNEL, 123, "123"),
        (NSFW_POLICY, NsfwPolicy.SPOILER, "spoiler"),
        (NSFW_POLICY, NsfwPolicy.WITHHOLD, "withhold"),
        (VIDEO_CHANNELS, (12,), "12"),
        (VIDEO_CHANNELS, (12, 34), "12,34"),
        (VIDEO_ROLES, (56, 78), "56,78"),
        (CONFIRM_ABOVE, 500_000, "500000"),
    ],
)
def test_encode_and_read_round_trip(setting: ServerSetting[Any], value: object, text: str) -> None:
    assert setting.encode(value) == text
    assert setting.read(text) == value


@pytest.mark.parametrize(
    ("setting", "value"),
    [(LOG_CHANNEL, None), (VIDEO_CHANNELS, ()), (VIDEO_ROLES, ()), (CONFIRM_ABOVE, None)],
    ids=["no log channel", "no channels", "no roles", "no confirmation"],
)
def test_encoding_the_default_as_none_deletes(setting: ServerSetting[Any], value: object) -> None:
    assert setting.encode(value) is None


@pytest.mark.parametrize(
    ("setting", "junk"),
    [
        (NSFW_POLICY, "blur"),  # an unknown policy: the safe one, the spoiler
        (NSFW_POLICY, "WITHHOLD"),  # values are exact
        (NSFW_POLICY, ""),
        (LOG_CHANNEL, "general"),
        (LOG_CHANNEL, "-5"),
        (LOG_CHANNEL, "0"),
        (LOG_CHANNEL, "12,34"),  # a list is not one channel
        (LOG_CHANNEL, ""),
        (VIDEO_CHANNELS, "x,-3,0,,3.5"),
        (VIDEO_ROLES, ""),
        (CONFIRM_ABOVE, "0.50"),  # stored as micro-dollars, never as dollars
        (CONFIRM_ABOVE, "-5"),
        (CONFIRM_ABOVE, "0"),
    ],
)
def test_junk_text_reads_as_the_default(setting: ServerSetting[Any], junk: str) -> None:
    assert setting.read(junk) == setting.default


def test_a_log_channel_tolerates_what_a_hand_edit_leaves() -> None:
    assert LOG_CHANNEL.read(" 123 ") == 123


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        (None, ()),
        ("", ()),
        ("12", (12,)),
        ("12,34", (12, 34)),
        (" 12 , 34 ,12,", (12, 34)),  # spaces, a duplicate, a trailing comma
        ("12,x,-3,0,,3.5,34", (12, 34)),  # junk a hand edit could leave is skipped
    ],
)
def test_parse_ids(text: str | None, ids: tuple[int, ...]) -> None:
    assert parse_ids(text) == ids


def test_format_ids_round_trips_and_empty_deletes() -> None:
    assert format_ids((12, 34)) == "12,34" and parse_ids(format_ids((12, 34))) == (12, 34)
    assert format_ids(()) is None


# --- through a store --------------------------------------------------------------------------
async def test_defaults_before_anything_is_saved(store: SqliteStorage) -> None:
    for setting in REGISTRY:
        assert await load_setting(store, GUILD, setting) == setting.default
    assert await load_video_access(store, GUILD) == VideoAccess()


async def test_save_and_load_round_trip_per_server(store: SqliteStorage) -> None:
    await save_setting(store, GUILD, LOG_CHANNEL, 555)
    await save_setting(store, GUILD, NSFW_POLICY, NsfwPolicy.WITHHOLD)
    await save_setting(store, GUILD, VIDEO_CHANNELS, (1, 2))
    await save_setting(store, GUILD, VIDEO_ROLES, (3,))
    await save_setting(store, OTHER_GUILD, LOG_CHANNEL, 777)

    assert await load_setting(store, GUILD, LOG_CHANNEL) == 555
    assert await load_setting(store, GUILD, NSFW_POLICY) is NsfwPolicy.WITHHOLD
    assert await load_video_access(store, GUILD) == VideoAccess(channel_ids=(1, 2), role_ids=(3,))
    assert await load_setting(store, OTHER_GUILD, LOG_CHANNEL) == 777
    assert await load_setting(store, OTHER_GUILD, NSFW_POLICY) is NsfwPolicy.SPOILER
    # stored as the registry's text, under the registry's keys
    assert await store.get_guild_setting(GUILD, VIDEO_CHANNELS.key) == "1,2"
    assert await store.get_guild_setting(GUILD, NSFW_POLICY.key) == "withhold"


async def test_saving_a_value_that_encodes_as_none_deletes_it(store: SqliteStorage) -> None:
    await save_setting(store, GUILD, LOG_CHANNEL, 555)
    await save_setting(store, GUILD, VIDEO_ROLES, (3, 4))
    await save_setting(store, GUILD, LOG_CHANNEL, None)
    await save_setting(store, GUILD, VIDEO_ROLES, ())
    assert await store.get_guild_setting(GUILD, LOG_CHANNEL.key) is None
    assert await store.get_guild_setting(GUILD, VIDEO_ROLES.key) is None
    assert await load_setting(store, GUILD, LOG_CHANNEL) is None
    assert await load_video_access(store, GUILD) == VideoAccess()


async def test_junk_stored_by_hand_loads_as_the_default(store: SqliteStorage) -> None:
    await store.set_guild_setting(GUILD, NSFW_POLICY.key, "blur")
    await store.set_guild_setting(GUILD, LOG_CHANNEL.key, "#admin")
    await store.set_guild_setting(GUILD, VIDEO_CHANNELS.key, "12,x,12,34")
    assert await load_setting(store, GUILD, NSFW_POLICY) is NsfwPolicy.SPOILER
    assert await load_setting(store, GUILD, LOG_CHANNEL) is None
    assert (await load_video_access(store, GUILD)).channel_ids == (12, 34)
