"""Pricing: the model page's table and worked examples, exactly, in integer micro-dollars."""

import pytest

from bot.domain.pricing import format_usd, parse_usd, price_micro


@pytest.mark.parametrize(
    ("resolution", "audio", "per_five_seconds"),
    [
        ("720p", False, "$0.125"),
        ("720p", True, "$0.25"),
        ("1080p", False, "$0.1875"),
        ("1080p", True, "$0.375"),
    ],
)
def test_published_table_per_five_seconds(
    resolution: str, audio: bool, per_five_seconds: str
) -> None:
    assert format_usd(price_micro(5, resolution, audio)) == per_five_seconds


@pytest.mark.parametrize(
    ("duration", "resolution", "audio", "expected"),
    [(5, "720p", False, "$0.125"), (10, "720p", True, "$0.50"), (15, "1080p", True, "$1.125")],
)
def test_published_examples(duration: int, resolution: str, audio: bool, expected: str) -> None:
    assert format_usd(price_micro(duration, resolution, audio)) == expected


@pytest.mark.parametrize("duration", range(2, 16))
@pytest.mark.parametrize("resolution", ["720p", "1080p"])
@pytest.mark.parametrize("audio", [False, True])
def test_every_combination_matches_the_formula(duration: int, resolution: str, audio: bool) -> None:
    # $0.125 × (duration / 5) × 1.5 (1080p) × 2 (audio), done in exact fractions of a micro-dollar
    expected_micro = 125_000 * duration * (3 if resolution == "1080p" else 2) * (2 if audio else 1)
    assert expected_micro % 10 == 0
    price = price_micro(duration, resolution, audio)
    assert isinstance(price, int)
    assert price == expected_micro // 10


@pytest.mark.parametrize("duration", [0, 1, 16, -5, True])
def test_out_of_range_duration_is_refused(duration: int) -> None:
    with pytest.raises(ValueError, match="duration"):
        price_micro(duration, "720p", False)


def test_unknown_resolution_is_refused() -> None:
    with pytest.raises(ValueError, match="resolution"):
        price_micro(5, "4k", False)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("micro", "text"),
    [
        (0, "$0.00"),
        (500_000, "$0.50"),
        (1_125_000, "$1.125"),
        (187_500, "$0.1875"),
        (1, "$0.000001"),
        (1_234_000_000, "$1,234.00"),
        (-250_000, "-$0.25"),
    ],
)
def test_format_usd(micro: int, text: str) -> None:
    assert format_usd(micro) == text


@pytest.mark.parametrize(
    ("text", "micro"),
    [
        ("5", 5_000_000),
        ("$2.50", 2_500_000),
        (" 0.125 ", 125_000),
        ("1,000", 1_000_000_000),
        ("$12,345.50", 12_345_500_000),
        ("0.000001", 1),
    ],
)
def test_parse_usd(text: str, micro: int) -> None:
    assert parse_usd(text) == micro


@pytest.mark.parametrize(
    "text",
    # "2,50" and "0,5": decimal commas (Spanish, Portuguese), not thousands
    [
        "abc",
        "",
        "0.0000001",
        "nan",
        "inf",
        "1e999999999",
        "1_000",
        "١٢",
        "1e3",
        "--1",
        "2,50",
        "0,5",
    ],
)
def test_parse_usd_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_usd(text)
