"""GenerationRequest: validation messages and the exact API body."""

import pytest

from bot.domain.request import MAX_PROMPT_CHARS, GenerationRequest, InvalidRequest

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
