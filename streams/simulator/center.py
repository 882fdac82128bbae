"""The simulated contact center: queues, teams, the daily arrival profile and the staffing plan.

Staffing is sized per half hour with Erlang C from the expected arrival rate and handle time of
each team's main queue, plus shrinkage for breaks, then turned into 8.5 h shifts by a greedy
cover. The result is a center that mostly meets its service level and slips at the peaks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# --- arrival profile --------------------------------------------------------------------------

# Relative arrival rate at each local hour mark (linear in between): quiet night, morning ramp,
# late-morning peak, lunch dip, afternoon peak, evening tail.
HOURLY_PROFILE: tuple[float, ...] = (
    0.04, 0.03, 0.03, 0.03, 0.04, 0.07,   # 00-05
    0.15, 0.38, 0.72, 0.93, 1.00, 0.94,   # 06-11
    0.70, 0.76, 0.92, 1.00, 0.90, 0.72,   # 12-17
    0.50, 0.35, 0.25, 0.17, 0.10, 0.06,   # 18-23
)
# Monday .. Sunday
WEEKDAY_FACTOR: tuple[float, ...] = (1.0, 0.97, 0.95, 0.95, 0.9, 0.45, 0.3)


def _minute_profile() -> tuple[float, ...]:
    out = []
    for minute in range(1440):
        h, m = divmod(minute, 60)
        a, b = HOURLY_PROFILE[h], HOURLY_PROFILE[(h + 1) % 24]
        out.append(a + (b - a) * m / 60.0)
    return tuple(out)


MINUTE_PROFILE: tuple[float, ...] = _minute_profile()

TICKET_SHARE = 0.10          # tickets per contact at the same profile point
TICKET_PROFILE_FLOOR = 0.15  # e-mail arrives more evenly than calls


def ticket_profile(p: float) -> float:
    return TICKET_PROFILE_FLOOR + (1.0 - TICKET_PROFILE_FLOOR) * p


# --- queues -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class QueueSpec:
    name: str
    channel: str                      # voice | chat | email
    share: float                      # share of the contact rate (voice + chat)
    talk_median: float = 0.0
    talk_sigma: float = 0.6
    acw_median: float = 30.0
    acw_sigma: float = 0.6
    hold_p: float = 0.0
    hold_median: float = 45.0
    transfer_p: float = 0.0
    transfer_to: str | None = None
    patience_median: float = 90.0     # lognormal patience of a caller in this queue
    patience_sigma: float = 0.9
    short_abandon_p: float = 0.04     # callers who hang up within 1..5 s whatever the queue
    max_wait: float | None = None     # flow-out after this wait ...
    flow_to: str | None = None        # ... to "voicemail", "callback", "queue:NAME" or "email"
    dispositions: tuple[tuple[str, bool, float], ...] = ()   # (name, resolved, weight)

    @property
    def talk_mean(self) -> float:
        return self.talk_median * math.exp(self.talk_sigma ** 2 / 2)

    @property
    def acw_mean(self) -> float:
        return self.acw_median * math.exp(self.acw_sigma ** 2 / 2)

    @property
    def aht_mean(self) -> float:
        return self.talk_mean + self.acw_mean + self.hold_p * self.hold_median * math.exp(0.6 ** 2 / 2)


QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec("sales", "voice", 0.25, talk_median=210, acw_median=25, hold_p=0.10, transfer_p=0.04,
              transfer_to="support", patience_median=80, max_wait=240, flow_to="voicemail",
              dispositions=(("sale", True, 0.3), ("quote_sent", True, 0.25), ("no_sale", True, 0.25),
                            ("follow_up", False, 0.2))),
    QueueSpec("support", "voice", 0.35, talk_median=330, acw_median=40, hold_p=0.22, transfer_p=0.06,
              transfer_to="billing", patience_median=110, max_wait=120, flow_to="callback",
              dispositions=(("resolved", True, 0.55), ("info_provided", True, 0.15),
                            ("escalated", False, 0.15), ("follow_up", False, 0.15))),
    QueueSpec("billing", "voice", 0.15, talk_median=270, acw_median=35, hold_p=0.15, transfer_p=0.05,
              transfer_to="sales", patience_median=90, max_wait=100, flow_to="queue:support",
              dispositions=(("payment_arranged", True, 0.3), ("refund", True, 0.2), ("resolved", True, 0.3),
                            ("follow_up", False, 0.2))),
    QueueSpec("chat_support", "chat", 0.25, acw_median=15, acw_sigma=0.5, patience_median=200,
              patience_sigma=0.8, short_abandon_p=0.03, max_wait=600, flow_to="email",
              dispositions=(("resolved", True, 0.65), ("info_provided", True, 0.1),
                            ("escalated", False, 0.1), ("follow_up", False, 0.15))),
    QueueSpec("email_support", "email", 0.0),
)
QUEUE_BY_NAME: dict[str, QueueSpec] = {q.name: q for q in QUEUES}
CONTACT_QUEUES: tuple[QueueSpec, ...] = tuple(q for q in QUEUES if q.share > 0)

IVR_SELF_SERVICE_P = 0.03     # voice calls that end in the IVR and never reach a queue
CALLBACK_NO_ANSWER_P = 0.12   # callbacks the customer does not pick up

# Chat conversation shape (seconds)
CHAT_GREETING = (5.0, 20.0)           # uniform delay of the agent's greeting after answer
CHAT_EXCHANGES = (1, 6)               # further customer/agent exchanges (uniform int)
CHAT_CUSTOMER_DELAY = (35.0, 0.7)     # lognormal (median, sigma)
CHAT_AGENT_DELAY = (25.0, 0.6)
CHAT_CLOSE = (10.0, 60.0)
CHAT_CONCURRENCY_SLOWDOWN = 0.15      # per extra concurrent chat, on agent reply delays


def chat_handle_mean(spec: QueueSpec) -> float:
    """Mean slot occupancy of one chat, answer to ACW completion."""
    exchanges = (CHAT_EXCHANGES[0] + CHAT_EXCHANGES[1]) / 2
    cust = CHAT_CUSTOMER_DELAY[0] * math.exp(CHAT_CUSTOMER_DELAY[1] ** 2 / 2)
    agent = CHAT_AGENT_DELAY[0] * math.exp(CHAT_AGENT_DELAY[1] ** 2 / 2) * (1 + CHAT_CONCURRENCY_SLOWDOWN)
    return (sum(CHAT_GREETING) / 2 + exchanges * (cust + agent) + sum(CHAT_CLOSE) / 2 + spec.acw_mean)


# Tickets
TICKET_PRIORITIES: tuple[tuple[str, float], ...] = (("low", 0.2), ("normal", 0.55), ("high", 0.2), ("urgent", 0.05))
# first-response target and next-response target per priority, seconds (used to order the work)
TICKET_FIRST_RESPONSE_S = {"urgent": 3600.0, "high": 4 * 3600.0, "normal": 8 * 3600.0, "low": 24 * 3600.0}
TICKET_NEXT_RESPONSE_S = {"urgent": 3600.0, "high": 2 * 3600.0, "normal": 4 * 3600.0, "low": 8 * 3600.0}
TICKET_WORK = (300.0, 0.6)            # lognormal handle time of one reply (median, sigma)
TICKET_REPLIES_MEAN = 1.8             # for sizing


# --- teams and skills -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TeamSpec:
    name: str
    primary: str                      # queue the team is sized for
    variants: tuple[tuple[tuple[str, ...], tuple[tuple[str, int], ...], int], ...]
    """(queues, capacity per channel, weight out of 20): skill sets handed out round the team."""
    load_factor: float = 1.0          # extra load on the primary queue (overflow, callbacks)
    night_min: int = 1                # agents on duty at any hour
    sizing_target: float = 0.50       # Erlang C service level the team is sized for (before shrinkage)


TEAMS: tuple[TeamSpec, ...] = (
    TeamSpec("sales", "sales", (
        (("sales",), (("voice", 1),), 15),
        (("sales", "billing"), (("voice", 1),), 5),
    )),
    TeamSpec("care", "support", (
        (("support",), (("voice", 1),), 10),
        (("support", "billing"), (("voice", 1),), 6),
        (("support", "chat_support"), (("voice", 1), ("chat", 2)), 4),
    ), load_factor=1.08),
    TeamSpec("billing", "billing", (
        (("billing",), (("voice", 1),), 10),
        (("billing", "support"), (("voice", 1),), 6),
        (("billing", "sales"), (("voice", 1),), 4),
    )),
    TeamSpec("chat", "chat_support", (
        (("chat_support",), (("chat", 3),), 20),
    ), sizing_target=0.35),
    TeamSpec("email", "email_support", (
        (("email_support",), (("email", 1),), 20),
    ), night_min=0),
)


def team_variant(team: TeamSpec, index: int) -> tuple[tuple[str, ...], dict[str, int]]:
    slot = (index * 7) % 20   # spread the variants over the roster (and so over the shifts)
    for queues, capacity, weight in team.variants:
        if slot < weight:
            return queues, dict(capacity)
        slot -= weight
    queues, capacity, _ = team.variants[-1]
    return queues, dict(capacity)


# --- staffing ---------------------------------------------------------------------------------

SL_THRESHOLD_S = {"voice": 20.0, "chat": 60.0}
CHAT_CONCURRENCY = 3
SHRINKAGE = 1.12              # breaks and lunch take about 1 h of an 8.5 h shift
SHIFT_LENGTHS = (17, 12, 8)   # 8.5 h, 6 h, 4 h in half hours (the shortest is the fallback)
SLOTS = 48


def erlang_c_agents(arrivals_per_s: float, aht_s: float, threshold_s: float, target: float,
                    concurrency: int = 1) -> int:
    """Fewest agents for which Erlang C predicts service level >= target."""
    load = arrivals_per_s * aht_s / concurrency
    if load <= 0:
        return 0
    service = aht_s / concurrency
    n = max(1, math.floor(load) + 1)
    while True:
        # Erlang B by recursion, then C from B.
        b = 1.0
        for k in range(1, n + 1):
            b = load * b / (k + load * b)
        c = n * b / (n - load * (1 - b))
        sl = 1.0 - c * math.exp(-(n - load) * threshold_s / service)
        if sl >= target:
            return n
        n += 1


def cover_with_shifts(required: list[int]) -> list[tuple[int, int]]:
    """Greedy cover of per-slot head counts with shifts of 8.5, 6 or 4 hours.

    Goes round the day from the night trough, so night shifts are known before the morning ramp.
    Each missing agent gets the longest shift that is still mostly needed (part-timers cover the
    evening decline). Returns (start slot, length in slots), sorted.
    """
    covered = [0] * SLOTS
    shifts: list[tuple[int, int]] = []
    trough = min(range(SLOTS), key=lambda s: (required[s], -s))
    for i in range(SLOTS):
        s = (trough + i) % SLOTS
        while required[s] > covered[s]:
            for length in SHIFT_LENGTHS:
                surplus = sum(1 for k in range(length) if covered[(s + k) % SLOTS] >= required[(s + k) % SLOTS])
                if surplus <= length // 5:
                    break
            shifts.append((s, length))
            for k in range(length):
                covered[(s + k) % SLOTS] += 1
    return sorted(shifts)


def slot_profile(slot: int) -> float:
    return MINUTE_PROFILE[slot * 30 + 15]


def plan_day(rate_per_min: float, weekday: int, staffing_factor: float) -> dict[str, list[tuple[int, int]]]:
    """Shifts (start half-hour slot after local midnight, length in half hours) per team for one day."""
    wf = WEEKDAY_FACTOR[weekday]
    plan: dict[str, list[tuple[int, int]]] = {}
    for team in TEAMS:
        spec = QUEUE_BY_NAME[team.primary]
        if spec.channel == "email":
            plan[team.name] = _plan_email(rate_per_min, wf, staffing_factor)
            continue
        required = []
        for slot in range(SLOTS):
            lam = rate_per_min / 60.0 * spec.share * team.load_factor * slot_profile(slot) * wf
            if spec.channel == "chat":
                # every chat slot is a server; an agent brings CHAT_CONCURRENCY of them
                slots = erlang_c_agents(lam, chat_handle_mean(spec), SL_THRESHOLD_S["chat"], team.sizing_target)
                n = round(slots * SHRINKAGE * staffing_factor / CHAT_CONCURRENCY)
            else:
                n = erlang_c_agents(lam, spec.aht_mean, SL_THRESHOLD_S["voice"], team.sizing_target)
                n = math.ceil(n * SHRINKAGE * staffing_factor - 0.25)
            required.append(max(n, team.night_min))
        plan[team.name] = cover_with_shifts(required)
    return plan


def _plan_email(rate_per_min: float, wf: float, staffing_factor: float) -> list[tuple[int, int]]:
    per_day = sum(rate_per_min * TICKET_SHARE * ticket_profile(p) for p in MINUTE_PROFILE) * wf
    work_s = per_day * TICKET_REPLIES_MEAN * TICKET_WORK[0] * math.exp(TICKET_WORK[1] ** 2 / 2)
    # 7.5 productive hours a shift; 30 % headroom so the office-hours team also clears the night's mail
    agents = max(1, math.ceil(work_s / (7.5 * 3600) * 1.3 * staffing_factor))
    # office hours: staggered starts 07:00 .. 10:30
    return sorted((14 + (i % 8), SHIFT_LENGTHS[0]) for i in range(agents))
