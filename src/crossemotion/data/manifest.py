"""Manifest statuses and the bad-item budget shared by MELD and IFEED."""

from __future__ import annotations

from collections.abc import Iterable

# status speaks of the item itself; detection outcomes are their own columns
OK = "ok"
MISSING = "missing"
CORRUPT = "corrupt"
EMPTY = "empty"  # zero-byte file
NO_VIDEO = "no_video"
OVERLONG = "overlong"  # still decoded, within bounds
UNANNOTATED = "unannotated"
UNKNOWN_LABEL = "unknown_label"
UNPARSABLE = "unparsable_name"
UNDECODABLE = "undecodable_image"
SKIPPED = "skipped"  # e.g. __MACOSX, dotfiles, non-image members

# statuses that still yield usable data
USABLE = frozenset({OK, OVERLONG})
# statuses that do not count against the bad-item budget: not defects of an
# annotated item (extra clips, metadata members)
NEUTRAL = frozenset({UNANNOTATED, SKIPPED})


class TooManyBadItems(RuntimeError):
    pass


def check_bad_fraction(statuses: Iterable[str], max_fraction: float, dataset: str) -> float:
    """Raise TooManyBadItems when the share of bad items exceeds the budget.

    Returns the measured share so callers can log it.
    """
    counted = [s for s in statuses if s not in NEUTRAL]
    if not counted:
        raise TooManyBadItems(f"{dataset}: no items found at all; check the archive and paths")
    bad = sum(1 for s in counted if s not in USABLE)
    share = bad / len(counted)
    if share > max_fraction:
        raise TooManyBadItems(
            f"{dataset}: {bad} of {len(counted)} items are bad ({share:.1%}), above "
            f"max_bad_fraction={max_fraction:.1%}; see the manifest's status/reason columns"
        )
    return share
