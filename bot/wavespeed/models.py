"""What a task looks like: the Prediction model, its statuses, and finding task error codes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "timeout", "deleted"})
KNOWN_STATUSES = FINAL_STATUSES | {"created", "processing"}

_LEADING_CODE = re.compile(r"^\W*(\d{4})\b")
_LABELLED_CODE = re.compile(r"\b(?:code|error)\W{0,3}(\d{4})\b", re.IGNORECASE)
_KNOWN_CODE = re.compile(r"\b(1200|1400|1401|1402|1403|1405|5000|5003|5004)\b")


class Prediction(BaseModel):
    """The `data` of a submit or result envelope. Missing or null fields get defaults."""

    model_config = ConfigDict(extra="ignore")

    id: str
    model: str = ""
    outputs: list[str] = []
    urls: dict[str, str] = {}
    has_nsfw_contents: list[bool] | None = None
    status: str
    created_at: str | None = None
    error: str | None = None
    timings: dict[str, Any] | None = None
    task_code: int | None = Field(default=None, validation_alias=AliasChoices("error_code", "code"))

    @field_validator("model", "outputs", mode="before")
    @classmethod
    def _default_for_null(cls, value: Any, info: ValidationInfo) -> Any:
        return cls.model_fields[info.field_name or ""].default if value is None else value

    @field_validator("urls", mode="before")
    @classmethod
    def _string_urls(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return {}
        return {key: url for key, url in value.items() if isinstance(url, str)}

    @field_validator("task_code", mode="before")
    @classmethod
    def _integer_code(cls, value: Any) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return int(value) if isinstance(value, str) and value.strip().isdigit() else None

    @property
    def created(self) -> datetime | None:
        """`created_at` as an aware UTC datetime; None if it is missing or unreadable."""
        return parse_timestamp(self.created_at)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def is_completed(self) -> bool:
        return self.status == "completed"

    @property
    def nsfw(self) -> bool:
        """True if any output was flagged."""
        return any(self.has_nsfw_contents or ())

    @property
    def inference_ms(self) -> int | None:
        value = (self.timings or {}).get("inference")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
        return None

    @property
    def error_code(self) -> int | None:
        """The numeric task error code: an int `error_code`/`code` field, else one in `error`."""
        if self.task_code is not None and self.task_code not in (0, 200):
            return self.task_code
        return parse_task_code(self.error)


def parse_timestamp(text: str | None) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime (no offset = UTC); None if absent or unreadable.

    WaveSpeed writes nanoseconds ("2025-05-19T06:09:15.948268264Z"); datetime.fromisoformat
    takes them since Python 3.11, dropping the digits past microseconds.
    """
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_task_code(text: str | None) -> int | None:
    """Find a task error code in a text: leading ("1200: …"), labelled ("code 1200") or known."""
    if not text:
        return None
    for pattern in (_LEADING_CODE, _LABELLED_CODE, _KNOWN_CODE):
        if match := pattern.search(text):
            return int(match.group(1))
    return None
