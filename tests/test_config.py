"""Settings: names, defaults, and one clear line (never a secret) for a bad value."""

from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings
from bot.domain.budget import BudgetPeriod

SECRET = "sk-super-secret-value-123"
VARIABLES = [
    "DISCORD_TOKEN",
    "WAVESPEED_API_KEY",
    "WAVESPEED_BASE_URL",
    "WAVESPEED_MAX_CONCURRENT",
    "WAVESPEED_MAX_PER_MINUTE",
    "DATABASE_URL",
    "MEMBER_BUDGET_USD",
    "SERVER_BUDGET_USD",
    "BUDGET_PERIOD",
    "MAX_JOBS_PER_MEMBER",
    "JOB_TIMEOUT_S",
    "SUBMIT_ABSENT_AFTER_S",
    "SUBMIT_HOLD_MAX_S",
    "IMAGE_MIN_SIDE_PX",
    "IMAGE_MAX_SIDE_PX",
    "AUDIO_MIN_S",
    "AUDIO_MAX_S",
    "JOB_LEASE_S",
    "SHARD_COUNT",
    "SHARD_IDS",
    "DEV_GUILD_ID",
    "LOG_LEVEL",
    "WEBHOOK_PUBLIC_URL",
    "WEBHOOK_LISTEN",
    "METRICS_LISTEN",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults() -> None:
    settings = load_settings()
    assert settings.wavespeed_base_url == "https://api.wavespeed.ai"
    assert settings.database_url == "sqlite:///data/wanbot.db"
    assert settings.budget_policy.member_allowance == 5_000_000
    assert settings.budget_policy.server_allowance == 50_000_000
    assert settings.budget_period is BudgetPeriod.MONTH
    assert settings.dev_guild_id is None


def test_reads_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        f"WAVESPEED_API_KEY={SECRET}\nMEMBER_BUDGET_USD=2.125\nBUDGET_PERIOD=week\nDEV_GUILD_ID=\n"
    )
    monkeypatch.setenv("SERVER_BUDGET_USD", "$1,000")
    monkeypatch.setenv("WAVESPEED_BASE_URL", "http://127.0.0.1:8378/")
    settings = load_settings()
    assert settings.require_api_key() == SECRET
    assert settings.member_budget_usd == 2_125_000
    assert settings.server_budget_usd == 1_000_000_000
    assert settings.budget_period is BudgetPeriod.WEEK
    assert settings.wavespeed_base_url == "http://127.0.0.1:8378"
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MEMBER_BUDGET_USD", "lots"),
        ("SERVER_BUDGET_USD", "-5"),
        ("BUDGET_PERIOD", "fortnight"),
        ("MAX_JOBS_PER_MEMBER", "0"),
        ("JOB_TIMEOUT_S", "soon"),
        ("DEV_GUILD_ID", "my-server"),
        ("SHARD_IDS", "0;1"),
        ("JOB_LEASE_S", "1"),
        ("WAVESPEED_BASE_URL", "api.wavespeed.ai"),
        ("LOG_LEVEL", "LOUD"),
        ("DATABASE_URL", "postgres://admin:hunter2@db:port/wanbot"),
    ],
)
def test_malformed_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", SECRET)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{name} is invalid:")
    assert "\n" not in message and SECRET not in message and "hunter2" not in message


def test_missing_secrets_are_named() -> None:
    settings = load_settings()
    with pytest.raises(ConfigError, match=r"^WAVESPEED_API_KEY is not set"):
        settings.require_api_key()
    with pytest.raises(ConfigError, match=r"^DISCORD_TOKEN is not set"):
        settings.require_discord_token()


def test_every_setting_is_documented_in_env_example_and_readme() -> None:
    root = Path(__file__).resolve().parent.parent
    example = (root / ".env.example").read_text()
    readme = (root / "README.md").read_text()
    documented = {line.split("=", 1)[0] for line in example.splitlines() if "=" in line}
    names = {name.upper() for name in Settings.model_fields}
    assert names == documented == set(VARIABLES)
    assert all(f"`{name}`" in readme for name in names)


def test_shards_are_read_from_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARD_COUNT", "3")
    monkeypatch.setenv("SHARD_IDS", "0, 2")
    settings = load_settings()
    assert (settings.shard_count, settings.shard_ids) == (3, [0, 2])
    assert load_settings(shard_count="", shard_ids="").shard_ids is None


@pytest.mark.parametrize(
    ("count", "ids", "reason"),
    [("", "0", "needs SHARD_COUNT"), ("2", "0,0", "each shard once"), ("2", "2", "between 0")],
)
def test_inconsistent_shards_are_refused(count: str, ids: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        load_settings(shard_count=count, shard_ids=ids)
