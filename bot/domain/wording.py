"""Sentences the domain says to members, kept as catalogue keys with values so that the edge
(the cogs, through bot.i18n) can say them in each member's language. Pure: no I/O.

The domain keeps each sentence's English beside its key (for the command line, the logs and
what the store keeps); bot/locales/en.json holds the same English, which tests/test_i18n.py
checks, and the other catalogues hold the translations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sentence:
    """A sentence's catalogue key and its placeholders' values; a value may itself be a
    Sentence (a field's name, said in the same language)."""

    key: str
    values: Mapping[str, Any] = field(default_factory=dict)


def render(sentence: Sentence, template: Callable[[str], str]) -> str:
    """The sentence written out, `template(key)` giving each key's wording."""
    values = {
        name: render(value, template) if isinstance(value, Sentence) else value
        for name, value in sentence.values.items()
    }
    return template(sentence.key).format(**values)


class WordedError(ValueError):
    """An error a member must read: its message is English; `sentences` say it in any
    language."""

    def __init__(self, sentences: Sequence[Sentence], english: Mapping[str, str]) -> None:
        super().__init__(" ".join(render(s, english.__getitem__) for s in sentences))
        self.sentences = tuple(sentences)
