"""Which saved versions of a note to keep as they age: the thinning policy.

Every save that changes a note records a version. Kept forever: every named (labelled) version,
and the newest one. The others are thinned by age, tier by tier (``THINNING``): all of the last
hour; then one per 10 minutes for a day, one per hour for 30 days, one per day after that. Within
a tier the version kept in each period (periods counted from the Unix epoch, so that they do not
move as time passes) is the newest one: the text as that period left it.

A note typed in all day for a year keeps at most about 360 + 138 + 696 + 335 versions (a save
every ~10 s for the last hour, then the tiers), whatever the number of saves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Tier:
    """Versions younger than ``until`` (and older than the tier before) keep one per ``period``
    (None: every one)."""

    until: timedelta | None  # None: no end
    period: timedelta | None


THINNING = (
    Tier(timedelta(hours=1), None),
    Tier(timedelta(days=1), timedelta(minutes=10)),
    Tier(timedelta(days=30), timedelta(hours=1)),
    Tier(None, timedelta(days=1)),
)


@dataclass(frozen=True)
class VersionAge:
    """What the policy needs to know of a version."""

    id: int
    created_at: datetime
    named: bool = False


def versions_to_drop(versions: Iterable[VersionAge], now: datetime,
                     policy: tuple[Tier, ...] = THINNING) -> set[int]:
    """The ids of the versions ``policy`` no longer keeps at ``now``."""
    ordered = sorted(versions, key=lambda version: (version.created_at, version.id),
                     reverse=True)  # newest first
    if not ordered:
        return set()
    kept_periods: set[tuple[int, int]] = set()
    drop = set()
    for version in ordered[1:]:  # (the newest is kept: it is the note's text)
        if version.named:
            continue
        number = _tier_of(now - version.created_at, policy)
        tier = policy[number]
        if tier.period is None:
            continue
        period = (number, int(version.created_at.timestamp() // tier.period.total_seconds()))
        if period in kept_periods:
            drop.add(version.id)
        else:
            kept_periods.add(period)
    return drop


def _tier_of(age: timedelta, policy: tuple[Tier, ...]) -> int:
    """The number of the tier a version of this age is in (past the last: the last)."""
    for number, tier in enumerate(policy):
        if tier.until is None or age < tier.until:
            return number
    return len(policy) - 1


__all__ = ["THINNING", "Tier", "VersionAge", "versions_to_drop"]
