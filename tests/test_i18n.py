"""Languages: the catalogues are complete and agree with English, the commands Discord gets
are localized with valid, unique names, and the language follows Discord's locale."""

from __future__ import annotations

import ast
import inspect
import re
import unicodedata
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import discord
import pytest

from bot import i18n
from bot.domain import media, outcomes, request
from bot.domain.budget import Balance, BudgetExceeded
from bot.i18n import EN, LANGUAGES, catalogue, compare, language_of, placeholders, t, tn
from cogs import texts
from tests.discord_world import make_world

ROOT = Path(__file__).resolve().parent.parent
TRANSLATED = [lang for lang in LANGUAGES if lang != EN]
# Discord's name rule for chat-input commands and options:
# ^[-_\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$, lowercase where a letter has a lowercase
# (https://discord.com/developers/docs/interactions/application-commands#application-command-object)
DEVANAGARI_AND_THAI = ((0x0900, 0x097F), (0xA8E0, 0xA8FF), (0x0E00, 0x0E7F))
# The Discord locales of a language, where it has more than its own (es-419 reads Spanish).
LOCALES = {"en": ("en-US", "en-GB"), "es-ES": ("es-ES", "es-419")}


def valid_name(name: str) -> bool:
    def allowed(char: str) -> bool:
        code = ord(char)
        return (
            char in "-_"
            or unicodedata.category(char)[0] in "LN"
            or any(low <= code <= high for low, high in DEVANAGARI_AND_THAI)
        )

    return 1 <= len(name) <= 32 and all(map(allowed, name)) and name == name.lower()


# --- the catalogues -------------------------------------------------------------------------------


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_catalogue_has_englishs_keys_and_placeholders(language: str) -> None:
    assert i18n.catalogue_problems(language) == []


def test_a_missing_an_extra_key_and_a_changed_placeholder_are_caught() -> None:
    english = {"a": "{price} left", "b": "Hi", "c": "{size:.1f} MB"}
    other = {"a": "quedan {precio}", "c": "{size} MB", "z": "extra"}
    assert sorted(compare(english, other, "xx")) == [
        "xx: 'a' has ['precio'], English ['price']",
        "xx: 'c' has ['size'], English ['size:.1f']",
        "xx: extra 'z'",
        "xx: missing 'b'",
    ]


def test_every_catalogue_file_is_packaged_with_the_bot() -> None:
    files = {path.stem for path in (ROOT / "bot" / "locales").glob("*.json")}
    assert files == set(LANGUAGES)
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")
    assert '"locales/*.json"' in pyproject


@pytest.mark.parametrize(
    "messages",
    [media.MESSAGES, request.MESSAGES, outcomes.MESSAGES],
    ids=["media", "request", "outcomes"],
)
def test_the_domains_english_is_the_english_catalogue(messages: Mapping[str, str]) -> None:
    english = catalogue(EN)
    assert {key: english.get(key) for key in messages} == dict(messages)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_sentence_formats(language: str) -> None:
    """Each template takes its placeholders (numbers for the formatted ones)."""
    for key, template in catalogue(language).items():
        values: dict[str, Any] = {}
        for field in placeholders(template):
            name, _, spec = field.partition(":")
            values[name] = 1.5 if spec else "x"
        assert template.format(**values), key


def test_a_stored_failure_is_said_in_the_members_language() -> None:
    failed = outcomes.JobFailure(
        outcomes.FailureKind.GENERATION_FAILED,
        "The generation failed at WaveSpeed: Internal error. "
        "This is usually temporary: try again in a minute.",
        5000,
    )
    assert texts.failure_reason(failed) == failed.message
    spanish = texts.failure_reason(failed, lang="es-ES")
    assert spanish.startswith("La generación falló en WaveSpeed: Internal error.")
    assert "Suele ser algo temporal" in spanish
    unknown = outcomes.JobFailure(outcomes.FailureKind.BAD_INPUT, "Something an old bot said.")
    assert texts.failure_reason(unknown, lang="pt-BR") == "Something an old bot said."


# --- choosing the language ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "language"),
    [
        (discord.Locale.american_english, "en"),
        (discord.Locale.british_english, "en"),
        (discord.Locale.spain_spanish, "es-ES"),
        (discord.Locale.latin_american_spanish, "es-ES"),
        (discord.Locale.brazil_portuguese, "pt-BR"),
        (discord.Locale.french, "en"),
        ("pt-BR", "pt-BR"),
        (None, "en"),
        ("", "en"),
    ],
)
def test_a_locale_reads_its_language_or_english(locale: Any, language: str) -> None:
    assert language_of(locale) == language


def test_plurals_and_numbers_follow_the_language() -> None:
    assert tn(EN, "queue.ahead", 1) == "1 video ahead of yours"
    assert tn("es-ES", "queue.ahead", 2) == "2 vídeos por delante del tuyo"
    assert tn("pt-BR", "history.videos", 0) == "0 vídeo"  # CLDR: 0 and 1 are singular
    assert t("es-ES", "media.too_big.image", size=12.25, limit=10.0) == (
        "Esa imagen pesa 12,2 MB; el límite es de 10,0 MB."
    )
    assert "12.2 MB" in t(EN, "media.too_big.image", size=12.25, limit=10.0)


