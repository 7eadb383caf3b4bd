"""GenerationRequest: every input of Wan 2.6 Image-to-Video Flash, validated, and its API body."""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from bot.domain.pricing import MAX_DURATION_S, MIN_DURATION_S, Resolution, price_micro
from bot.domain.wording import Sentence, WordedError

MAX_PROMPT_CHARS = 1500
MAX_SEED = 2_147_483_647
RANDOM_SEED = -1

# Unicode categories removed from prompts: controls (Cc; a newline survives, a tab becomes a
# space), format characters (Cf: bidirectional overrides and isolates, zero-width spaces and
# joiners, BOM…) and lone surrogates (Cs), which cannot be sent as UTF-8.
_REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})
# Every character str.splitlines breaks on becomes a newline, so no line break is lost.
_LINE_BREAKS = str.maketrans(
    dict.fromkeys("\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029", "\n") | {"\t": " "}
)
_BLANK_LINE_RUNS = re.compile(r"\n{3,}")
# Letters that render as nothing, often used to fake an empty message.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")

FIELD_LABELS = {
    "image": "image",
    "prompt": "prompt",
    "audio": "audio",
    "negative_prompt": "negative prompt",
    "resolution": "resolution",
    "duration": "duration",
    "shot_type": "shot type",
    "enable_prompt_expansion": "prompt expansion",
    "enable_audio": "audio generation",
    "seed": "seed",
}
# The problems in English by catalogue key (bot/locales/en.json holds the same wording); a
# field's name is the sentence request.field.<name>.
MESSAGES = {
    **{f"request.field.{name}": label for name, label in FIELD_LABELS.items()},
    "request.missing": "The {field} is required.",
    "request.empty": "The {field} can't be empty.",
    "request.too_long": "The {field} is too long (at most {max_length} characters).",
    "request.duration_range": "The duration must be {min}–{max} seconds.",
    "request.seed_range": "The seed must be {random} (random) or 0–{max}.",
    "request.choice": "The {field} must be {expected}.",
    "request.whole_number": "The {field} must be a whole number.",
    "request.true_or_false": "The {field} must be true or false.",
    "request.unknown_option": "Unknown option {field}.",
    "request.not_a_link": "The {field} must be an http(s) link.",
    "request.no_visible_text": "The {field} has no visible text.",
    "request.invalid": "The {field} {detail}.",
}


class InvalidRequest(WordedError):
    """A request the member must fix; the message is friendly and names the field, and
    `sentences` say it in any language."""

    def __init__(self, sentences: list[Sentence]) -> None:
        super().__init__(sentences, MESSAGES)


class GenerationRequest(BaseModel):
    """One image-to-video request; defaults follow WaveSpeed's public API docs for the model.

    Prompts are cleaned with clean_text; a prompt with nothing visible left is refused and a
    negative prompt with nothing visible left is dropped.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    image: str
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    audio: str | None = None
    negative_prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    resolution: Resolution = "720p"
    duration: StrictInt = Field(default=5, ge=MIN_DURATION_S, le=MAX_DURATION_S)
    shot_type: Literal["single", "multi"] = "single"
    enable_prompt_expansion: StrictBool = False
    enable_audio: StrictBool = True
    seed: StrictInt = Field(default=RANDOM_SEED, ge=RANDOM_SEED, le=MAX_SEED)

    @field_validator("image", "audio")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise PydanticCustomError("not_a_link", "must be an http(s) link")
        return value

    @field_validator("prompt")
    @classmethod
    def _visible_prompt(cls, value: str) -> str:
        cleaned = clean_text(value)
        if not has_visible_text(cleaned):
            raise PydanticCustomError("no_visible_text", "has no visible text")
        return cleaned

    @field_validator("negative_prompt")
    @classmethod
    def _visible_or_none(cls, value: str | None) -> str | None:
        cleaned = clean_text(value or "")
        return cleaned if has_visible_text(cleaned) else None

    @property
    def has_audio(self) -> bool:
        """The output has sound: generated audio, or a custom track to sync to."""
        return self.enable_audio or self.audio is not None

    @property
    def price_micro(self) -> int:
        """What this request costs, in micro-dollars."""
        return price_micro(self.duration, self.resolution, self.has_audio)

    def to_api_body(self) -> dict[str, Any]:
        """The JSON body for the submit endpoint, unset optionals omitted.

        Resolution, duration, audio and seed are always sent: the price depends on them, and the
        model page and the API table disagree on the default duration (15 s vs 5 s).
        """
        return self.model_dump(exclude_none=True)

    @classmethod
    def parse(cls, **fields: Any) -> GenerationRequest:
        """Validate, raising InvalidRequest with one friendly sentence per problem."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise InvalidRequest(describe_errors(exc)) from None


