"""Allowed channels and roles for /video: the pure rules, and end to end through the real bot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import WanBot
from bot.domain.access import (
    MAX_ENTRIES,
    Denial,
    TooManyEntries,
    VideoAccess,
    check_access,
    with_id,
    without_id,
)
from bot.domain.server_settings import VIDEO_CHANNELS, VIDEO_ROLES
from cogs.texts import access_refusal, access_summary
from storage.server_settings import load_setting, load_video_access, save_setting
from tests.discord_world import (
    ADMIN_ROLE,
    CHANNEL,
    GUILD,
    MEMBER,
    World,
    ledger_kinds,
    make_world,
)
from tests.fakes.discord_models import FakeInteraction, FakeMessage

EPHEMERAL = 64
ADMIN = 700_000_000_000_000_300  # has ADMIN_ROLE, which carries Manage Server
MAKER = 700_000_000_000_000_301  # has MAKER_ROLE
MAKER_ROLE = 700_000_000_000_000_201
GENERAL = 700_000_000_000_000_020  # a channel not meant for videos
LOCKED = 700_000_000_000_000_021  # the bot may not post here
THREAD = 700_000_000_000_000_030  # a thread in CHANNEL
GENERAL_THREAD = 700_000_000_000_000_031  # a thread in GENERAL
REFUSED = "⚠️ Only members with the **Manage Server** permission can do that."
ONLY_IN_CHANNEL = f"🚫 Videos can be made only in <#{CHANNEL}> (threads in them count too)."
NEEDS_ROLE = (
    f"🚫 Making videos on this server needs the <@&{MAKER_ROLE}> role. "
    "Ask a server admin if you should have it."
)


# --- the pure rules -------------------------------------------------------------------------------

OPEN = VideoAccess()
CHANNELS = VideoAccess(channel_ids=(1, 2))
ROLES = VideoAccess(role_ids=(10, 11))
BOTH = VideoAccess(channel_ids=(1,), role_ids=(10,))


@pytest.mark.parametrize(
    ("access", "channel_id", "parent_id", "role_ids", "expected"),
    [
        (OPEN, 5, None, (), None),
        (CHANNELS, 1, None, (), None),
        (CHANNELS, 2, None, (), None),
        (CHANNELS, 5, None, (10,), (True, False)),
        (CHANNELS, 7, 2, (), None),  # a thread of an allowed channel
        (CHANNELS, 7, 5, (), (True, False)),  # a thread elsewhere
        (VideoAccess(channel_ids=(7,)), 7, 5, (), None),  # a thread allowed on its own
        (VideoAccess(channel_ids=(7,)), 5, None, (), (True, False)),  # ...not its parent
        (ROLES, 5, None, (11, 99), None),  # any one listed role is enough
        (ROLES, 5, None, (99,), (False, True)),
        (ROLES, 5, None, (), (False, True)),
        (BOTH, 1, None, (10,), None),
        (BOTH, 1, None, (), (False, True)),
        (BOTH, 5, None, (10,), (True, False)),
        (BOTH, 5, None, (), (True, True)),
    ],
)
def test_check_access(
    access: VideoAccess,
    channel_id: int,
    parent_id: int | None,
    role_ids: tuple[int, ...],
    expected: tuple[bool, bool] | None,
) -> None:
    denial = check_access(access, channel_id=channel_id, parent_id=parent_id, role_ids=role_ids)
    assert denial == (None if expected is None else Denial(*expected, access))


def test_adding_and_removing_ids() -> None:
    assert with_id((1,), 2) == (1, 2) and with_id((1, 2), 1) == (1, 2)
    assert without_id((1, 2), 1) == (2,) and without_id((2,), 1) == (2,)
    full = tuple(range(1, MAX_ENTRIES + 1))
    assert with_id(full, 1) == full  # already there: no error
    with pytest.raises(TooManyEntries):
        with_id(full, MAX_ENTRIES + 1)


def test_refusal_names_where_and_who() -> None:
    assert access_refusal(Denial(True, False, CHANNELS)) == (
        "🚫 Videos can be made only in <#1> or <#2> (threads in them count too)."
    )
    assert access_refusal(Denial(False, True, ROLES)) == (
        "🚫 Making videos on this server needs the <@&10> or <@&11> role. "
        "Ask a server admin if you should have it."
    )
    assert access_refusal(Denial(True, True, BOTH)) == (
        "🚫 Videos can be made only in <#1> (threads in them count too), "
        "by members with the <@&10> role."
    )


def test_summary() -> None:
    assert access_summary(OPEN) == (
        "Videos can be made in **any channel**.\n**Every member** can make videos."
    )
    three = VideoAccess(channel_ids=(1, 2, 3), role_ids=(10,))
    assert access_summary(three, gone={2, 10}) == (
        "Videos can be made only in <#1>, <#2> (not found) and <#3> (and threads in them).\n"
        "Only members with the <@&10> (not found) role can make videos."
    )


# --- end to end -----------------------------------------------------------------------------------


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as world:
        fake = world.discord
        fake.add_role(GUILD, MAKER_ROLE, "Video makers")
        fake.add_member(GUILD, ADMIN, username="root", roles=[ADMIN_ROLE])
        fake.add_member(GUILD, MAKER, username="mika", roles=[MAKER_ROLE])
        fake.add_channel(GUILD, GENERAL, "general")
        fake.add_channel(GUILD, LOCKED, "locked", bot_can_send=False)
        fake.add_thread(GUILD, THREAD, "cats", parent_id=CHANNEL, owner_id=MEMBER)
        fake.add_thread(GUILD, GENERAL_THREAD, "chat", parent_id=GENERAL, owner_id=MEMBER)
        yield world


def channel(channel_id: int) -> dict[str, Any]:
    """The `channel` option (type 7)."""
    return {"name": "channel", "type": 7, "value": channel_id}


def role(role_id: int) -> dict[str, Any]:
    """The `role` option (type 8)."""
    return {"name": "role", "type": 8, "value": role_id}


async def settings(
    world: World, *path: str, options: tuple[dict[str, Any], ...] = (), user_id: int = ADMIN
) -> FakeMessage:
    """/wanbot-settings <group> <sub> ... (or <sub> ...) as `user_id`; the bot's reply."""
    typed: list[dict[str, Any]] = [{"name": path[-1], "type": 1, "options": list(options)}]
    if len(path) == 2:
        typed = [{"name": path[0], "type": 2, "options": typed}]
    interaction = await world.discord.invoke_command(
        "wanbot-settings", guild_id=GUILD, channel_id=CHANNEL, user_id=user_id, options=typed
    )
    await interaction.wait_until_acked()
    assert interaction.response_type == 4, interaction.callbacks
    assert interaction.original is not None
    return interaction.original


