"""What every entity state of `streams.kpi` shares: the signed change between two multisets of facts,
and the check that an event id was already applied."""

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


def applied_ids(ids: set[str], events: list) -> set[str]:
    """The ids of `events`: the state's cached set, or a new one when the list was set directly
    (decoded from a record, rebuilt) and the set no longer matches it."""
    return ids if len(ids) == len(events) else {e.event_id for e in events}