def clean_text(text: str) -> str:
    """The text in NFC without control, format (bidi, zero-width) or surrogate characters.

    Line breaks become newlines and tabs spaces; trailing spaces go, runs of blank lines shrink
    to one, and the whole text is stripped.
    """
    flat = text.replace("\r\n", "\n").translate(_LINE_BREAKS)
    kept = "".join(
        char
        for char in flat
        if char == "\n" or unicodedata.category(char) not in _REMOVED_CATEGORIES
    )
    lines = unicodedata.normalize("NFC", kept).split("\n")
    return _BLANK_LINE_RUNS.sub("\n\n", "\n".join(line.rstrip() for line in lines)).strip()


def has_visible_text(text: str) -> bool:
    """Whether some character is a letter, digit, punctuation or symbol that renders as ink."""
    return any(
        unicodedata.category(char)[0] in "LNPS" and char not in _BLANK_LETTERS for char in text
    )


def describe_errors(exc: ValidationError) -> list[Sentence]:
    """Turn pydantic errors into short sentences a Discord member understands."""
    sentences = []
    for error in exc.errors(include_url=False, include_input=False):
        name = str(error["loc"][0]) if error["loc"] else "request"
        # a field of the model by its label; anything else (an unknown option) as it was typed
        field: Sentence | str = Sentence(f"request.field.{name}") if name in FIELD_LABELS else name
        sentences.append(
            _sentence(name, field, error["type"], error.get("ctx") or {}, error["msg"])
        )
    return sentences


def _sentence(
    name: str, field: Sentence | str, kind: str, ctx: dict[str, Any], msg: str
) -> Sentence:
    match kind:
        case "missing":
            return Sentence("request.missing", {"field": field})
        case "string_too_short":
            return Sentence("request.empty", {"field": field})
        case "string_too_long":
            return Sentence("request.too_long", {"field": field, "max_length": ctx["max_length"]})
        case "greater_than_equal" | "less_than_equal" if name == "duration":
            return Sentence(
                "request.duration_range", {"min": MIN_DURATION_S, "max": MAX_DURATION_S}
            )
        case "greater_than_equal" | "less_than_equal" if name == "seed":
            return Sentence("request.seed_range", {"random": RANDOM_SEED, "max": MAX_SEED})
        case "literal_error":
            expected = ctx.get("expected", "one of the listed values")
            return Sentence("request.choice", {"field": field, "expected": expected})
        case "int_type" | "int_parsing" | "int_from_float":
            return Sentence("request.whole_number", {"field": field})
        case "bool_type" | "bool_parsing":
            return Sentence("request.true_or_false", {"field": field})
        case "extra_forbidden":
            return Sentence("request.unknown_option", {"field": field})
        case "not_a_link" | "no_visible_text":
            return Sentence(f"request.{kind}", {"field": field})
        case _:  # pydantic's own words, which only a bug in the bot's checks could show
            detail = msg.removeprefix("Value error, ").lower()
            return Sentence("request.invalid", {"field": field, "detail": detail})