@pytest.mark.parametrize("language", LANGUAGES)
def test_money_is_written_in_dollars_the_same_way_in_every_language(language: str) -> None:
    balance = Balance(allowance=5_000_000, granted=0, spent=4_900_000, held=0, resets_at=None)
    refusal = texts.refusal_text(BudgetExceeded("member", 1_250_000, balance), lang=language)
    assert "**$1.25**" in refusal and "$0.10" in refusal


# --- the commands Discord gets --------------------------------------------------------------------


def synced_strings(commands: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], str]]:
    """command_strings over top-level commands, whose options of type 1 and 2 are
    subcommands and groups (their own path), the rest options."""

    def walk(entries: list[dict[str, Any]], path: str, top: bool) -> Iterator[Any]:
        for entry in entries:
            nested = top or entry.get("type") in (1, 2)  # a command, subcommand or group
            here = f"{path}.{entry['name']}" if nested else f"{path}.option.{entry['name']}"
            yield f"{here}.name", entry, "name"
            yield f"{here}.description", entry, "description"
            for choice in entry.get("choices") or []:
                yield f"choice.{choice['value']}", choice, "name"
            yield from walk(entry.get("options") or [], here, False)

    yield from walk(commands, "command", True)


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The global commands as the bot synced them to the (loopback) Discord."""
    import asyncio

    async def sync() -> list[dict[str, Any]]:
        async with make_world(tmp_path_factory.mktemp("sync")) as world, world.bot():
            return world.discord.commands[None]

    return asyncio.run(sync())


def test_every_command_string_is_in_the_english_catalogue(synced: list[dict[str, Any]]) -> None:
    english = catalogue(EN)
    found = {key: entry[field] for key, entry, field in synced_strings(synced)}
    assert found == {k: v for k, v in english.items() if k.startswith(("command.", "choice."))}


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_sync_carries_every_translation(synced: list[dict[str, Any]], language: str) -> None:
    words = catalogue(language)
    for key, entry, field in synced_strings(synced):
        localized = entry.get(f"{field}_localizations") or {}
        for locale in LOCALES.get(language, (language,)):
            assert localized.get(locale) == words[key], (key, locale)
        assert "fr" not in localized and "en-US" not in localized  # English is the default


@pytest.mark.parametrize("language", LANGUAGES)
def test_localized_names_are_valid_and_unique(synced: list[dict[str, Any]], language: str) -> None:
    locale = LOCALES.get(language, (language,))[0]

    def name(entry: dict[str, Any]) -> str:
        return (entry.get("name_localizations") or {}).get(locale, entry["name"])

    def check(entries: list[dict[str, Any]], where: str) -> None:
        names = [name(entry) for entry in entries]
        assert len(set(names)) == len(names), (where, names)
        for entry, shown in zip(entries, names, strict=True):
            assert valid_name(shown), (where, shown)
            assert 1 <= len(entry["description"]) <= 100
            for text in (entry.get("description_localizations") or {}).values():
                assert 1 <= len(text) <= 100, (where, text)
            for choice in entry.get("choices") or []:
                for text in [choice["name"], *(choice.get("name_localizations") or {}).values()]:
                    assert 1 <= len(text) <= 100, (where, text)
            check(entry.get("options") or [], f"{where} {shown}")

    check(synced, "/")


@pytest.mark.parametrize("language", LANGUAGES)
def test_commands_named_in_messages_are_the_ones_members_see(
    synced: list[dict[str, Any]], language: str
) -> None:
    """A message that tells members to type `/history` names it as their Discord shows it."""
    locale = LOCALES.get(language, (language,))[0]
    shown = {(c.get("name_localizations") or {}).get(locale, c["name"]) for c in synced}
    for key, text in catalogue(language).items():
        if key.startswith(("command.", "choice.")):
            continue
        for named in re.findall(r"(?:^|[\s`(])/([^\W\d][\w-]*)", text):
            assert named in shown, (language, key, named)


def test_a_changed_translation_syncs_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    async def starts() -> int:
        async with make_world(tmp_path) as world:
            async with world.bot():
                pass
            async with world.bot():  # the same commands and words: no sync
                pass
            changed = dict(catalogue("es-ES"))
            changed["command.video.description"] = "Convierte una imagen en un vídeo"
            real = i18n.catalogue
            monkeypatch.setattr(
                i18n, "catalogue", lambda lang: changed if lang == "es-ES" else real(lang)
            )
            async with world.bot():
                pass
            [video] = [c for c in world.discord.commands[None] if c["name"] == "video"]
            assert video["description_localizations"]["es-ES"] == "Convierte una imagen en un vídeo"
            return len(world.discord.requests_to("PUT", r"/applications/\d+/commands"))

    assert asyncio.run(starts()) == 2


# --- the cogs pass the language -------------------------------------------------------------------


def test_every_cog_passes_the_language_to_the_texts_that_take_one() -> None:
    """A texts function that takes `lang` defaults to English, so a call without it would
    answer every member in English: each call in the cogs names it."""
    takes_lang = {
        name
        for name, function in inspect.getmembers(texts, inspect.isfunction)
        if "lang" in inspect.signature(function).parameters
    }
    missing = []
    for path in sorted((ROOT / "cogs").glob("*.py")):
        if path.name == "texts.py":
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "texts"
                and node.func.attr in takes_lang
                and not any(k.arg == "lang" for k in node.keywords)
            ):
                missing.append(f"{path.name}:{node.lineno} texts.{node.func.attr}")
    assert missing == []
