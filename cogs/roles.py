"""The Discord roles a member holds, as the ids the store's role tiers are keyed by."""

from __future__ import annotations

import discord


def role_ids(user: discord.User | discord.Member) -> tuple[int, ...]:
    """The ids of the roles `user` holds in the interaction's server (discord.py's Member.roles,
    @everyone included: it never has a tier). A plain User (no server) holds none."""
    return tuple(role.id for role in user.roles) if isinstance(user, discord.Member) else ()
