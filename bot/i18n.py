"""Languages: one catalogue of what members read per language, and which one each reader gets.

A catalogue is a flat JSON object in `bot/locales/<language>.json`: dotted keys, `str.format`
named placeholders (`{price}`), and for a sentence that depends on a number the two keys
`<key>.one` and `<key>.other` (see `tn`). English (`en.json`) is the reference: every other
catalogue has exactly its keys and, key by key, its placeholders (tests/test_i18n.py).

The slash commands' names, descriptions, options and choices are in the catalogues too, under
`command.<command path>.…` and `choice.<value>`, and reach Discord through `CatalogueTranslator`
when the commands are synced. Discord sends every interaction the member's locale and the
server's; its locales are listed at
https://discord.com/developers/docs/reference#locales (and what may be localized at
https://discord.com/developers/docs/interactions/application-commands#localization).
"""

from __future__ import annotations

import functools
import json
import string
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import Any

from discord import Client, Locale, app_commands
from discord.app_commands import TranslationContextLocation as Where

from bot.domain.wording import Sentence, WordedError

Language = str  # one of LANGUAGES
EN: Language = "en"
LANGUAGES: tuple[Language, ...] = (EN, "es-ES", "pt-BR")

# Which numbers take the singular (CLDR plural rules, cardinal "one"): Brazilian Portuguese
# says "0 vídeo", "1 vídeo"; English and Spanish only 1.
_ONE = {"pt-BR": lambda n: n in (0, 1)}
# Languages that write 2,5 for 2.5 (CLDR). Money is not a float here: it stays "$2.50".
_DECIMAL_COMMA = frozenset({"es-ES", "pt-BR"})


@functools.cache
def catalogue(language: Language) -> Mapping[str, str]:
    """The catalogue of `language` (one of LANGUAGES), read once from the package."""
    text = resources.files("bot").joinpath("locales", f"{language}.json").read_text("utf-8")
    entries = json.loads(text)
    if not isinstance(entries, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in entries.items()
    ):
        raise ValueError(f"bot/locales/{language}.json must map keys to strings")
    return MappingProxyType(entries)


def language_of(locale: Locale | str | None) -> Language:
    """The language for a Discord locale: the catalogue of that name, else of its language
    ("es-419" reads Spanish), else English."""
    name = str(getattr(locale, "value", locale or ""))
    if name in LANGUAGES:
        return name
    prefix = name.split("-")[0].lower()
    return next((lang for lang in LANGUAGES if lang.split("-")[0].lower() == prefix), EN)


def server_language(client: Client, guild_id: int) -> Language:
    """The language of what a server's members all read (the channel, the log channel): its
    preferred locale, as far as this process's cache knows the server; else English."""
    guild = client.get_guild(guild_id)
    return language_of(guild.preferred_locale) if guild is not None else EN


def t(language: Language, key: str, /, **values: Any) -> str:
    """The sentence `key` in `language`, its placeholders filled with `values` (floats with
    the language's decimal mark). A key the catalogue lacks reads English
    (tests/test_i18n.py keeps that from happening)."""
    template = catalogue(language).get(key)
    if template is None:
        template = catalogue(EN)[key]
    if language in _DECIMAL_COMMA:
        values = {k: _DecimalComma(v) if isinstance(v, float) else v for k, v in values.items()}
    return template.format(**values)


def say(language: Language, said: Sentence | WordedError) -> str:
    """A sentence of the domain (or every sentence of its error) in `language`."""
    if isinstance(said, WordedError):
        return " ".join(say(language, sentence) for sentence in said.sentences)
    values = {
        name: say(language, value) if isinstance(value, Sentence) else value
        for name, value in said.values.items()
    }
    return t(language, said.key, **values)


def tn(language: Language, key: str, count: int, /, **values: Any) -> str:
    """`key.one` or `key.other`, whichever `count` takes in `language`; `{count}` is filled."""
    one = _ONE.get(language, lambda n: n == 1)(count)
    return t(language, f"{key}.{'one' if one else 'other'}", count=count, **values)


def placeholders(template: str) -> set[str]:
    """A template's placeholders with their formats: `{price}` → price, `{size:.1f}` →
    size:.1f."""
    return {
        f"{name}:{spec}" if spec else name
        for _, name, spec, _ in string.Formatter().parse(template)
        if name is not None
    }


def catalogue_problems(language: Language) -> list[str]:
    """What `language`'s catalogue gets wrong against English: missing keys, extra keys, and
    placeholders that differ. Empty when it is complete."""
    return compare(catalogue(EN), catalogue(language), language)


def compare(english: Mapping[str, str], other: Mapping[str, str], language: str) -> list[str]:
    """What `other` (the catalogue of `language`) gets wrong against `english`."""
    problems = [f"{language}: missing {key!r}" for key in english if key not in other]
    problems += [f"{language}: extra {key!r}" for key in other if key not in english]
    for key in english.keys() & other.keys():
        if placeholders(english[key]) != placeholders(other[key]):
            problems.append(
                f"{language}: {key!r} has {sorted(placeholders(other[key]))}, "
                f"English {sorted(placeholders(english[key]))}"
            )
    return problems


def command_key(context: app_commands.TranslationContext[Any, Any]) -> str | None:
    """The catalogue key of a command's string: `command.budget.show.name`,
    `command.video.option.image.description`, `choice.720p`."""
    data = context.data
    match context.location:
        case Where.command_name | Where.group_name:
            return f"command.{_path(data)}.name"
        case Where.command_description | Where.group_description:
            return f"command.{_path(data)}.description"
        case Where.parameter_name:
            return f"command.{_path(data.command)}.option.{data.name}.name"
        case Where.parameter_description:
            return f"command.{_path(data.command)}.option.{data.name}.description"
        case Where.choice_name:
            return f"choice.{data.value}"
    return None


def _path(command: Any) -> str:
    """`wanbot-settings video-channels add` → `wanbot-settings.video-channels.add`."""
    return str(command.qualified_name).replace(" ", ".")


class _DecimalComma:
    """A float that formats like one, with a decimal comma."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec).replace(".", ",")


class CatalogueTranslator(app_commands.Translator):
    """Gives Discord each command's names and descriptions in every language but English,
    which the commands are written in; Discord shows them by the member's client language."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: Locale,
        context: app_commands.TranslationContext[Any, Any],
    ) -> str | None:
        language = language_of(locale)
        key = command_key(context)
        if language == EN or key is None:
            return None
        return catalogue(language).get(key)


class LocalizedError(app_commands.AppCommandError):
    """A refusal a cog raises from a command: FriendlyTree tells the member `key` in their
    language; its own text is English, for the logs."""

    def __init__(self, key: str, /, **values: Any) -> None:
        super().__init__(t(EN, key, **values))
        self.key = key
        self.values = values

    def text(self, language: Language) -> str:
        """The refusal in `language`."""
        return t(language, self.key, **self.values)
