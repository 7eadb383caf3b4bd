"""Variations of a finished video: the same prompt, image and seed with one option changed. Pure.

Like the row of buttons under a Midjourney image: each variation is offered only where it would
change something, and `varied` builds the request it runs.
"""

from __future__ import annotations

from enum import StrEnum

from bot.domain.request import GenerationRequest

# The lengths "Longer" steps through; a length between two steps goes to the next one up.
DURATION_STEPS = (5, 10, 15)


class Variation(StrEnum):
    """One change to a finished request. The value is the action in a button's custom_id."""

    HD = "hd"  # 720p → 1080p
    AUDIO = "audio"  # silent → generated audio
    SILENT = "silent"  # generated audio → silent
    LONGER = "longer"  # the next step of DURATION_STEPS


def next_duration(duration: int) -> int | None:
    """The next step of DURATION_STEPS above `duration`; None at the last step or past it."""
    return next((step for step in DURATION_STEPS if step > duration), None)


def variations_of(request: GenerationRequest) -> tuple[Variation, ...]:
    """The variations that would change `request`, in the order their buttons show.

    With a member's own soundtrack neither audio variation applies: the video is not silent,
    and turning generated audio off would leave the paid-for track in place.
    """
    offered = []
    if request.resolution == "720p":
        offered.append(Variation.HD)
    if request.audio is None:
        offered.append(Variation.SILENT if request.enable_audio else Variation.AUDIO)
    if next_duration(request.duration) is not None:
        offered.append(Variation.LONGER)
    return tuple(offered)


class NotApplicable(ValueError):
    """The variation would not change this request."""


def varied(request: GenerationRequest, variation: Variation) -> GenerationRequest:
    """`request` with `variation`'s one change (same prompt, image, seed and everything else).

    Raises NotApplicable for a variation `variations_of` does not offer, e.g. a stale button.
    """
    if variation not in variations_of(request):
        raise NotApplicable(f"{variation} does not apply to this video")
    match variation:
        case Variation.HD:
            change: dict[str, object] = {"resolution": "1080p"}
        case Variation.AUDIO:
            change = {"enable_audio": True}
        case Variation.SILENT:
            change = {"enable_audio": False}
        case Variation.LONGER:
            change = {"duration": next_duration(request.duration)}
    # validated again, so a varied request is as sound as one the member typed
    return GenerationRequest.model_validate({**request.model_dump(), **change})
