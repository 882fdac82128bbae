"""Erlang C staffing model: offered load, waiting probability, service level, ASA, required agents.

Model
-----
A queue is modelled as an M/M/N system (Erlang C): contacts arrive as a Poisson process with rate
``lambda`` (contacts per second), each occupies one agent for an exponentially distributed handle
time with mean ``AHT`` (seconds: talk + hold + after-contact work), ``N`` identical agents serve one
first-come-first-served queue of unlimited size, and nobody leaves the queue before being answered.

* Offered load ``A = lambda * AHT`` in Erlangs (the average number of agents kept busy).
* ``erlang_b(N, A)`` is the blocking probability of the loss system (M/M/N/N), computed with the
  recursion ``B(0) = 1``, ``B(n) = A*B(n-1) / (n + A*B(n-1))``. It never overflows (no factorials,
  no powers), costs O(N) and stays accurate for thousands of agents.
* ``erlang_c(N, A)`` is the probability that an arriving contact has to wait, derived from B:
  ``C = N*B / (N - A*(1 - B))``; it is 1 when ``N <= A`` (the queue is unstable, waiting is certain).
* Service level (share answered within ``T`` seconds): ``SL = 1 - C * exp(-(N - A) * T / AHT)``.
* Average speed of answer (mean wait over all contacts, seconds): ``ASA = C * AHT / (N - A)``.
* Required agents: the smallest integer ``N`` with ``SL >= target`` (and, if requested,
  occupancy ``A / N <= max_occupancy``).

Chat: an agent handling ``k`` chats at once is treated as ``k`` independent servers, which the
spec expresses as "chat AHT divided by concurrency": the effective handle time is ``AHT / k``, so
the offered load in agents is ``lambda * AHT / k`` and the SL exponent uses ``AHT / k``. This is an
approximation (agents slow down when juggling chats; the concurrency should be the observed one).

Assumptions and limits
----------------------
Poisson arrivals with a constant rate over the interval, exponential handle times, a stationary
(steady-state) queue, every agent equally skilled, no abandonment and no retrials. Real customers
abandon, which removes load from the queue, so Erlang C *overstates* waiting and therefore the
number of agents required (Erlang A would model patience). Figures are per queue and ignore
shrinkage (breaks, training, absence): ``required_agents`` is agents on the phones, not rostered.

Units: rates in contacts per second, times in seconds, load in Erlangs, probabilities and
service level as fractions in [0, 1]. All functions are pure (no I/O, no state).
"""

from __future__ import annotations

import math
import operator

__all__ = [
    "average_speed_of_answer",
    "erlang_b",
    "erlang_c",
    "offered_load",
    "required_agents",
    "service_level",
    "staffing_gap",
]


# --- validation helpers -------------------------------------------------------------------------


