"""GenerationRequest: validation messages and the exact API body."""

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.request import (
    MAX_PROMPT_CHARS,
    GenerationRequest,
    InvalidRequest,
    clean_text,
    has_visible_text,
)

IMAGE = "https://cdn.example/cat.png"


def test_defaults_serialise_to_an_explicit_body() -> None:
    request = GenerationRequest.parse(image=IMAGE, prompt="  the cat waves  ")
    assert request.to_api_body() == {
        "image": IMAGE,
        "prompt": "the cat waves",
        "resolution": "720p",
        "duration": 5,
        "shot_type": "single",
        "enable_prompt_expansion": False,
        "enable_audio": True,
        "seed": -1,
    }


def test_every_parameter_reaches_the_body() -> None:
    request = GenerationRequest.parse(
        image=IMAGE,
        prompt="waves",
        audio="https://cdn.example/song.mp3",
        negative_prompt="blur",
        resolution="1080p",
        duration=15,
        shot_type="multi",
        enable_prompt_expansion=True,
        enable_audio=False,
        seed=2_147_483_647,
    )
    body = request.to_api_body()
    assert body["audio"] == "https://cdn.example/song.mp3"
    assert body["negative_prompt"] == "blur"
    assert (body["resolution"], body["duration"], body["shot_type"]) == ("1080p", 15, "multi")
    assert body["enable_prompt_expansion"] is True and body["enable_audio"] is False
    assert body["seed"] == 2_147_483_647


def test_custom_audio_counts_as_audio_for_the_price() -> None:
    silent = GenerationRequest.parse(image=IMAGE, prompt="p", enable_audio=False)
    synced = GenerationRequest.parse(
        image=IMAGE, prompt="p", enable_audio=False, audio="https://cdn.example/a.wav"
    )
    assert silent.price_micro == 125_000
    assert synced.has_audio and synced.price_micro == 250_000


def test_blank_negative_prompt_is_omitted() -> None:
    body = GenerationRequest.parse(image=IMAGE, prompt="p", negative_prompt="   ").to_api_body()
    assert "negative_prompt" not in body


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt": ""}, "The prompt can't be empty."),
        ({"prompt": "   "}, "The prompt can't be empty."),
        ({"prompt": "\u200b\u2060\ufeff"}, "The prompt has no visible text."),
        ({"prompt": "\u202e\u200d\n\x00\u3164"}, "The prompt has no visible text."),
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, f"at most {MAX_PROMPT_CHARS} characters"),
        ({"duration": 1}, "The duration must be 2–15 seconds."),
        ({"duration": 16}, "The duration must be 2–15 seconds."),
        ({"duration": True}, "The duration must be a whole number."),
        ({"duration": "5"}, "The duration must be a whole number."),
        ({"seed": -2}, "The seed must be -1 (random) or 0–2147483647."),
        ({"seed": 2_147_483_648}, "The seed must be -1 (random) or 0–2147483647."),
        ({"resolution": "4k"}, "The resolution must be '720p' or '1080p'."),
        ({"shot_type": "many"}, "The shot type must be 'single' or 'multi'."),
        ({"image": "file:///etc/passwd"}, "The image must be an http(s) link."),
        ({"audio": "ftp://x/a.mp3"}, "The audio must be an http(s) link."),
        ({"enable_audio": "yes"}, "The audio generation must be true or false."),
        ({"colour": "red"}, "Unknown option colour."),
    ],
)
def test_bad_input_gets_a_friendly_message(fields: dict, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        GenerationRequest.parse(**{"image": IMAGE, "prompt": "p", **fields})
    assert message in str(caught.value)


def test_missing_prompt_is_named() -> None:
    with pytest.raises(InvalidRequest, match=r"The prompt is required\."):
        GenerationRequest.parse(image=IMAGE)


def test_round_trips_through_json() -> None:
    request = GenerationRequest.parse(image=IMAGE, prompt="p", seed=42, duration=7)
    assert GenerationRequest.model_validate_json(request.model_dump_json()) == request


BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


def test_prompts_are_cleaned_before_they_are_sent() -> None:
    request = GenerationRequest.parse(
        image=IMAGE,
        prompt="the cat\u202e waves\x07\tslowly\u200b\r\n\r\n\r\n\r\nthen bows",
        negative_prompt="\u2066blur\u2069",
    )
    assert request.prompt == "the cat waves slowly\n\nthen bows"
    assert request.negative_prompt == "blur"


@pytest.mark.parametrize("negative", ["\u200b", "\u202e\u202c", "\x00\x01", "\u3164"])
def test_an_invisible_negative_prompt_is_omitted(negative: str) -> None:
    request = GenerationRequest.parse(image=IMAGE, prompt="p", negative_prompt=negative)
    assert request.negative_prompt is None


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("a\u202eb" + BIDI_CONTROLS + "c", "abc"),
        ("zero\u200bwidth\u2060join\ufeff", "zerowidthjoin"),
        ("bell\x07 and nul\x00", "bell and nul"),
        ("tab\there", "tab here"),
        ("e\u0301", "\u00e9"),  # NFC composes the accent
        ("e\u200b\u0301", "\u00e9"),  # and still does once the invisible character is gone
        ("one\r\ntwo\rthree\u2028four\x0bfive", "one\ntwo\nthree\nfour\nfive"),
        ("a  \n \n\n\t\n\nb", "a\n\nb"),
        ("  \n padded \n  ", "padded"),
        ("\ud800lone surrogate", "lone surrogate"),
    ],
)
def test_clean_text(text: str, cleaned: str) -> None:
    assert clean_text(text) == cleaned


@pytest.mark.parametrize(
    ("text", "visible"),
    [
        ("a", True),
        ("\u0663", True),  # Arabic-Indic digit three
        ("!", True),
        ("\U0001f408", True),  # cat emoji
        ("", False),
        (" \n\u3000", False),
        ("\u0301", False),  # a combining accent on nothing
        ("\u3164\u2800\u115f", False),  # Hangul fillers and the blank Braille pattern
    ],
)
def test_has_visible_text(text: str, visible: bool) -> None:
    assert has_visible_text(text) is visible


@given(st.text())
def test_clean_text_leaves_no_control_or_format_characters(text: str) -> None:
    cleaned = clean_text(text)
    categories = {unicodedata.category(char) for char in cleaned.replace("\n", "")}
    assert not categories & {"Cc", "Cf", "Cs"}
    assert unicodedata.is_normalized("NFC", cleaned)
    assert "\n\n\n" not in cleaned and cleaned == cleaned.strip()


@given(st.text())
def test_clean_text_is_idempotent(text: str) -> None:
    assert clean_text(clean_text(text)) == clean_text(text)


@given(st.text(alphabet=st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"])))
def test_invisible_text_is_never_a_prompt(text: str) -> None:
    with pytest.raises(InvalidRequest):
        GenerationRequest.parse(image=IMAGE, prompt=text)
