"""The fake Discord, exercised by the real discord.py client (a test cog, not wanbot's cogs)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakes.discord_rest import API
from tests.fakes.discord_server import FakeDiscord, FakeInteraction, running_bot

GUILD, CHANNEL, READONLY, NO_FILES, THREAD, MOD_ROLE = 1001, 2001, 2002, 2003, 2004, 4001
HIDDEN, NO_HISTORY = 2005, 2006
BOOSTED_GUILD, BOOSTED_CHANNEL = 1002, 2101
USER, OTHER_USER = 3001, 3002
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
MIB = 1024 * 1024


class PanelView(discord.ui.View):
    """Persistent buttons: fixed custom_ids, registered with ``bot.add_view`` on every start."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Again", custom_id="test:again")
    async def again(
        self, interaction: discord.Interaction, _: discord.ui.Button[PanelView]
    ) -> None:
        await interaction.response.send_message(f"again for {interaction.user.id}", ephemeral=True)

    @discord.ui.button(label="Bump", custom_id="test:bump")
    async def bump(self, interaction: discord.Interaction, _: discord.ui.Button[PanelView]) -> None:
        await interaction.response.edit_message(content="bumped")


class FeedbackModal(discord.ui.Modal, title="Feedback"):
    text: discord.ui.TextInput[FeedbackModal] = discord.ui.TextInput(
        label="Your feedback", custom_id="feedback:text", max_length=50
    )

    rating: discord.ui.Label[FeedbackModal] = discord.ui.Label(
        text="Rating", component=discord.ui.TextInput(custom_id="feedback:rating", required=False)
    )

    def __init__(self) -> None:
        super().__init__(custom_id="feedback:modal")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        assert isinstance(self.rating.component, discord.ui.TextInput)
        answer = f"got {self.text.value} rated {self.rating.component.value or '-'}"
        await interaction.response.send_message(answer, ephemeral=True)


