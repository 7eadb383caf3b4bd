"""Confirm before paying: a private prompt with the exact price and Confirm / Cancel buttons.

Every way of starting a video (/video, Re-roll, Same seed, a variation, a video used again)
reaches `VideoCog.launch`, which asks through `Confirmations.ask` when the price is above the
server's confirm_above, or always for a variation. Nothing is reserved, uploaded or charged
before Confirm: the request, and the checked upload of a /video, wait in this process' memory.

A prompt lasts a minute. Its expiry is judged by Discord's clock: an interaction's id is a
snowflake carrying the moment Discord made it, so a click is late when its id is more than a
minute after the id of the interaction that asked, however long it took to arrive. The buttons'
custom_ids name the prompt (a DynamicItem, like the result buttons), so a late click, or one
after a restart that forgot the prompt, is answered "expired" rather than failing; a prompt
nobody answered is marked expired when its minute is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import discord

from bot.i18n import EN, Language, language_of, t
from cogs.delivery import NO_MENTIONS, SEND_ERRORS

CONFIRM_TIMEOUT = timedelta(seconds=60)
# What runs on Confirm, given the click's interaction (not yet answered).
Start = Callable[[discord.Interaction], Awaitable[None]]


@dataclass(frozen=True)
class Pending:
    """A prompt waiting for its answer."""

    member_id: int
    asked_at: datetime  # when Discord made the interaction that asked (its snowflake)
    start: Start
    prompt: discord.Interaction  # its response is the prompt, marked expired when time is up


class ConfirmButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"wanbot:confirm:(?P<key>[A-Za-z0-9_-]{1,32}):(?P<answer>yes|no)",
):
    """Confirm or Cancel on a price prompt; its custom_id names the prompt."""

    def __init__(self, key: str, answer: str, lang: Language = EN) -> None:
        yes = answer == "yes"
        super().__init__(
            discord.ui.Button(
                label=t(lang, "button.confirm" if yes else "button.cancel"),
                emoji="✅" if yes else "✖️",
                style=discord.ButtonStyle.success if yes else discord.ButtonStyle.secondary,
                custom_id=f"wanbot:confirm:{key}:{answer}",
            )
        )
        self.key = key
        self.yes = yes

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button[Any], match: re.Match[str]
    ) -> ConfirmButton:
        return cls(match["key"], match["answer"])

    async def callback(self, interaction: discord.Interaction) -> None:
        confirmations = _confirmations_of(interaction.client)
        if confirmations is None:  # the bot is shutting down: nothing can start anyway
            expired = t(language_of(interaction.locale), "confirm.expired")
            await interaction.response.edit_message(content=expired, view=None)
            return
        await confirmations.answer(interaction, self.key, confirmed=self.yes)


def confirm_view(key: str, lang: Language = EN) -> discord.ui.View:
    """The Confirm and Cancel buttons of prompt `key`, labelled in `lang`."""
    view = discord.ui.View(timeout=None)  # the custom_ids are matched, not this object
    view.add_item(ConfirmButton(key, "yes", lang))
    view.add_item(ConfirmButton(key, "no", lang))
    return view


class Confirmations:
    """The price prompts of one process, each waiting at most CONFIRM_TIMEOUT for an answer."""

    def __init__(self, timeout: timedelta = CONFIRM_TIMEOUT) -> None:
        self.timeout = timeout
        self._pending: dict[str, Pending] = {}
        self._timers: set[asyncio.Task[None]] = set()

    async def ask(self, interaction: discord.Interaction, text: str, start: Start) -> None:
        """Show `text` with Confirm / Cancel as the response of `interaction` (deferred,
        privately). `start` runs at most once, on a Confirm within the timeout, with the click's
        interaction; Cancel, a late click and no click run nothing."""
        key = secrets.token_urlsafe(12)
        self._pending[key] = Pending(
            interaction.user.id, interaction.created_at, start, interaction
        )
        try:
            view = confirm_view(key, language_of(interaction.locale))
            await interaction.edit_original_response(
                content=text, view=view, allowed_mentions=NO_MENTIONS
            )
        except BaseException:
            del self._pending[key]  # nobody saw it: nobody can answer it
            raise
        timer = asyncio.create_task(self._expire_later(key), name=f"wanbot-confirm-{key}")
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    async def answer(self, interaction: discord.Interaction, key: str, *, confirmed: bool) -> None:
        """A click on Confirm (`confirmed`) or Cancel of prompt `key`."""
        pending = self._pending.get(key)
        lang = language_of(interaction.locale)
        if pending is not None and pending.member_id != interaction.user.id:
            await interaction.response.send_message(t(lang, "confirm.not_yours"), ephemeral=True)
            return
        # taken out before anything is awaited, so a double click can't start twice
        self._pending.pop(key, None)
        if pending is None or interaction.created_at - pending.asked_at > self.timeout:
            expired = t(lang, "confirm.expired")
            await interaction.response.edit_message(content=expired, view=None)
        elif not confirmed:
            cancelled = t(lang, "confirm.cancelled")
            await interaction.response.edit_message(content=cancelled, view=None)
        else:
            await pending.start(interaction)

    def close(self) -> None:
        """Forget every prompt (their clicks will say expired) and stop their timers."""
        self._pending.clear()
        for timer in self._timers:
            timer.cancel()

    async def _expire_later(self, key: str) -> None:
        """Once the time is up, mark an unanswered prompt expired (buttons gone)."""
        await asyncio.sleep(self.timeout.total_seconds())
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        expired = t(language_of(pending.prompt.locale), "confirm.expired")
        with contextlib.suppress(*SEND_ERRORS):  # a click still gets its "expired" answer
            await pending.prompt.edit_original_response(content=expired, view=None)


def _confirmations_of(client: discord.Client) -> Confirmations | None:
    """The prompts of the cog that asks them (the video cog), if it is loaded."""
    cogs: dict[str, Any] = getattr(client, "cogs", {})
    for cog in cogs.values():
        found = getattr(cog, "confirmations", None)
        if isinstance(found, Confirmations):
            return found
    return None
