"""Settings from the environment and `.env`, validated once at start-up."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.domain.budget import BudgetPeriod, BudgetPolicy
from bot.domain.media import MediaLimits
from bot.domain.pricing import parse_usd
from storage import check_database_url


class ConfigError(Exception):
    """A setting is missing or malformed. The message is one line and never holds a secret."""


def _usd_to_micro(value: Any) -> Any:
    if isinstance(value, str):
        return parse_usd(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return parse_usd(str(value))
    return value


MicroDollars = Annotated[int, BeforeValidator(_usd_to_micro), Field(ge=0)]


class Settings(BaseSettings):
    """Every setting wanbot reads. Names are the environment variables (see .env.example)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    discord_token: SecretStr | None = None
    wavespeed_api_key: SecretStr | None = None
    wavespeed_base_url: str = "https://api.wavespeed.ai"
    database_url: str = "sqlite:///data/wanbot.db"
    member_budget_usd: MicroDollars = Field(default="5.00", validate_default=True)
    server_budget_usd: MicroDollars = Field(default="50.00", validate_default=True)
    budget_period: BudgetPeriod = BudgetPeriod.MONTH
    max_jobs_per_member: int = Field(default=2, ge=1, le=50)
    job_timeout_s: float = Field(default=1800.0, ge=30, le=86_400)
    submit_absent_after_s: float = Field(default=300.0, ge=1, le=86_400)
    submit_hold_max_s: float = Field(default=21_600.0, ge=60, le=604_800)
    image_min_side_px: int = Field(default=240, ge=1, le=10_000)
    image_max_side_px: int = Field(default=2000, ge=64, le=10_000)
    audio_min_s: float = Field(default=3.0, ge=0, le=600)
    audio_max_s: float = Field(default=30.0, ge=1, le=600)
    job_lease_s: float = Field(default=30.0, ge=5, le=3600)
    # The WaveSpeed account's limits (wavespeed.ai/docs/account-levels): Bronze, the first tier,
    # allows 2–3 tasks at once and 2–5 videos a minute; the defaults take the lower figures.
    wavespeed_max_concurrent: int = Field(default=2, ge=1, le=10_000)
    wavespeed_max_per_minute: int = Field(default=2, ge=1, le=10_000)
    shard_count: int | None = Field(default=None, ge=1, le=10_000)
    shard_ids: Annotated[list[int] | None, NoDecode] = None  # "0,1", not JSON
    dev_guild_id: int | None = None
    log_level: str = "INFO"
    webhook_public_url: str | None = None  # where WaveSpeed POSTs results (bot.webhooks)
    webhook_listen: str | None = None  # host:port of the webhook server behind that URL
    metrics_listen: str | None = None  # host:port of /healthz and /metrics (bot.metrics)

    @field_validator("wavespeed_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        check_database_url(value)  # SQLite or PostgreSQL; a ValueError never repeats the URL
        return value

    @field_validator("dev_guild_id", "shard_count", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if value == "":
            return None
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",")]
            if not all(part.isdecimal() for part in parts):
                raise ValueError("must be shard numbers separated by commas, e.g. 0,1")
            return [int(part) for part in parts]
        return value

    @field_validator("webhook_public_url", "webhook_listen", mode="before")
    @classmethod
    def _blank_webhook_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("webhook_public_url")
    @classmethod
    def _public_https(cls, value: str | None) -> str | None:
        if value is not None:
            check_public_url(value)
        return value

    @field_validator("webhook_listen")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value

    @model_validator(mode="after")
    def _webhook_settings_together(self) -> Settings:
        if (self.webhook_public_url is None) != (self.webhook_listen is None):
            raise ValueError("WEBHOOK_PUBLIC_URL and WEBHOOK_LISTEN: set both or neither")
        return self

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator("metrics_listen", mode="before")
    @classmethod
    def _metrics_host_and_port(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return None  # empty: no health and metrics server
            parse_listen(value)
        return value

    @model_validator(mode="after")
    def _ranges_in_order(self) -> Settings:
        if self.image_min_side_px > self.image_max_side_px:
            raise ValueError("IMAGE_MIN_SIDE_PX must not exceed IMAGE_MAX_SIDE_PX")
        if self.audio_min_s > self.audio_max_s:
            raise ValueError("AUDIO_MIN_S must not exceed AUDIO_MAX_S")
        if self.submit_absent_after_s >= self.submit_hold_max_s:
            raise ValueError("SUBMIT_ABSENT_AFTER_S must be shorter than SUBMIT_HOLD_MAX_S")
        if self.shard_ids is not None:
            if self.shard_count is None:
                raise ValueError("SHARD_IDS needs SHARD_COUNT (how many shards in all)")
            if not self.shard_ids or len(set(self.shard_ids)) != len(self.shard_ids):
                raise ValueError("SHARD_IDS must list each shard once")
            if not all(0 <= shard < self.shard_count for shard in self.shard_ids):
                raise ValueError("SHARD_IDS must be between 0 and SHARD_COUNT - 1")
        return self

    @property
    def budget_policy(self) -> BudgetPolicy:
        """The default allowances, in micro-dollars, and the period."""
        return BudgetPolicy(self.member_budget_usd, self.server_budget_usd, self.budget_period)

    @property
    def media_limits(self) -> MediaLimits:
        """The image side and audio duration ranges that uploads must fit."""
        return MediaLimits(
            self.image_min_side_px, self.image_max_side_px, self.audio_min_s, self.audio_max_s
        )

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """Where to serve /healthz and /metrics (METRICS_LISTEN), or None: not served."""
        return None if self.metrics_listen is None else parse_listen(self.metrics_listen)

    def require_api_key(self) -> str:
        """The WaveSpeed API key, or ConfigError if it is not set."""
        return _require(self.wavespeed_api_key, "WAVESPEED_API_KEY")

    def require_discord_token(self) -> str:
        """The Discord bot token, or ConfigError if it is not set."""
        return _require(self.discord_token, "DISCORD_TOKEN")


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def check_public_url(value: str) -> None:
    """Refuse a webhook URL WaveSpeed could not call safely: https with a host, or http to a
    loopback host (tests, a proxy on the same machine)."""
    parts = urlsplit(value)
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("must be an https:// URL (http:// only for a loopback host)")


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` (`[::1]:8080` for IPv6) as (host, port); ValueError if it is not one."""
    host, colon, port = value.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdecimal() or not 1 <= int(port) <= 65_535:
        raise ValueError("must be host:port, e.g. 127.0.0.1:8080")
    return host, int(port)


def _require(secret: SecretStr | None, name: str) -> str:
    value = secret.get_secret_value().strip() if secret else ""
    if not value:
        raise ConfigError(f"{name} is not set: add it to the environment or to .env")
    return value


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning a validation error into a one-line ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "a setting"
        reason = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{name} is invalid: {reason}") from None