async def refused(interaction: FakeInteraction) -> str:
    """What the member was told, privately, in the first and only answer."""
    await interaction.wait_until_acked()
    [callback] = interaction.callbacks
    assert callback["type"] == 4, callback  # answered at once: not deferred, no modal
    assert interaction.original is not None and interaction.original.flags & EPHEMERAL
    return interaction.original.content


async def assert_nothing_happened(world: World, bot: WanBot, submissions: int = 0) -> None:
    """Refusals downloaded, uploaded, submitted and reserved nothing (beyond the `submissions`
    earlier videos, each of which downloaded and uploaded one image)."""
    await asyncio.sleep(0.1)  # anything the refusal might have started would show by now
    assert len(world.discord.requests_to("GET", r"/ephemeral-attachments/.*")) == submissions
    assert len(world.wavespeed.uploads) == submissions
    assert len(world.wavespeed.submissions) == submissions
    assert [kind for kind, _ in await ledger_kinds(bot)].count("reserve") == submissions


def has_video(message: FakeMessage) -> bool:
    """A message that carries an mp4."""
    return any(a.filename.endswith(".mp4") for a in message.attachments)


async def delivered(world: World, where: int, prompt: str) -> FakeMessage:
    """The public result message for `prompt`, posted in channel `where`."""
    return await world.discord.wait_for_message(
        lambda m: has_video(m) and prompt in m.content and m.channel_id == where, timeout=10
    )


async def test_allowed_channel_keeps_videos_there_and_its_threads(world: World) -> None:
    async with world.bot() as bot:
        reply = await settings(world, "video-channels", "add", options=(channel(CHANNEL),))
        assert reply.flags & EPHEMERAL
        assert reply.content.splitlines()[0] == (
            f"✅ /video now works in <#{CHANNEL}> (and threads in it). "
            "From now on it works only in listed channels."
        )
        assert f"Videos can be made only in <#{CHANNEL}> (and threads in them)." in reply.content
        storage = bot.services.storage
        assert await load_setting(storage, GUILD, VIDEO_CHANNELS) == (CHANNEL,)

        # elsewhere: refused before anything is downloaded, charged or submitted; admins too
        for where, who in [(GENERAL, MEMBER), (GENERAL_THREAD, MEMBER), (GENERAL, ADMIN)]:
            told = await refused(await world.video("not here", channel_id=where, user_id=who))
            assert told == ONLY_IN_CHANNEL, (where, who)
        await assert_nothing_happened(world, bot)

        # the channel itself, and a thread in it
        await world.video("in the channel")
        await delivered(world, CHANNEL, "in the channel")
        await world.video("in the thread", channel_id=THREAD)
        await delivered(world, THREAD, "in the thread")
        assert len(world.wavespeed.submissions) == 2


