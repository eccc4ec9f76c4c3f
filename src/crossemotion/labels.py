"""Canonical emotion classes, label spellings and the cast of *Friends*."""

from __future__ import annotations

from collections.abc import Sequence

EMOTIONS: tuple[str, ...] = (
    "anger",
    "disgust",
    "fear",
    "joy",
    "neutral",
    "sadness",
    "surprise",
)
EMOTION_TO_INDEX: dict[str, int] = {name: i for i, name in enumerate(EMOTIONS)}

# MELD's Sentiment column; IFEED has none, so the sentiment task is MELD-only.
SENTIMENTS: tuple[str, ...] = ("negative", "neutral", "positive")
TASKS: dict[str, tuple[str, ...]] = {"emotion": EMOTIONS, "sentiment": SENTIMENTS}
DEFAULT_TASK = "emotion"

CAST: tuple[str, ...] = ("Chandler", "Joey", "Monica", "Phoebe", "Rachel", "Ross")
OTHER = "Other"
CHARACTERS: tuple[str, ...] = (*CAST, OTHER)

# IFEED ships Angry/Disgusted/...; public loaders of it meet truncated and
# lower-case variants, so every spelling seen in the wild maps here.
_SPELLINGS: dict[str, str] = {
    "anger": "anger",
    "angry": "anger",
    "ang": "anger",
    "disgust": "disgust",
    "disgusted": "disgust",
    "dis": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "fea": "fear",
    "afraid": "fear",
    "joy": "joy",
    "happy": "joy",
    "happiness": "joy",
    "hap": "joy",
    "neutral": "neutral",
    "neu": "neutral",
    "sad": "sadness",
    "sadness": "sadness",
    "surprise": "surprise",
    "surprised": "surprise",
    "sur": "surprise",
}

IFEED_NAMES: dict[str, str] = {
    "anger": "Angry",
    "disgust": "Disgusted",
    "fear": "Fearful",
    "joy": "Happy",
    "neutral": "Neutral",
    "sadness": "Sad",
    "surprise": "Surprised",
}


class UnknownLabelError(ValueError):
    """A label spelling that maps to none of the canonical classes."""


def normalize_label(raw: str) -> str:
    """Map any known spelling (case-insensitive) to a canonical class.

    Raises UnknownLabelError rather than guessing, so the caller can record
    the item in its manifest.
    """
    key = raw.strip().lower()
    try:
        return _SPELLINGS[key]
    except KeyError:
        raise UnknownLabelError(f"unknown emotion label {raw!r}") from None


def try_normalize_label(raw: str) -> str | None:
    try:
        return normalize_label(raw)
    except UnknownLabelError:
        return None


def task_classes(task: str | None) -> tuple[str, ...]:
    """The class list of a task (``emotion``: EMOTIONS, ``sentiment``: SENTIMENTS)."""
    try:
        return TASKS[task or DEFAULT_TASK]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}") from None


def task_of_classes(classes: tuple[str, ...] | list[str]) -> str:
    """The task whose class list ``classes`` is (a checkpoint's ``labels``)."""
    for task, names in TASKS.items():
        if tuple(classes) == names:
            return task
    raise ValueError(f"classes {list(classes)} are none of the known tasks' class lists")


def normalize_class(raw: str, classes: tuple[str, ...] = EMOTIONS) -> str:
    """``normalize_label`` for any task: emotions by their spellings, others as written.

    Sentiments are matched trimmed and case-insensitive (MELD writes them in
    lower case); UnknownLabelError for anything else.
    """
    if classes == EMOTIONS:
        return normalize_label(raw)
    key = str(raw).strip().lower()
    if key not in classes:
        raise UnknownLabelError(f"unknown label {raw!r}; expected one of {', '.join(classes)}")
    return key


def classes_containing(names: set[str] | list[str]) -> tuple[str, ...]:
    """The known class list holding every name (EMOTIONS first when both do, e.g. 'neutral')."""
    wanted = {str(n) for n in names}
    for classes in TASKS.values():
        if wanted <= set(classes):
            return classes
    raise UnknownLabelError(f"labels {sorted(wanted)} fit none of the known class lists")


_SURNAMES: dict[str, str] = {
    "Chandler": "Bing",
    "Joey": "Tribbiani",
    "Monica": "Geller",
    "Phoebe": "Buffay",
    "Rachel": "Green",
    "Ross": "Geller",
}
# first name or full name, nothing looser
_CAST_BY_NAME: dict[str, str] = {
    spelling.casefold(): name for name in CAST for spelling in (name, f"{name} {_SURNAMES[name]}")
}


def character_of(speaker: str | None) -> str:
    """Map a MELD speaker or IFEED name to one of the six cast members or Other.

    Only a whole first or full name counts ("Rachel", "rachel green"; trimmed,
    case-insensitive): MELD's speakers include "Phoebe Sr." (Phoebe's mother)
    and groups such as "Ross and Rachel" or "All", which are not the cast
    member their first word names.
    """
    if not speaker:
        return OTHER
    return _CAST_BY_NAME.get(speaker.strip().casefold(), OTHER)


def prob_columns(classes: Sequence[str] = EMOTIONS) -> list[str]:
    """predictions.parquet's probability columns of a class list (``p_anger``, ``p_negative``)."""
    return [f"p_{name}" for name in classes]