def _finite_number(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _non_negative(name: str, value: float) -> float:
    value = _finite_number(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def _positive(name: str, value: float) -> float:
    value = _finite_number(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def _count(name: str, value: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        value = operator.index(value)  # int and integer-like (e.g. numpy.int64), never float
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


# --- core formulas ------------------------------------------------------------------------------


def offered_load(arrival_rate_per_s: float, aht_s: float) -> float:
    """Offered load in Erlangs: arrivals per second times average handle time in seconds."""
    rate = _non_negative("arrival_rate_per_s", arrival_rate_per_s)
    aht = _positive("aht_s", aht_s)
    return rate * aht


def _erlang_b(agents: int, load: float) -> float:
    b = 1.0
    for n in range(1, agents + 1):
        ab = load * b
        b = ab / (n + ab)
    return b


def _erlang_c(agents: int, load: float) -> float:
    if load <= 0.0:
        return 0.0
    if agents <= load:
        return 1.0
    b = _erlang_b(agents, load)
    return agents * b / (agents - load * (1.0 - b))


def erlang_b(agents: int, load: float) -> float:
    """Erlang B blocking probability for ``agents`` servers offered ``load`` Erlangs (lost calls cleared)."""
    return _erlang_b(_count("agents", agents), _non_negative("load", load))


def erlang_c(agents: int, load: float) -> float:
    """Probability that a contact waits (Erlang C); 1.0 when ``agents <= load``, 0.0 when load is 0."""
    return _erlang_c(_count("agents", agents), _non_negative("load", load))


def service_level(agents: int, load: float, aht_s: float, threshold_s: float) -> float:
    """Expected share of contacts answered within ``threshold_s`` seconds.

    ``1 - C * exp(-(N - A) * T / AHT)``; 0.0 when ``agents <= load`` (unstable queue) and 1.0 when
    there is no load at all.
    """
    agents = _count("agents", agents)
    load = _non_negative("load", load)
    aht = _positive("aht_s", aht_s)
    threshold = _non_negative("threshold_s", threshold_s)
    return _service_level(agents, load, aht, threshold)


def _service_level(agents: int, load: float, aht: float, threshold: float) -> float:
    if load <= 0.0:
        return 1.0
    if agents <= load:
        return 0.0
    c = _erlang_c(agents, load)
    return max(0.0, 1.0 - c * math.exp(-(agents - load) * threshold / aht))


def average_speed_of_answer(agents: int, load: float, aht_s: float) -> float:
    """Mean wait in seconds over all contacts: ``C * AHT / (N - A)``; ``inf`` when ``agents <= load``."""
    agents = _count("agents", agents)
    load = _non_negative("load", load)
    aht = _positive("aht_s", aht_s)
    if load <= 0.0:
        return 0.0
    if agents <= load:
        return math.inf
    return _erlang_c(agents, load) * aht / (agents - load)


# --- staffing -----------------------------------------------------------------------------------


def required_agents(
    arrival_rate_per_s: float,
    aht_s: float,
    threshold_s: float,
    target_sl: float,
    *,
    max_occupancy: float | None = None,
    concurrency: float = 1.0,
) -> int:
    """Smallest number of agents whose Erlang C service level reaches ``target_sl``.

    ``arrival_rate_per_s``: contacts per second (>= 0); ``aht_s``: average handle time in seconds
    (> 0); ``threshold_s``: the service-level threshold T in seconds (>= 0); ``target_sl``: the
    target share answered within T, strictly between 0 and 1; ``max_occupancy``: optional cap on
    ``load / agents`` in (0, 1]; ``concurrency``: contacts one agent handles at once (chat, >= 1
    is typical; must be > 0). The effective handle time is ``aht_s / concurrency``.

    Returns 0 when there is no traffic. Raises ``ValueError`` naming the offending argument.
    """
    rate = _non_negative("arrival_rate_per_s", arrival_rate_per_s)
    aht = _positive("aht_s", aht_s)
    threshold = _non_negative("threshold_s", threshold_s)
    target = _finite_number("target_sl", target_sl)
    if not 0.0 < target < 1.0:
        raise ValueError(f"target_sl must be strictly between 0 and 1, got {target_sl!r}")
    if max_occupancy is not None:
        max_occ = _finite_number("max_occupancy", max_occupancy)
        if not 0.0 < max_occ <= 1.0:
            raise ValueError(f"max_occupancy must be in (0, 1], got {max_occupancy!r}")
    else:
        max_occ = None
    k = _positive("concurrency", concurrency)

    effective_aht = aht / k
    load = rate * effective_aht
    if load <= 0.0:
        return 0

    # Stability needs N > A; the occupancy cap needs N >= A / max_occupancy.
    n = math.floor(load) + 1
    if max_occ is not None:
        n = max(n, math.ceil(load / max_occ - 1e-9))
    # B(n) is carried along so each step costs O(1): B(n+1) = A*B(n) / (n+1 + A*B(n)).
    b = _erlang_b(n, load)
    while True:
        c = n * b / (n - load * (1.0 - b))
        sl = 1.0 - c * math.exp(-(n - load) * threshold / effective_aht)
        if sl >= target:
            return n
        n += 1
        ab = load * b
        b = ab / (n + ab)


def staffing_gap(required: int, available: int, on_contact: int) -> int:
    """``required - (available + on_contact)``.

    Positive: the queue is short of that many agents; zero: exactly staffed; negative: that many
    agents more than the model needs. ``available`` are idle/ready agents and ``on_contact`` those
    busy with contacts of this queue; both count as staffed.
    """
    return (
        _count("required", required)
        - _count("available", available)
        - _count("on_contact", on_contact)
    )