async def test_required_role(world: World) -> None:
    async with world.bot() as bot:
        reply = await settings(world, "video-roles", "add", options=(role(MAKER_ROLE),))
        assert reply.flags & EPHEMERAL
        assert reply.content.splitlines()[0] == (
            f"✅ Members with <@&{MAKER_ROLE}> can make videos. "
            "From now on only members with a listed role can."
        )
        assert f"Only members with the <@&{MAKER_ROLE}> role can make videos." in reply.content
        storage = bot.services.storage
        assert await load_setting(storage, GUILD, VIDEO_ROLES) == (MAKER_ROLE,)

        for who in (MEMBER, ADMIN):  # Manage Server alone doesn't make videos
            assert await refused(await world.video(user_id=who)) == NEEDS_ROLE
        await assert_nothing_happened(world, bot)

        await world.video("made by a maker", user_id=MAKER)
        result = await delivered(world, CHANNEL, "made by a maker")
        assert f"<@{MAKER}>" in result.content


async def test_both_rules_at_once_are_named_together(world: World) -> None:
    async with world.bot() as bot:
        await settings(world, "video-channels", "add", options=(channel(CHANNEL),))
        await settings(world, "video-roles", "add", options=(role(MAKER_ROLE),))
        told = await refused(await world.video(channel_id=GENERAL, user_id=MEMBER))
        assert told == (
            f"🚫 Videos can be made only in <#{CHANNEL}> (threads in them count too), "
            f"by members with the <@&{MAKER_ROLE}> role."
        )
        assert await refused(await world.video(channel_id=GENERAL, user_id=MAKER)) == (
            ONLY_IN_CHANNEL
        )
        assert await refused(await world.video(channel_id=CHANNEL, user_id=MEMBER)) == NEEDS_ROLE
        await assert_nothing_happened(world, bot)


SETTINGS_CHANGES: list[tuple[tuple[str, ...], tuple[dict[str, Any], ...]]] = [
    (("video-channels", "add"), (channel(CHANNEL),)),
    (("video-channels", "remove"), (channel(CHANNEL),)),
    (("video-channels", "clear"), ()),
    (("video-roles", "add"), (role(MAKER_ROLE),)),
    (("video-roles", "remove"), (role(MAKER_ROLE),)),
    (("video-roles", "clear"), ()),
    (("show",), ()),
]


async def test_members_without_manage_server_cannot_change_or_see_the_rules(world: World) -> None:
    async with world.bot() as bot:
        storage = bot.services.storage
        await save_setting(storage, GUILD, VIDEO_CHANNELS, (GENERAL,))
        for path, options in SETTINGS_CHANGES:
            reply = await settings(world, *path, options=options, user_id=MAKER)
            assert reply.flags & EPHEMERAL
            assert reply.content == REFUSED, path
        assert await load_video_access(storage, GUILD) == VideoAccess(channel_ids=(GENERAL,))


async def test_removing_and_clearing_restore_access(world: World) -> None:
    async with world.bot() as bot:
        storage = bot.services.storage
        for where in (CHANNEL, THREAD, CHANNEL):  # the repeat changes nothing
            again = await settings(world, "video-channels", "add", options=(channel(where),))
        assert again.content.splitlines()[0] == f"<#{CHANNEL}> was already allowed."
        await settings(world, "video-roles", "add", options=(role(MAKER_ROLE),))
        assert await load_setting(storage, GUILD, VIDEO_CHANNELS) == (CHANNEL, THREAD)

        removed = await settings(world, "video-channels", "remove", options=(channel(CHANNEL),))
        assert removed.content.splitlines()[0] == f"✅ <#{CHANNEL}> removed."
        assert f"Videos can be made only in <#{THREAD}> (and threads in them)." in removed.content
        assert await refused(await world.video(user_id=MAKER)) == (
            f"🚫 Videos can be made only in <#{THREAD}> (threads in them count too)."
        )
        missing = await settings(world, "video-channels", "remove", options=(channel(GENERAL),))
        assert missing.content.splitlines()[0] == f"<#{GENERAL}> wasn't listed."

        cleared = await settings(world, "video-channels", "clear")
        assert cleared.content.splitlines()[0] == "✅ /video works in every channel again."
        assert "Videos can be made in **any channel**." in cleared.content
        assert await storage.get_guild_setting(GUILD, VIDEO_CHANNELS.key) is None  # deleted
        assert await refused(await world.video(channel_id=GENERAL)) == NEEDS_ROLE

        last = await settings(world, "video-roles", "remove", options=(role(MAKER_ROLE),))
        assert last.content.splitlines()[0] == (
            f"✅ <@&{MAKER_ROLE}> removed: none is listed, so every member can make videos."
        )
        assert await storage.get_guild_setting(GUILD, VIDEO_ROLES.key) is None  # deleted
        await settings(world, "video-roles", "add", options=(role(MAKER_ROLE),))
        await settings(world, "video-roles", "clear")
        assert await storage.get_guild_setting(GUILD, VIDEO_ROLES.key) is None  # deleted

        await world.video("anyone, anywhere", channel_id=GENERAL)
        await delivered(world, GENERAL, "anyone, anywhere")


