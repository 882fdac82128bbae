"""What every entity state of `streams.kpi` shares: the signed change between two multisets of facts."""

from __future__ import annotations

from collections import Counter
from typing import TypeVar

F = TypeVar("F")


def signed_diff(now: Counter[F], before: Counter[F]) -> list[tuple[F, int]]:
    """The facts to add (positive weight) and retract (negative) to go from `before` to `now`.

    The same pairs, in the same order, as `(now - before)` followed by the negated `(before - now)`,
    without building the intermediate Counters (this runs once per applied event)."""
    delta = []
    get = before.get
    for fact, n in now.items():
        d = n - get(fact, 0)
        if d > 0:
            delta.append((fact, d))
    get = now.get
    for fact, n in before.items():
        d = n - get(fact, 0)
        if d > 0:
            delta.append((fact, -d))
    return delta
