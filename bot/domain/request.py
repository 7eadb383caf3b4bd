"""GenerationRequest: every input of Wan 2.6 Image-to-Video Flash, validated, and its API body."""

from __future__ import annotations

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

from bot.domain.pricing import MAX_DURATION_S, MIN_DURATION_S, Resolution, price_micro

MAX_PROMPT_CHARS = 1500
MAX_SEED = 2_147_483_647
RANDOM_SEED = -1

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


class InvalidRequest(ValueError):
    """A request the member must fix; the message is friendly and names the field."""


class GenerationRequest(BaseModel):
    """One image-to-video request; defaults follow the API table (../shared/wavespeed-api.md)."""

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
            raise ValueError("must be an http(s) link")
        return value

    @field_validator("negative_prompt")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

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


def describe_errors(exc: ValidationError) -> str:
    """Turn pydantic errors into short sentences a Discord member understands."""
    sentences = []
    for error in exc.errors(include_url=False, include_input=False):
        field = str(error["loc"][0]) if error["loc"] else "request"
        label = FIELD_LABELS.get(field, field)
        sentences.append(_sentence(label, error["type"], error.get("ctx") or {}, error["msg"]))
    return " ".join(sentences)


def _sentence(label: str, kind: str, ctx: dict[str, Any], msg: str) -> str:
    match kind:
        case "missing":
            return f"The {label} is required."
        case "string_too_short":
            return f"The {label} can't be empty."
        case "string_too_long":
            return f"The {label} is too long (at most {ctx['max_length']} characters)."
        case "greater_than_equal" | "less_than_equal" if label == "duration":
            return f"The duration must be {MIN_DURATION_S}–{MAX_DURATION_S} seconds."
        case "greater_than_equal" | "less_than_equal" if label == "seed":
            return f"The seed must be {RANDOM_SEED} (random) or 0–{MAX_SEED}."
        case "literal_error":
            return f"The {label} must be {ctx.get('expected', 'one of the listed values')}."
        case "int_type" | "int_parsing" | "int_from_float":
            return f"The {label} must be a whole number."
        case "bool_type" | "bool_parsing":
            return f"The {label} must be true or false."
        case "extra_forbidden":
            return f"Unknown option {label}."
        case _:
            return f"The {label} {msg.removeprefix('Value error, ').lower()}."