async def test_buttons_obey_the_rules_but_delete_does_not(world: World) -> None:
    async with world.bot() as bot:
        await world.video("the cat waves", seed=7)
        first = await delivered(world, CHANNEL, "the cat waves")

        await settings(world, "video-roles", "add", options=(role(MAKER_ROLE),))
        reroll = await world.discord.click_button(first, "wanbot:reroll:1", user_id=MEMBER)
        assert await refused(reroll) == NEEDS_ROLE
        same = await world.discord.click_button(first, "wanbot:same:1", user_id=MEMBER)
        assert await refused(same) == NEEDS_ROLE and same.modal is None
        await assert_nothing_happened(world, bot, submissions=1)

        await world.discord.click_button(first, "wanbot:reroll:1", user_id=MAKER)
        second = await world.discord.wait_for_message(lambda m: has_video(m) and m is not first)
        assert f"<@{MAKER}>" in second.content

        # the modal re-checks on submit: the rules may change while it is open
        same = await world.discord.click_button(first, "wanbot:same:1", user_id=MAKER)
        await same.wait_until_acked()
        assert same.modal is not None
        await settings(world, "video-channels", "add", options=(channel(GENERAL),))
        [row] = same.modal["components"]
        field_id = (row.get("components") or [row.get("component")])[0]["custom_id"]
        submitted = await world.discord.submit_modal(
            same.modal["custom_id"], {field_id: "the cat jumps"}, user_id=MAKER
        )
        assert await refused(submitted) == (
            f"🚫 Videos can be made only in <#{GENERAL}> (threads in them count too)."
        )
        await asyncio.sleep(0.1)
        assert len(world.wavespeed.submissions) == 2

        # Delete is not restricted: the requester may always remove their video
        deleted = await world.discord.click_button(first, "wanbot:delete:1", user_id=MEMBER)
        await deleted.wait_until_acked()
        assert deleted.callbacks[0]["data"]["content"] == "Deleted."
        await deleted.wait_for(lambda _: first.deleted)


async def test_settings_show_flags_what_is_gone_and_what_the_bot_cannot_use(world: World) -> None:
    gone_channel, gone_role = 700_000_000_000_000_099, 700_000_000_000_000_299
    async with world.bot() as bot:
        storage = bot.services.storage
        await save_setting(storage, GUILD, VIDEO_CHANNELS, (CHANNEL, gone_channel))
        await save_setting(storage, GUILD, VIDEO_ROLES, (gone_role,))
        shown = await settings(world, "show")
        assert shown.content.splitlines()[-2:] == [
            f"Videos can be made only in <#{CHANNEL}> and <#{gone_channel}> (not found) "
            "(and threads in them).",
            f"Only members with the <@&{gone_role}> (not found) role can make videos.",
        ]

        locked = await settings(world, "video-channels", "add", options=(channel(LOCKED),))
        assert f"⚠️ I can't post in <#{LOCKED}>, so videos made there can't be delivered" in (
            locked.content
        )


async def test_lists_are_capped(world: World) -> None:
    async with world.bot() as bot:
        storage = bot.services.storage
        full = tuple(range(1, MAX_ENTRIES + 1))
        await save_setting(storage, GUILD, VIDEO_CHANNELS, full)
        reply = await settings(world, "video-channels", "add", options=(channel(CHANNEL),))
        assert reply.flags & EPHEMERAL
        assert reply.content == (
            f"⚠️ At most {MAX_ENTRIES} channels can be listed. Remove one first."
        )
        assert await load_setting(storage, GUILD, VIDEO_CHANNELS) == full
