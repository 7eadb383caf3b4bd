"""The pure rules behind the result's variation buttons and the price confirmation: which
variations apply, the varied request, and when a price must be confirmed."""

from __future__ import annotations

from typing import Any

import pytest

from bot.domain.pricing import price_micro
from bot.domain.request import GenerationRequest
from bot.domain.server_settings import needs_confirmation, parse_confirm_above
from bot.domain.variations import (
    DURATION_STEPS,
    NotApplicable,
    Variation,
    next_duration,
    variations_of,
    varied,
)

IMAGE = "https://cdn.example/cat.png"
SONG = "https://cdn.example/song.mp3"
HD, AUDIO, SILENT, LONGER = Variation.HD, Variation.AUDIO, Variation.SILENT, Variation.LONGER


def request(**fields: Any) -> GenerationRequest:
    return GenerationRequest.parse(image=IMAGE, prompt="the cat waves", seed=42, **fields)


# --- which variations apply ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("duration", "expected"),
    [(2, 5), (4, 5), (5, 10), (7, 10), (10, 15), (12, 15), (14, 15), (15, None)],
)
def test_longer_goes_to_the_next_step_up(duration: int, expected: int | None) -> None:
    assert next_duration(duration) == expected


def test_the_steps_are_five_ten_fifteen() -> None:
    assert DURATION_STEPS == (5, 10, 15)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, (HD, SILENT, LONGER)),  # the defaults: 720p, 5 s, generated audio
        ({"resolution": "1080p"}, (SILENT, LONGER)),
        ({"enable_audio": False}, (HD, AUDIO, LONGER)),
        ({"duration": 15}, (HD, SILENT)),
        ({"duration": 12}, (HD, SILENT, LONGER)),
        ({"resolution": "1080p", "duration": 15, "enable_audio": False}, (AUDIO,)),
        # the member's own soundtrack: never silent, and never switched to generated audio
        ({"audio": SONG}, (HD, LONGER)),
        ({"audio": SONG, "enable_audio": False}, (HD, LONGER)),
        ({"audio": SONG, "resolution": "1080p", "duration": 15}, ()),
    ],
)
def test_only_variations_that_change_something_are_offered(
    fields: dict[str, Any], expected: tuple[Variation, ...]
) -> None:
    assert variations_of(request(**fields)) == expected


# --- the varied request --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "variation", "change"),
    [
        ({}, HD, {"resolution": "1080p"}),
        ({"enable_audio": False}, AUDIO, {"enable_audio": True}),
        ({}, SILENT, {"enable_audio": False}),
        ({}, LONGER, {"duration": 10}),
        ({"duration": 7}, LONGER, {"duration": 10}),
        ({"duration": 10}, LONGER, {"duration": 15}),
        ({"audio": SONG, "duration": 3}, LONGER, {"duration": 5}),
    ],
)
def test_a_variation_changes_exactly_one_thing(
    fields: dict[str, Any], variation: Variation, change: dict[str, Any]
) -> None:
    base = request(
        negative_prompt="blur", shot_type="multi", enable_prompt_expansion=True, **fields
    )
    result = varied(base, variation)
    assert result.to_api_body() == {**base.to_api_body(), **change}
    assert (result.prompt, result.image, result.seed) == (base.prompt, base.image, 42)


def test_a_varied_request_is_priced_by_its_new_shape() -> None:
    base = request()  # 720p · 5 s · audio: $0.25
    assert varied(base, HD).price_micro == price_micro(5, "1080p", True) == 375_000
    assert varied(base, SILENT).price_micro == price_micro(5, "720p", False) == 125_000
    assert varied(base, LONGER).price_micro == price_micro(10, "720p", True) == 500_000
    assert varied(request(enable_audio=False), AUDIO).price_micro == 250_000


@pytest.mark.parametrize(
    ("fields", "variation"),
    [
        ({"resolution": "1080p"}, HD),
        ({}, AUDIO),  # already has audio
        ({"enable_audio": False}, SILENT),  # already silent
        ({"duration": 15}, LONGER),
        ({"audio": SONG}, SILENT),
        ({"audio": SONG, "enable_audio": False}, AUDIO),
    ],
)
def test_a_variation_that_would_change_nothing_is_refused(
    fields: dict[str, Any], variation: Variation
) -> None:
    with pytest.raises(NotApplicable):
        varied(request(**fields), variation)


def test_custom_ids_stay_short() -> None:
    # a button's custom_id is wanbot:vary:<variation>:<job id>, at most 100 characters
    longest = max(len(v.value) for v in Variation)
    assert len(f"wanbot:vary:{'x' * longest}:{2**63}") <= 100


# --- confirm_above -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "micro"),
    [
        ("0.50", 500_000),
        ("$1", 1_000_000),
        (" 2.125 ", 2_125_000),
        ("0", None),
        ("0.00", None),
        ("off", None),
        ("OFF", None),
        ("none", None),
        ("", None),
    ],
)
def test_parse_confirm_above(text: str, micro: int | None) -> None:
    assert parse_confirm_above(text) == micro


@pytest.mark.parametrize("text", ["-1", "cheap", "1.0000001", "$"])
def test_parse_confirm_above_refuses_what_is_not_an_amount(text: str) -> None:
    with pytest.raises(ValueError):
        parse_confirm_above(text)


@pytest.mark.parametrize(
    ("price", "threshold", "expected"),
    [
        (250_000, None, False),  # off
        (250_000, 250_000, False),  # at the threshold: not above it
        (250_001, 250_000, True),
        (750_000, 500_000, True),
        (125_000, 500_000, False),
    ],
)
def test_needs_confirmation_above_the_threshold_only(
    price: int, threshold: int | None, expected: bool
) -> None:
    assert needs_confirmation(price, threshold) is expected
