"""One definition per vocabulary, usable by pure code and by Django alike.

Why not Django's `TextChoices`: the pure modules (`schedules.timing`, `executions.policies`) must not import
Django, yet they decide with the same values the models store. Defining each vocabulary twice (a plain enum
beside a `TextChoices`) let the two drift (a skip reason existed on one side only). A `Choices` member is a
`str` (so it compares, hashes, serialises and stores as its value) that also carries the label operators
read; the class offers `choices`, `values` and `labels` as `TextChoices` does, so a model field takes
`choices=OverlapPolicy.choices` unchanged."""

from __future__ import annotations

from collections.abc import Iterable
from enum import EnumMeta, StrEnum
from typing import Any, cast


class _ChoicesMeta(EnumMeta):
    def _members(cls) -> list[Choices]:
        return list(cast("Iterable[Choices]", cls))

    @property
    def choices(cls) -> list[tuple[str, str]]:
        return [(member.value, member.label) for member in cls._members()]

    @property
    def values(cls) -> list[str]:
        return [member.value for member in cls._members()]

    @property
    def labels(cls) -> list[str]:
        return [member.label for member in cls._members()]


class Choices(StrEnum, metaclass=_ChoicesMeta):
    """Members are written `NAME = "value", "Label"`; a bare `NAME = "value"` is labelled from its name."""

    label: str

    def __new__(cls, value: str, label: str | None = None) -> Choices:
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label if label is not None else value.replace("_", " ").capitalize()
        return member

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def _missing_(cls, value: Any) -> Choices | None:
        return None