class DemoCog(commands.Cog):
    """Commands that use every route the fake serves."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    @app_commands.command(name="echo")
    async def echo(
        self, interaction: discord.Interaction, image: discord.Attachment, text: str = "hi"
    ) -> None:
        await interaction.response.defer(thinking=True)
        data = await image.read()
        file = discord.File(io.BytesIO(data), filename=image.filename)
        await interaction.followup.send(f"{text}: {len(data)} bytes", file=file)
        await interaction.edit_original_response(content="done")

    @app_commands.command(name="post")
    async def post(self, interaction: discord.Interaction, size: int) -> None:
        await interaction.response.send_message("posting", ephemeral=True)
        assert isinstance(interaction.channel, discord.TextChannel)
        await interaction.channel.send(
            file=discord.File(io.BytesIO(b"v" * size), filename="video.mp4")
        )

    @app_commands.command(name="panel")
    async def panel(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("panel", view=PanelView())

    @app_commands.command(name="feedback")
    async def feedback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(FeedbackModal())

    @app_commands.command(name="slow")
    async def slow(self, interaction: discord.Interaction) -> None:
        await self.gate.wait()
        await interaction.response.defer()

    @app_commands.command(name="later")
    async def later(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await self.gate.wait()
        await interaction.followup.send("finally")

    @app_commands.command(name="dm")
    async def dm(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("check your DMs", ephemeral=True)
        await interaction.user.send("hello in private")

    @app_commands.command(name="where")
    async def where(self, interaction: discord.Interaction, role: discord.Role) -> None:
        channel = interaction.channel
        assert isinstance(channel, discord.Thread)
        await interaction.response.send_message(f"{channel.name} in {channel.parent_id}")
        await channel.send(f"{role.name} here")

    @app_commands.command(name="tidy")
    async def tidy(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("temporary")
        original = await interaction.original_response()
        followup = await interaction.followup.send(f"about {original.id}", wait=True)
        await followup.delete()
        await interaction.delete_original_response()

    @app_commands.command(name="mentions")
    async def mentions(self, interaction: discord.Interaction) -> None:
        only_them = discord.AllowedMentions(users=[interaction.user])
        await interaction.response.send_message(
            f"{interaction.user.mention} @everyone", allowed_mentions=only_them
        )
        await interaction.followup.send(f"<@{OTHER_USER}> <@&{MOD_ROLE}> @here")
        await interaction.edit_original_response(
            content=f"<@{OTHER_USER}> done", allowed_mentions=discord.AllowedMentions.none()
        )

    admin = app_commands.Group(name="admin", description="admin")

    @admin.command(name="grant")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def grant(
        self, interaction: discord.Interaction, member: discord.Member, amount: int
    ) -> None:
        await interaction.response.send_message(f"{member.display_name} +{amount}")


class DemoBot(commands.Bot):
    """A bot with the test cog, the persistent view, and app command errors collected in a queue."""

    def __init__(self, intents: discord.Intents | None = None) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned, intents=intents or discord.Intents.default()
        )
        self.errors: asyncio.Queue[Exception] = asyncio.Queue()
        self.tree.error(self.record_error)

    async def setup_hook(self) -> None:
        await self.add_cog(DemoCog())
        self.add_view(PanelView())

    async def record_error(
        self, _: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        self.errors.put_nowait(getattr(error, "original", error))

    @property
    def cog(self) -> DemoCog:
        cog = self.get_cog("DemoCog")
        assert isinstance(cog, DemoCog)
        return cog

    async def next_error(self) -> Exception:
        return await asyncio.wait_for(self.errors.get(), 5)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        fake.add_guild(GUILD, "plain")
        fake.add_channel(GUILD, CHANNEL, "general")
        fake.add_channel(GUILD, READONLY, "announcements", bot_can_send=False)
        fake.add_channel(GUILD, NO_FILES, "no-files", bot_can_attach=False)
        fake.add_guild(BOOSTED_GUILD, "boosted", premium_tier=3)
        fake.add_channel(BOOSTED_GUILD, BOOSTED_CHANNEL, "general")
        fake.add_member(GUILD, USER, username="alice")
        fake.add_member(GUILD, OTHER_USER, username="bob", nick="Bobby")
        yield fake
        assert fake.unhandled == []


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[DemoBot]:
    async with running_bot(fake, DemoBot) as bot:
        yield bot


async def invoke(
    fake: FakeDiscord, name: str, channel_id: int = CHANNEL, **kwargs: Any
) -> FakeInteraction:
    guild_id = BOOSTED_GUILD if channel_id == BOOSTED_CHANNEL else GUILD
    return await fake.invoke_command(
        name, guild_id=guild_id, channel_id=channel_id, user_id=USER, **kwargs
    )


def image_option(attachment: dict[str, Any]) -> dict[str, Any]:
    return {"name": "image", "type": 11, "value": attachment}


async def raw(fake: FakeDiscord, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, fake.base_url + path, **kwargs) as r,
    ):
        body = await r.json() if r.content_type == "application/json" else await r.read()
        return r.status, body


def bot_auth(fake: FakeDiscord) -> dict[str, str]:
    return {"Authorization": f"Bot {fake.bot_token}"}


def text_channel(bot: discord.Client, channel_id: int) -> discord.TextChannel:
    channel = bot.get_channel(channel_id)
    assert isinstance(channel, discord.TextChannel)
    return channel


def pings(fake: FakeDiscord, message: discord.Message) -> tuple[set[int], set[int], bool]:
    stored = fake.message(message.id)
    return stored.pinged_users, stored.pinged_roles, stored.pinged_everyone


# The happy paths


async def test_ready_sees_guilds_channels_and_permissions(fake: FakeDiscord, bot: DemoBot) -> None:
    await fake.wait_ready()
    guild = bot.get_guild(GUILD)
    assert guild is not None and guild.filesize_limit == 10 * MIB
    assert bot.get_guild(BOOSTED_GUILD).filesize_limit == 100 * MIB  # type: ignore[union-attr]
    assert bot.user is not None and bot.user.id == fake.bot_user_id
    readonly, no_files = guild.get_channel(READONLY), guild.get_channel(NO_FILES)
    assert not readonly.permissions_for(guild.me).send_messages  # type: ignore[union-attr]
    assert not no_files.permissions_for(guild.me).attach_files  # type: ignore[union-attr]
    assert guild.get_channel(CHANNEL).permissions_for(guild.me).attach_files  # type: ignore[union-attr]
    query = fake.gateway.queries[0]
    assert (
        query["v"] == "10" and query["encoding"] == "json" and query["compress"].endswith("-stream")
    )


async def test_echo_defers_reads_attachment_follows_up_with_file_and_edits(
    fake: FakeDiscord, bot: DemoBot
) -> None:
    attachment = fake.add_attachment("cat.png", PNG, "image/png", width=1, height=1)
    text = {"name": "text", "type": 3, "value": "meow"}
    interaction = await invoke(fake, "echo", options=[image_option(attachment), text])

    [followup] = await interaction.wait_for_followups()
    await interaction.wait_for(lambda i: i.original is not None and i.original.content == "done")

    assert interaction.callbacks == [{"type": 5, "data": {}}]
    assert followup.content == f"meow: {len(PNG)} bytes"
    [sent] = followup.attachments
    assert (sent.filename, sent.size, sent.content_type, sent.data) == (
        "cat.png",
        len(PNG),
        "image/png",
        PNG,
    )
    original = interaction.original
    assert original is not None and original.history[0]["flags"] & 128  # was "thinking"
    assert original.edited_timestamp is not None and not original.flags & 128
    assert [m.id for m in fake.messages_in(CHANNEL)] == [original.id, followup.id]
    cdn = [r for r in fake.requests if r.path.startswith("/ephemeral-attachments/")]
    assert [r.status for r in cdn] == [200]


async def test_channel_send_with_file_and_ephemeral_reply(fake: FakeDiscord, bot: DemoBot) -> None:
    interaction = await invoke(fake, "post", options=[{"name": "size", "type": 4, "value": 1000}])

    message = await fake.wait_for_message(lambda m: bool(m.attachments))

    assert interaction.original is not None and interaction.original.ephemeral
    assert message.author_id == fake.bot_user_id and message.interaction_id is None
    assert (message.attachments[0].filename, message.attachments[0].content_type) == (
        "video.mp4",
        "video/mp4",
    )
    assert fake.requests_to("POST", rf"/channels/{CHANNEL}/messages")[0].status == 200


async def test_persistent_button_survives_a_restart_and_update_message(fake: FakeDiscord) -> None:
    async with running_bot(fake, DemoBot):
        panel = await invoke(fake, "panel")
        await panel.wait_until_acked()
    await fake.wait_disconnected()
    assert fake.connected_clients == 0
    assert panel.original is not None and panel.original.component("test:again") is not None

    async with running_bot(fake, DemoBot):
        click = await fake.click_button(panel.original, "test:again", user_id=OTHER_USER)
        await click.wait_until_acked()
        bump = await fake.click_button(panel.original.id, "test:bump", user_id=USER)
        await bump.wait_until_acked()

    assert click.original is not None and click.original.content == f"again for {OTHER_USER}"
    assert click.original.ephemeral and click.payload["data"] == {
        "custom_id": "test:again",
        "component_type": 2,
    }
    assert bump.response_type == 7 and bump.original is panel.original
    assert panel.original.content == "bumped" and panel.original.history[0]["content"] == "panel"
    with pytest.raises(ValueError, match="no enabled button"):
        await fake.click_button(panel.original, "test:nope", user_id=USER)


async def test_modal_round_trip(fake: FakeDiscord, bot: DemoBot) -> None:
    opened = await invoke(fake, "feedback")
    await opened.wait_until_acked()
    assert opened.modal is not None and opened.modal["title"] == "Feedback"

    with pytest.raises(ValueError, match="required"):
        await fake.submit_modal("feedback:modal", {}, user_id=USER)
    with pytest.raises(ValueError, match="never showed"):
        await fake.submit_modal("feedback:modal", {"feedback:text": "x"}, user_id=OTHER_USER)
    with pytest.raises(ValueError, match=r"0\.\.50 characters"):
        await fake.submit_modal("feedback:modal", {"feedback:text": "x" * 51}, user_id=USER)
    answers = {"feedback:text": "nice", "feedback:rating": "5"}
    submitted = await fake.submit_modal("feedback:modal", answers, user_id=USER)
    await submitted.wait_until_acked()

    assert submitted.original is not None and submitted.original.content == "got nice rated 5"
    assert [c["type"] for c in submitted.payload["data"]["components"]] == [1, 18]


async def test_subcommand_with_member_option_and_role_permissions(
    fake: FakeDiscord, bot: DemoBot
) -> None:
    options = [
        {"name": "member", "type": 6, "value": OTHER_USER},
        {"name": "amount", "type": 4, "value": 5},
    ]
    grant = [{"name": "grant", "type": 1, "options": options}]
    await invoke(fake, "admin", options=grant)
    assert isinstance(await bot.next_error(), app_commands.MissingPermissions)

    fake.add_role(GUILD, MOD_ROLE, "mods", permissions=discord.Permissions(manage_guild=True).value)
    interaction = await invoke(fake, "admin", options=grant, roles=[MOD_ROLE])
    await interaction.wait_until_acked()

    assert interaction.original is not None and interaction.original.content == "Bobby +5"
    assert interaction.payload["member"]["roles"] == [str(MOD_ROLE)]


async def test_threads_and_role_options(fake: FakeDiscord, bot: DemoBot) -> None:
    fake.add_role(GUILD, MOD_ROLE, "mods")
    fake.add_thread(GUILD, THREAD, "questions", parent_id=CHANNEL, owner_id=USER)
    role = [{"name": "role", "type": 8, "value": MOD_ROLE}]
    interaction = await invoke(fake, "where", channel_id=THREAD, options=role)  # not cached yet
    await interaction.wait_until_acked()
    assert interaction.original is not None
    assert interaction.original.content == f"questions in {CHANNEL}"
    posted = await fake.wait_for_message(lambda m: m.content == "mods here")
    assert posted.channel_id == THREAD
    assert interaction.payload["data"]["resolved"]["roles"][str(MOD_ROLE)]["name"] == "mods"

    async with running_bot(fake, DemoBot) as fresh:  # GUILD_CREATE lists active threads
        thread = fresh.get_guild(GUILD).get_thread(THREAD)  # type: ignore[union-attr]
        assert thread is not None and thread.parent_id == CHANNEL and thread.owner_id == USER
        assert fresh.get_guild(GUILD).get_channel(THREAD) is None  # type: ignore[union-attr]


async def test_command_sync_is_stored_and_used(fake: FakeDiscord, bot: DemoBot) -> None:
    bot.tree.copy_global_to(guild=discord.Object(GUILD))
    synced = await bot.tree.sync(guild=discord.Object(GUILD))
    assert (
        {c.name for c in synced} == {c["name"] for c in fake.commands[GUILD]} >= {"echo", "admin"}
    )
    assert [c.id for c in await bot.tree.fetch_commands(guild=discord.Object(GUILD))] == [
        c.id for c in synced
    ]

    interaction = await invoke(fake, "panel")
    await interaction.wait_until_acked()
    assert interaction.payload["data"]["guild_id"] == str(GUILD)


async def test_dm_to_the_invoking_user(fake: FakeDiscord, bot: DemoBot) -> None:
    await invoke(fake, "dm")
    message = await fake.wait_for_message(lambda m: m.content == "hello in private")
    assert fake.channels[message.channel_id].recipient == fake.users[USER]
    history = await bot.http.logs_from(message.channel_id, 10)
    assert [m["content"] for m in history] == ["hello in private"]


async def test_fetch_routes_and_deleting_interaction_messages(
    fake: FakeDiscord, bot: DemoBot
) -> None:
    assert (await bot.fetch_guild(BOOSTED_GUILD)).premium_tier == 3
    channel = await bot.fetch_channel(CHANNEL)
    assert isinstance(channel, discord.TextChannel) and channel.name == "general"
    assert (await channel.guild.fetch_member(OTHER_USER)).nick == "Bobby"
    with pytest.raises(discord.NotFound):
        await channel.guild.fetch_member(424242)

    interaction = await invoke(fake, "tidy")
    await interaction.wait_for(lambda i: i.original is not None and i.original.deleted)

    [followup] = interaction.followups
    assert followup.content == f"about {interaction.original.id}"  # type: ignore[union-attr]
    assert followup.deleted and fake.messages_in(CHANNEL) == []


async def test_auto_sharded_bot_gets_gateway_bot_and_a_shard(fake: FakeDiscord) -> None:
    def make() -> commands.AutoShardedBot:
        return commands.AutoShardedBot(commands.when_mentioned, intents=discord.Intents.default())

    async with running_bot(fake, make) as bot:
        assert bot.shard_count == 1 and bot.get_guild(GUILD) is not None
    assert fake.requests_to("GET", "/gateway/bot")[0].status == 200
    identify = next(f for f in fake.gateway.received if f["op"] == 2)
    assert identify["d"]["shard"] == [0, 1] and identify["d"]["token"] == "<redacted>"


async def test_resume_after_reconnect_request(fake: FakeDiscord, bot: DemoBot) -> None:
    resumed = asyncio.ensure_future(bot.wait_for("resumed", timeout=5))
    await fake.request_reconnect()
    await resumed

    interaction = await invoke(fake, "panel")
    await interaction.wait_until_acked()
    assert [f["op"] for f in fake.gateway.received if f["op"] in (2, 6)] == [2, 6]


async def test_privileged_intents_are_refused_unless_enabled(fake: FakeDiscord) -> None:
    with pytest.raises(discord.PrivilegedIntentsRequired):
        async with running_bot(fake, lambda: DemoBot(discord.Intents.all())):
            pass


async def test_member_chunking_when_members_intent_is_enabled(fake: FakeDiscord) -> None:
    fake.privileged_intents = discord.Intents(members=True).value
    intents = discord.Intents.default()
    intents.members = True
    async with running_bot(fake, lambda: DemoBot(intents)) as bot:
        guild = bot.get_guild(GUILD)
        assert guild is not None and guild.chunked
        assert {m.id for m in guild.members} >= {USER, OTHER_USER, fake.bot_user_id}


# The checks


async def test_late_ack_is_unknown_interaction(fake: FakeDiscord, bot: DemoBot) -> None:
    interaction = await invoke(fake, "slow")
    fake.advance_time(fake.ack_deadline_s + 0.5)
    bot.cog.gate.set()

    error = await bot.next_error()

    assert isinstance(error, discord.NotFound) and error.code == 10062
    assert not interaction.acked


async def test_second_ack_is_refused(fake: FakeDiscord, bot: DemoBot) -> None:
    interaction = await invoke(fake, "panel")
    await interaction.wait_until_acked()
    path = f"/api/v10/interactions/{interaction.id}/{interaction.token}/callback"
    status, body = await raw(fake, "POST", path, json={"type": 5})
    assert (status, body["code"]) == (400, 40060)


async def test_followup_after_token_expiry_is_invalid_webhook_token(
    fake: FakeDiscord, bot: DemoBot
) -> None:
    interaction = await invoke(fake, "later")
    await interaction.wait_until_acked()
    fake.advance_time(fake.token_lifetime_s + 1)
    bot.cog.gate.set()

    error = await bot.next_error()

    assert isinstance(error, discord.HTTPException) and (error.status, error.code) == (401, 50027)
    assert interaction.followups == []


async def test_oversized_followup_is_413(fake: FakeDiscord, bot: DemoBot) -> None:
    attachment = fake.add_attachment("big.png", PNG, "image/png")
    await invoke(
        fake, "echo", options=[image_option(attachment)], attachment_size_limit=len(PNG) - 1
    )

    error = await bot.next_error()

    assert isinstance(error, discord.HTTPException) and (error.status, error.code) == (413, 40005)


async def test_channel_upload_limit_follows_boost_tier(fake: FakeDiscord, bot: DemoBot) -> None:
    size = [{"name": "size", "type": 4, "value": 10 * MIB + 1}]
    await invoke(fake, "post", options=size)
    error = await bot.next_error()
    assert isinstance(error, discord.HTTPException) and (error.status, error.code) == (413, 40005)

    await invoke(fake, "post", channel_id=BOOSTED_CHANNEL, options=size)
    message = await fake.wait_for_message(
        lambda m: m.channel_id == BOOSTED_CHANNEL and bool(m.attachments)
    )
    assert message.attachments[0].size == 10 * MIB + 1


async def test_channel_permissions_are_enforced(fake: FakeDiscord, bot: DemoBot) -> None:
    readonly, no_files = bot.get_channel(READONLY), bot.get_channel(NO_FILES)
    assert isinstance(readonly, discord.TextChannel) and isinstance(no_files, discord.TextChannel)
    with pytest.raises(discord.Forbidden) as denied:
        await readonly.send("hello")
    assert denied.value.code == 50013
    await no_files.send("text is fine")
    with pytest.raises(discord.Forbidden):
        await no_files.send(file=discord.File(io.BytesIO(b"x"), "x.txt"))


async def test_unknown_channel_message_and_foreign_edit(fake: FakeDiscord, bot: DemoBot) -> None:
    with pytest.raises(discord.NotFound) as no_channel:
        await bot.http.send_message(
            9999, params=discord.http.handle_message_parameters(content="x")
        )
    assert no_channel.value.code == 10003
    channel = bot.get_channel(CHANNEL)
    assert isinstance(channel, discord.TextChannel)
    with pytest.raises(discord.NotFound) as no_message:
        await channel.fetch_message(424242)
    assert no_message.value.code == 10008
    theirs = fake.add_message(CHANNEL, "mine", author_id=USER)
    with pytest.raises(discord.Forbidden) as foreign:
        await channel.get_partial_message(theirs.id).edit(content="hijacked")
    assert foreign.value.code == 50005 and fake.message(theirs.id).content == "mine"
    ours = await channel.send("temporary")
    await ours.delete()
    assert ours.id in fake.deleted and fake.messages_in(CHANNEL) == [theirs]


@pytest.mark.parametrize(
    ("payload", "error_path"),
    [
        ({"content": "x" * 2001}, ["content"]),
        ({"embeds": [{"title": "t"}] * 11}, ["embeds"]),
        (
            {
                "components": [
                    {"type": 1, "components": [{"type": 2, "style": 2, "custom_id": "a"}]}
                ]
                * 6
            },
            ["components"],
        ),
        (
            {
                "components": [
                    {
                        "type": 1,
                        "components": [
                            {"type": 2, "style": 2, "custom_id": f"b{i}"} for i in range(6)
                        ],
                    }
                ]
            },
            ["components", "0", "components"],
        ),
        (
            {
                "components": [
                    {"type": 1, "components": [{"type": 2, "style": 2, "custom_id": "c" * 101}]}
                ]
            },
            ["components", "0", "components", "0", "custom_id"],
        ),
        ({"content": "x", "nonce": "n" * 26}, ["nonce"]),
        ({"content": "x", "nonce": 10**25}, ["nonce"]),
        ({"content": "x", "nonce": ["n"]}, ["nonce"]),
        ({"content": "x", "nonce": "n", "enforce_nonce": "yes"}, ["enforce_nonce"]),
        (
            {"content": "x", "allowed_mentions": {"parse": ["users"], "users": [str(USER)]}},
            ["allowed_mentions"],
        ),
        (
            {"content": "x", "allowed_mentions": {"parse": ["nobody"]}},
            ["allowed_mentions", "parse", "0"],
        ),
        (
            {"content": "x", "allowed_mentions": {"users": [str(i) for i in range(101)]}},
            ["allowed_mentions", "users"],
        ),
        ({"content": "x", "message_reference": {"message_id": "424242"}}, ["message_reference"]),
    ],
)
async def test_invalid_form_body(
    fake: FakeDiscord, payload: dict[str, Any], error_path: list[str]
) -> None:
    path = f"/api/v10/channels/{CHANNEL}/messages"
    status, body = await raw(fake, "POST", path, json=payload, headers=bot_auth(fake))
    assert (status, body["code"], body["message"]) == (400, 50035, "Invalid Form Body")
    errors = body["errors"]
    for key in error_path:
        errors = errors[key]
    assert errors["_errors"]


def command(name: str = "video", **fields: Any) -> dict[str, Any]:
    """A chat-input command for a bulk overwrite."""
    return {"name": name, "type": 1, "description": "Make a video", **fields}


@pytest.mark.parametrize(
    ("commands", "error_path"),
    [
        ([command("Video")], ["0", "name"]),
        ([command(name_localizations={"es-ES": "Vídeo"})], ["0", "name_localizations", "es-ES"]),
        (
            [command(name_localizations={"pt-BR": "meu vídeo"})],
            ["0", "name_localizations", "pt-BR"],
        ),
        ([command(name_localizations={"xx": "video"})], ["0", "name_localizations", "xx"]),
        ([command(description="")], ["0", "description"]),
        (
            [command(description_localizations={"es-ES": "x" * 101})],
            ["0", "description_localizations", "es-ES"],
        ),
        (
            [command("budget", name_localizations={"es-ES": "price"}), command("price")],
            ["1", "name"],
        ),
        (
            [
                command(
                    options=[
                        {
                            "type": 3,
                            "name": "a",
                            "description": "A",
                            "name_localizations": {"pt-BR": "b"},
                        },
                        {"type": 3, "name": "b", "description": "B"},
                    ]
                )
            ],
            ["0", "options", "1", "name"],
        ),
        (
            [
                command(
                    options=[
                        {
                            "type": 3,
                            "name": "a",
                            "description": "A",
                            "choices": [
                                {"name": "x", "value": "x", "name_localizations": {"es-ES": ""}}
                            ],
                        },
                    ]
                )
            ],
            ["0", "options", "0", "choices", "0", "name_localizations", "es-ES"],
        ),
    ],
    ids=[
        "uppercase",
        "localized-uppercase",
        "localized-space",
        "unknown-locale",
        "no-description",
        "long-localized-description",
        "localized-duplicate",
        "option-duplicate",
        "empty-choice",
    ],
)
async def test_command_sync_refuses_what_discord_refuses(
    fake: FakeDiscord, commands: list[dict[str, Any]], error_path: list[str]
) -> None:
    path = f"/api/v10/applications/{fake.application_id}/commands"
    status, body = await raw(fake, "PUT", path, json=commands, headers=bot_auth(fake))
    assert (status, body["code"]) == (400, 50035)
    errors = body["errors"]
    for key in error_path:
        errors = errors[key]
    assert errors["_errors"]
    assert None not in fake.commands


async def test_command_sync_takes_localized_names_in_any_script(fake: FakeDiscord) -> None:
    localized = {"es-ES": "añadir", "pt-BR": "orçamento", "hi": "वीडियो", "th": "วิดีโอ"}
    path = f"/api/v10/applications/{fake.application_id}/commands"
    payload = [command(name_localizations=localized, description_localizations={"fr": "Faire"})]
    status, _ = await raw(fake, "PUT", path, json=payload, headers=bot_auth(fake))
    assert status == 200
    assert fake.commands[None][0]["name_localizations"] == localized


async def test_empty_message_and_missing_auth(fake: FakeDiscord) -> None:
    path = f"/api/v10/channels/{CHANNEL}/messages"
    assert (await raw(fake, "POST", path, json={}, headers=bot_auth(fake)))[1]["code"] == 50006
    status, body = await raw(fake, "POST", path, json={"content": "hi"})
    assert (status, body) == (401, {"message": "401: Unauthorized", "code": 0})
    status, _ = await raw(fake, "GET", "/api/v10/users/@me", headers={"Authorization": "Bot wrong"})
    assert status == 401
    bot = DemoBot()
    with pytest.raises(discord.LoginFailure):
        await bot.login("wrong-token")
    await bot.close()


async def test_expired_attachment_url_is_404(fake: FakeDiscord, bot: DemoBot) -> None:
    attachment = fake.add_attachment("cat.png", PNG, "image/png", expires_in_s=60)
    assert (await raw(fake, "GET", attachment["url"].removeprefix(fake.base_url)))[0] == 200
    tampered = attachment["url"].replace("ex=", "ex=f")
    assert (await raw(fake, "GET", tampered.removeprefix(fake.base_url)))[0] == 404

    fake.advance_time(61)
    await invoke(fake, "echo", options=[image_option(attachment)])
    error = await bot.next_error()

    assert isinstance(error, discord.NotFound)


@pytest.mark.parametrize("route", [r"/channels/\d+/messages", r"/webhooks/\d+/[^/]+"])
async def test_rate_limit_is_retried(fake: FakeDiscord, bot: DemoBot, route: str) -> None:
    fake.inject_rate_limit("POST", route, retry_after=0.01)
    attachment = fake.add_attachment("cat.png", PNG, "image/png")
    await invoke(fake, "echo", options=[image_option(attachment)])
    await invoke(fake, "post", options=[{"name": "size", "type": 4, "value": 10}])

    await fake.wait_for_message(lambda m: m.interaction_id is not None and bool(m.attachments))
    await fake.wait_for_message(lambda m: m.interaction_id is None and bool(m.attachments))

    assert [r.status for r in fake.requests_to("POST", route)] == [429, 200]


async def test_unknown_route_is_404_and_recorded(fake: FakeDiscord) -> None:
    status, body = await raw(fake, "GET", "/api/v10/nope", headers=bot_auth(fake))
    assert (status, body["code"]) == (404, 0)
    assert fake.unhandled == ["GET /api/v10/nope"]
    fake.unhandled.clear()


# Message nonces


async def test_enforced_nonce_answers_the_earlier_message(fake: FakeDiscord, bot: DemoBot) -> None:
    channel = text_channel(bot, CHANNEL)
    first = await channel.send("one", nonce="job-1")
    again = await channel.send("one, retried", nonce="job-1")

    assert (again.id, again.content, first.nonce) == (first.id, "one", "job-1")
    assert fake.message(first.id).nonce_replays == 1
    elsewhere = await text_channel(bot, NO_FILES).send("elsewhere", nonce="job-1")
    assert elsewhere.id != first.id
    fake.advance_time(fake.nonce_window_s + 1)
    later = await channel.send("much later", nonce="job-1")
    assert later.id != first.id
    assert [m.content for m in fake.channel_history(CHANNEL)] == ["one", "much later"]


async def test_enforced_nonce_in_multipart_payload_json(fake: FakeDiscord, bot: DemoBot) -> None:
    channel = text_channel(bot, CHANNEL)
    sent = [
        await channel.send(file=discord.File(io.BytesIO(b"v"), "v.mp4"), nonce=7) for _ in range(2)
    ]
    assert sent[0].id == sent[1].id
    [stored] = fake.channel_history(CHANNEL)
    assert len(stored.attachments) == 1 and stored.nonce == "7"  # discord.py sends str(nonce)


async def test_nonce_without_enforce_creates_again(fake: FakeDiscord) -> None:
    path = f"/api/v10/channels/{CHANNEL}/messages"
    body: dict[str, Any] = {"content": "x", "nonce": 42}
    answers = [(await raw(fake, "POST", path, json=body, headers=bot_auth(fake)))[1] for _ in "ab"]
    assert answers[0]["id"] != answers[1]["id"] and answers[0]["nonce"] == 42

    enforced = {**body, "nonce": "42", "enforce_nonce": True}  # nonces compare as strings
    status, answer = await raw(fake, "POST", path, json=enforced, headers=bot_auth(fake))
    assert (status, answer["id"]) == (200, answers[1]["id"])
    longest = {"content": "x", "nonce": "n" * 25}
    assert (await raw(fake, "POST", path, json=longest, headers=bot_auth(fake)))[0] == 200


async def test_enforced_nonce_of_deleted_or_foreign_messages(
    fake: FakeDiscord, bot: DemoBot
) -> None:
    channel = text_channel(bot, CHANNEL)
    first = await channel.send("gone soon", nonce="job-2")
    await first.delete()
    with pytest.raises(discord.NotFound) as gone:
        await channel.send("again", nonce="job-2")
    assert gone.value.code == 10008

    theirs = fake.add_message(CHANNEL, "a user's", author_id=USER)
    theirs.nonce = "job-3"
    assert (await channel.send("mine", nonce="job-3")).id != theirs.id


# Reading history


async def test_history_lists_visible_messages_newest_first(fake: FakeDiscord, bot: DemoBot) -> None:
    posted = await invoke(fake, "post", options=[{"name": "size", "type": 4, "value": 10}])
    video = await fake.wait_for_message(lambda m: bool(m.attachments))
    panel = await invoke(fake, "panel")
    await panel.wait_until_acked()
    later = await invoke(fake, "later")
    await later.wait_until_acked()
    bot.cog.gate.set()
    [followup] = await later.wait_for_followups()
    theirs = fake.add_message(CHANNEL, "from a user", author_id=USER)

    history = [m async for m in text_channel(bot, CHANNEL).history(limit=None)]

    assert posted.original is not None and posted.original.ephemeral  # never listed
    assert panel.original is not None and later.original is not None
    expected = [theirs, followup, later.original, panel.original, video]
    assert [m.id for m in history] == [m.id for m in expected]
    assert history[0].author.id == USER and history[0].content == "from a user"
    assert history[1].webhook_id == fake.application_id == history[1].application_id
    assert history[2].flags.loading and history[3].components
    assert history[4].attachments[0].filename == "video.mp4"


async def test_history_pages_with_before_after_around(fake: FakeDiscord, bot: DemoBot) -> None:
    ids = [fake.add_message(CHANNEL, str(n), author_id=USER).id for n in range(5)]
    path = f"/api/v10/channels/{CHANNEL}/messages"

    async def page(**query: int) -> list[int]:
        params = {k: str(v) for k, v in query.items()}
        status, body = await raw(fake, "GET", path, params=params, headers=bot_auth(fake))
        assert status == 200
        return [int(m["id"]) for m in body]

    assert await page() == ids[::-1]
    assert await page(limit=2) == [ids[4], ids[3]]
    assert await page(limit=2, before=ids[3]) == [ids[2], ids[1]]
    assert await page(limit=2, after=ids[0]) == [ids[2], ids[1]]
    assert await page(limit=3, around=ids[2]) == [ids[3], ids[2], ids[1]]
    assert await page(limit=1, around=ids[2]) == [ids[2]]
    channel = text_channel(bot, CHANNEL)
    after = [m.id async for m in channel.history(after=discord.Object(ids[1]), limit=2)]
    assert after == [ids[2], ids[3]]  # discord.py reverses Discord's newest-first "after" pages


@pytest.mark.parametrize(
    ("query", "key"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"before": "x"}, "before"),
    ],
)
async def test_history_query_is_validated(
    fake: FakeDiscord, query: dict[str, str], key: str
) -> None:
    path = f"/api/v10/channels/{CHANNEL}/messages"
    status, body = await raw(fake, "GET", path, params=query, headers=bot_auth(fake))
    assert (status, body["code"]) == (400, 50035) and body["errors"][key]["_errors"]
    assert (await raw(fake, "GET", path))[0] == 401


async def test_history_needs_view_channel_and_read_history(fake: FakeDiscord) -> None:
    fake.add_channel(GUILD, HIDDEN, "hidden", bot_can_view=False)
    fake.add_channel(GUILD, NO_HISTORY, "no-history", bot_can_read_history=False)
    old = fake.add_message(NO_HISTORY, "old news", author_id=USER)
    async with running_bot(fake, DemoBot) as bot:
        hidden, no_history = text_channel(bot, HIDDEN), text_channel(bot, NO_HISTORY)
        assert not hidden.permissions_for(hidden.guild.me).view_channel
        with pytest.raises(discord.Forbidden) as no_access:
            [m async for m in hidden.history()]
        assert no_access.value.code == 50001
        with pytest.raises(discord.Forbidden) as no_send:
            await hidden.send("hello?")
        assert no_send.value.code == 50001

        assert [m async for m in no_history.history()] == []  # Discord answers an empty list
        with pytest.raises(discord.Forbidden) as no_read:
            await no_history.fetch_message(old.id)
        assert no_read.value.code == 50013
        assert (await no_history.send("writing is fine")).content == "writing is fine"


# Deleted channels


async def test_deleted_channel_is_unknown_everywhere(fake: FakeDiscord, bot: DemoBot) -> None:
    fake.add_thread(GUILD, THREAD, "questions", parent_id=CHANNEL, owner_id=USER)
    ours = await text_channel(bot, CHANNEL).send("before the purge")
    later = await invoke(fake, "later")
    await later.wait_until_acked()
    deleted = asyncio.ensure_future(bot.wait_for("guild_channel_delete", timeout=5))

    await fake.delete_channel(CHANNEL)

    assert (await deleted).id == CHANNEL and bot.get_channel(CHANNEL) is None
    assert THREAD not in fake.channels and THREAD in fake.deleted_channels
    message_path = f"/channels/{CHANNEL}/messages/{ours.id}"
    for method, path, body in [
        ("POST", f"/channels/{CHANNEL}/messages", {"content": "x"}),
        ("GET", f"/channels/{CHANNEL}/messages", None),
        ("GET", message_path, None),
        ("PATCH", message_path, {"content": "y"}),
        ("DELETE", message_path, None),
        ("GET", f"/channels/{CHANNEL}", None),
        ("POST", f"/channels/{THREAD}/messages", {"content": "x"}),
    ]:
        status, answer = await raw(fake, method, API + path, json=body, headers=bot_auth(fake))
        assert (status, answer["code"], answer["message"]) == (404, 10003, "Unknown Channel")
    bot.cog.gate.set()
    error = await bot.next_error()
    assert isinstance(error, discord.NotFound) and error.code == 10003
    assert later.followups == [] and fake.message(ours.id).content == "before the purge"
    with pytest.raises(ValueError, match="was deleted"):
        await invoke(fake, "panel")


# Fault injection


async def test_fail_next_refuses_before_processing(fake: FakeDiscord, bot: DemoBot) -> None:
    refusal = fake.fail_next("POST", r"/channels/\d+/messages", 403, 50013, "Missing Permissions")
    channel = text_channel(bot, CHANNEL)
    with pytest.raises(discord.Forbidden) as refused:
        await channel.send("nope")
    assert (refused.value.code, refused.value.text) == (50013, "Missing Permissions")
    assert fake.channel_history(CHANNEL) == [] and refusal.hits == 1
    assert (await channel.send("fine")).content == "fine"

    fake.fail_next("POST", r"/webhooks/\d+/[^/]+", 404, 10015, "Unknown Webhook")
    later = await invoke(fake, "later")
    await later.wait_until_acked()
    bot.cog.gate.set()
    error = await bot.next_error()
    assert isinstance(error, discord.NotFound) and error.code == 10015 and later.followups == []

    fake.fail_next("GET", "/users/@me", 502)
    status, body = await raw(fake, "GET", API + "/users/@me", headers=bot_auth(fake))
    assert (status, body) == (502, {"message": "502: Bad Gateway", "code": 0})
    fake.fail_next("GET", "/users/@me", 524)
    assert (await raw(fake, "GET", API + "/users/@me", headers=bot_auth(fake)))[0] == 524
    with pytest.raises(ValueError, match="error status"):
        fake.fail_next("GET", "/users/@me", 200)


async def test_lost_answer_then_a_retry_with_the_same_nonce(
    fake: FakeDiscord, bot: DemoBot
) -> None:
    fake.fail_next("POST", r"/channels/\d+/messages", 503, after_processing=True)
    channel = text_channel(bot, CHANNEL)
    with pytest.raises(discord.DiscordServerError):  # discord.py does not retry a 503
        await channel.send("landed", nonce="job-9")
    [landed] = fake.channel_history(CHANNEL)

    retried = await channel.send("landed", nonce="job-9")

    assert retried.id == landed.id and fake.channel_history(CHANNEL) == [landed]


async def test_discord_py_retries_a_500_and_its_nonce_prevents_a_duplicate(
    fake: FakeDiscord, bot: DemoBot
) -> None:
    route = rf"/channels/{CHANNEL}/messages"
    fake.fail_next("POST", route, 500, after_processing=True)

    sent = await text_channel(bot, CHANNEL).send("once")  # discord.py sleeps 1 s, then retries

    assert [m.id for m in fake.channel_history(CHANNEL)] == [sent.id]
    assert [r.status for r in fake.requests_to("POST", route)] == [500, 200]


async def test_hold_next_keeps_the_answer_until_released(fake: FakeDiscord, bot: DemoBot) -> None:
    hold = fake.hold_next("POST", r"/channels/\d+/messages")
    sending = asyncio.ensure_future(text_channel(bot, CHANNEL).send("pending"))

    await fake.wait_for_fault(hold)
    [landed] = fake.channel_history(CHANNEL)
    assert landed.content == "pending" and not sending.done()
    hold.release()

    assert (await sending).id == landed.id


async def test_bot_gone_while_its_answer_is_held(fake: FakeDiscord) -> None:
    hold = fake.hold_next("POST", r"/webhooks/\d+/[^/]+")
    async with running_bot(fake, DemoBot) as bot:
        later = await invoke(fake, "later")
        await later.wait_until_acked()
        bot.cog.gate.set()
        await fake.wait_for_fault(hold)
    [followup] = later.followups  # it landed; the bot never learnt so
    assert followup.content == "finally"
    hold.release()


async def test_delay_next_answers_late(fake: FakeDiscord, bot: DemoBot) -> None:
    fake.delay_next("GET", rf"/channels/{CHANNEL}", 0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    channel = await bot.fetch_channel(CHANNEL)
    assert channel.id == CHANNEL and loop.time() - started >= 0.3


# Allowed mentions


async def test_pings_follow_allowed_mentions(fake: FakeDiscord, bot: DemoBot) -> None:
    channel = text_channel(bot, CHANNEL)
    text = f"<@{USER}> <@!{OTHER_USER}> <@&{MOD_ROLE}> @everyone"
    only_user = discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(USER)])

    loud = await channel.send(text)
    targeted = await channel.send(text, allowed_mentions=only_user)
    silent = await channel.send(text, allowed_mentions=discord.AllowedMentions.none())
    unlisted = await channel.send("nobody here", allowed_mentions=only_user)

    assert pings(fake, loud) == ({USER, OTHER_USER}, {MOD_ROLE}, True)
    assert pings(fake, targeted) == ({USER}, set(), False)
    assert pings(fake, silent) == (set(), set(), False)
    assert pings(fake, unlisted) == (set(), set(), False)  # the list adds no pings
    assert {u.id for u in loud.mentions} == {USER, OTHER_USER} and loud.mention_everyone
    assert [u.id for u in targeted.mentions] == [USER] and not targeted.mention_everyone
    assert [s.message_id for s in fake.sends_without_allowed_mentions()] == [loud.id]


async def test_reply_pings_the_replied_author_unless_told_not_to(
    fake: FakeDiscord, bot: DemoBot
) -> None:
    theirs = fake.add_message(CHANNEL, "question", author_id=OTHER_USER)
    channel = text_channel(bot, CHANNEL)
    target = channel.get_partial_message(theirs.id)

    loud = await channel.send("answer", reference=target)
    quiet = await channel.send("answer", reference=target, mention_author=False)

    assert pings(fake, loud)[0] == {OTHER_USER} and pings(fake, quiet)[0] == set()
    assert loud.type is discord.MessageType.reply and loud.reference is not None
    assert loud.reference.message_id == theirs.id
    assert isinstance(loud.reference.resolved, discord.Message)


async def test_edits_recompute_pings_and_only_text_edits_may_ping(
    fake: FakeDiscord, bot: DemoBot
) -> None:
    message = await text_channel(bot, CHANNEL).send(
        "plain", allowed_mentions=discord.AllowedMentions.none()
    )
    edited = await message.edit(content=f"<@{OTHER_USER}>")  # defaults: pings again
    assert pings(fake, message) == ({OTHER_USER}, set(), False)
    await edited.edit(view=None)  # no text, so no mentions change
    assert pings(fake, message) == ({OTHER_USER}, set(), False)

    [loud_edit] = fake.sends_without_allowed_mentions()
    assert (loud_edit.method, loud_edit.path, loud_edit.creates) == (
        "PATCH",
        f"/channels/{CHANNEL}/messages/{message.id}",
        False,
    )
    assert [(s.creates, s.may_ping) for s in fake.sends] == [
        (True, True),
        (False, True),
        (False, False),
    ]


async def test_interaction_responses_followups_and_edits_are_recorded(
    fake: FakeDiscord, bot: DemoBot
) -> None:
    interaction = await invoke(fake, "mentions")
    [followup] = await interaction.wait_for_followups()
    await interaction.wait_for(lambda i: i.original is not None and i.original.edited_timestamp)

    callback, sent, edit = fake.sends
    assert callback.path == f"/interactions/{interaction.id}/{interaction.token}/callback"
    # discord.AllowedMentions(users=[...]) keeps its default everyone=True: @everyone pings.
    assert (callback.creates, callback.pinged_users, callback.pinged_everyone) == (
        True,
        frozenset({USER}),
        True,
    )
    assert (sent.creates, sent.allowed_mentions, sent.message_id) == (True, None, followup.id)
    assert (followup.pinged_users, followup.pinged_roles, followup.pinged_everyone) == (
        {OTHER_USER},
        {MOD_ROLE},
        True,
    )
    assert edit.path.endswith("/messages/@original") and not edit.creates
    assert interaction.original is not None and interaction.original.pinged_users == set()
    assert fake.sends_without_allowed_mentions() == [sent]


async def test_stopping_the_fake_lets_held_and_delayed_answers_go() -> None:
    loop = asyncio.get_running_loop()
    async with FakeDiscord() as fake:
        hold = fake.hold_next("GET", "/users/@me")
        delay = fake.delay_next("GET", "/gateway", 60)
        held = asyncio.ensure_future(raw(fake, "GET", API + "/users/@me", headers=bot_auth(fake)))
        delayed = asyncio.ensure_future(raw(fake, "GET", API + "/gateway"))
        await fake.wait_for_fault(hold)
        await fake.wait_for_fault(delay)
        started = loop.time()
    assert [(await held)[0], (await delayed)[0]] == [200, 200]
    assert loop.time() - started < 5
