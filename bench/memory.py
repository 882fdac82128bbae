"""Memory of the KPI state for a large site: 2,000 queues and 10,000 agents over whole days.

    python -m bench.memory                        # 2 000 queues, 10 000 agents, 100 000 contacts/day,
                                                  # 1.1 simulated days, 4 partitions: about 5 min
    python -m bench.memory --contacts-per-day 300000 --tickets-per-day 30000 --days 2.1
                                                  # the steady state: today and yesterday retained
    python -m bench.memory --scale 0.1 --tracemalloc   # exact traced figures (about 4x slower)
    python -m bench.memory --scale 0.005 --days 1.05   # the smoke test

Pure and in-process: no Kafka, no Faust. A generator process simulates the site (agents on shifts
with breaks, contacts routed to skilled agents, chats, tickets, surveys) and streams the events as
JSON in event-time order. The measuring process is "the worker": it does ingest's part
(`EVENT_ADAPTER.validate_json` with the customer hash key, then the compact parts of the internal
line: `streams.partition.event_parts` / `encode_parts`) and the engine's (`decode_parts`, the
partition by `streams.app.entity_partition`, `PartitionState.apply_parts`). Every `--batch` events of
a partition it calls `advance()`, `take_dirty()` and `take_side()` like the engine's batch loop, and
applies the side entries to their target partition like the side agent. The generator has its own
process so that the measuring process holds nothing but the state, and so that the two use both cores.

At every local midnight and at the end it reports records by kind, window entries, the encoded
records (the compacted changelog), RSS, a sampled estimate of the bytes of every structure, one full
scrape through `KpiCollector` (time, bytes, series) and `PartitionState.rebuild` of one partition from
its encoded records. With `--tracemalloc` every allocation is traced from the first event: traced
current and peak, and the rebuilt partition torn down structure by structure. See bench/README.md.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import heapq
import json
import math
import os
import platform
import random
import resource
import shlex
import signal
import statistics
import sys
import time
import types
import zlib
from collections import Counter, deque
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
START = datetime(2025, 1, 6, tzinfo=UTC)      # a Monday, 00:00 at the site (time zone UTC)
DAY_S = 86_400.0
HASH_KEY = b"bench-memory-key"
PROGRESS_EVERY_S = 5.0
CHUNK_EVENTS = 2_000                          # events per message from the generator process
MIB = 2 ** 20

_T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {text}", flush=True)


# == the simulated site =============================================================================

# Relative arrival rate at each local hour mark (streams/simulator/center.py's curve), linear in between.
HOURLY_PROFILE = (0.04, 0.03, 0.03, 0.03, 0.04, 0.07, 0.15, 0.38, 0.72, 0.93, 1.00, 0.94,
                  0.70, 0.76, 0.92, 1.00, 0.90, 0.72, 0.50, 0.35, 0.25, 0.17, 0.10, 0.06)
MINUTE_PROFILE = tuple(HOURLY_PROFILE[m // 60] + (HOURLY_PROFILE[(m // 60 + 1) % 24] - HOURLY_PROFILE[m // 60])
                       * (m % 60) / 60 for m in range(1440))
CHANNEL_SHARE = (("voice", 0.60), ("chat", 0.25), ("email", 0.15))     # of the queues
AGENT_SHARE = (("voice", 0.65), ("chat", 0.20), ("email", 0.15))       # of the agents
TEAM_SIZE = 15
SHIFT_S = 8.5 * 3600
DAY_OFF_P = 0.12                 # from the second day on; every agent works the first day
TICKET_PRIORITIES = (("low", 0.2), ("normal", 0.55), ("high", 0.2), ("urgent", 0.05))
NOT_READY = (("training", 0.06, 2700.0), ("meeting", 0.08, 1800.0), ("personal", 0.35, 300.0))
DISPOSITIONS = (("resolved", True), ("info_provided", True), ("sale", True), ("escalated", False),
                ("follow_up", False))


class _Queue:
    __slots__ = ("idx", "name", "channel", "weight", "waiting", "idle", "talk_median", "acw_median",
                 "patience_median", "max_wait", "hold_p", "transfer_p", "tasks", "idle_email", "threshold_s")

    def __init__(self, idx: int, name: str, channel: str, weight: float, rng: random.Random) -> None:
        self.idx, self.name, self.channel, self.weight = idx, name, channel, weight
        self.waiting: deque = deque()     # (contact, segment)
        self.idle: list = []              # heap (slots used, idle since, seq, agent, token)
        self.tasks: deque = deque()       # e-mail: (queued at, ticket, token)
        self.idle_email: deque = deque()  # e-mail: (agent, token)
        self.talk_median = 240.0 * math.exp(rng.gauss(0, 0.3))
        self.acw_median = (30.0 if channel == "voice" else 15.0) * math.exp(rng.gauss(0, 0.3))
        self.patience_median = (90.0 if channel == "voice" else 200.0) * math.exp(rng.gauss(0, 0.3))
        self.max_wait = rng.choice((120.0, 180.0, 300.0)) if channel == "voice" and rng.random() < 0.3 else None
        self.hold_p = rng.uniform(0.05, 0.25) if channel == "voice" else 0.0
        self.transfer_p = rng.uniform(0.0, 0.06) if channel == "voice" else 0.0
        self.threshold_s = {"voice": rng.choice((20.0, 30.0)), "chat": 60.0, "email": 4 * 3600.0}[channel]


class _Agent:
    __slots__ = ("id", "key", "team", "queues", "channel", "cap", "capacity", "talking", "acw", "slots",
                 "logged_in", "nr", "pending", "token", "nr_token", "idle_since", "shift", "state", "reason",
                 "qnames", "ticket", "start_s")

    def __init__(self, n: int, team: str, channel: str, queues: list[_Queue], cap: int, start_s: float) -> None:
        self.id = f"agent-{n:05d}"
        self.team, self.channel, self.queues, self.cap, self.start_s = team, channel, queues, cap, start_s
        self.qnames = [q.name for q in queues]
        self.capacity = {channel: cap}
        self.talking = self.acw = self.slots = 0
        self.logged_in = False
        self.nr: str | None = None
        self.pending: tuple | None = None
        self.token = self.nr_token = 0
        self.idle_since = 0.0
        self.shift = -99
        self.state = "offline"
        self.reason: str | None = None
        self.ticket = None

    def can_take(self) -> bool:
        return self.logged_in and self.nr is None and self.pending is None and self.slots < self.cap


class _Contact:
    __slots__ = ("id", "channel", "ref", "source", "queue", "seg", "enq_t", "waiting", "deadline", "agent",
                 "patience_factor", "plan", "step")

    def __init__(self, cid: str, channel: str, ref: str) -> None:
        self.id, self.channel, self.ref = cid, channel, ref
        self.source = "chat" if channel == "chat" else "acd-1"
        self.queue: _Queue | None = None
        self.seg = 0
        self.enq_t = self.deadline = 0.0
        self.waiting = False
        self.agent: _Agent | None = None
        self.patience_factor = 1.0
        self.plan: list | None = None
        self.step = 0


class _Ticket:
    __slots__ = ("id", "priority", "queue", "status", "tok", "assignee", "replies")

    def __init__(self, tid: str, priority: str, queue: _Queue) -> None:
        self.id, self.priority, self.queue = tid, priority, queue
        self.status = "new"
        self.tok = 0
        self.assignee: _Agent | None = None
        self.replies = 0


def _weights(rng: random.Random, n: int) -> list[float]:
    """Queue sizes: lognormal, so a few queues are big and many are small, as on a real site."""
    return [math.exp(rng.gauss(0, 1.0)) for _ in range(n)]


def _split(total: int, shares: tuple[tuple[str, float], ...], minimum: int) -> dict[str, int]:
    counts = {name: max(minimum, round(total * share)) for name, share in shares}
    counts[shares[0][0]] += total - sum(counts.values())
    return counts


class Site:
    """A discrete-event simulation of the site; `run` streams JSON events in event-time order."""

    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        rng = self.rng = random.Random(cfg["seed"])
        self.start_s = START.timestamp()
        self.end = cfg["days"] * DAY_S
        self.heap: list = []
        self.seq = 0
        self.now = 0.0
        self.n_events = self.n_contacts = self.n_tickets = self.n_customers = 0
        self.by_type: Counter[str] = Counter()
        self.out: list[bytes] = []
        self._ts_sec = -1
        self._ts_prefix = ""
        self.eid_prefix = f"{cfg['seed'] & 0xffffffff:08x}-0000-4000-8000-"   # event ids as long as UUIDs
        self.recent_customers: deque[int] = deque(maxlen=5000)
        # queues
        n_queues = _split(cfg["queues"], CHANNEL_SHARE, 1 if cfg["queues"] >= 3 else 0)
        self.queues: list[_Queue] = []
        self.by_channel: dict[str, list[_Queue]] = {}
        for channel, count in n_queues.items():
            for w in _weights(rng, count):
                q = _Queue(len(self.queues), f"q{len(self.queues) + 1:04d}-{channel}", channel, w, rng)
                self.queues.append(q)
                self.by_channel.setdefault(channel, []).append(q)
        self.cum: dict[str, list[float]] = {}
        for channel, qs in self.by_channel.items():
            total, cum = 0.0, []
            for q in qs:
                total += q.weight
                cum.append(total)
            self.cum[channel] = cum
        contact_qs = self.by_channel.get("voice", []) + self.by_channel.get("chat", [])
        self.contact_queues = contact_qs
        self.contact_cum = list(_cumulate(q.weight for q in contact_qs))
        # agents: skills drawn by queue size within the agent's channel, every queue covered
        shares = tuple((c, share) for c, share in AGENT_SHARE if c in self.by_channel)   # channels with queues
        n_agents = _split(cfg["agents"], shares, 1 if cfg["agents"] >= len(shares) else 0)
        self.agents: list[_Agent] = []
        starts = _shift_starts()
        for channel, count in n_agents.items():
            qs = self.by_channel.get(channel)
            if not qs or not count:
                continue
            skills: list[list[_Queue]] = []
            for _ in range(count):
                chosen: list[_Queue] = []
                for _ in range(rng.choice((1, 1, 2, 2, 3))):
                    q = qs[bisect.bisect(self.cum[channel], rng.random() * self.cum[channel][-1])]
                    if q not in chosen:
                        chosen.append(q)
                skills.append(chosen)
            for i, q in enumerate(qs):                        # every queue has at least one agent
                if q not in skills[i % count]:
                    skills[i % count].append(q)
            for i, chosen in enumerate(skills):
                n = len(self.agents) + 1
                cap = rng.choice((2, 3)) if channel == "chat" else 1
                self.agents.append(_Agent(n, f"team-{channel}-{i // TEAM_SIZE + 1:03d}", channel, chosen, cap,
                                          _pick_start(starts, rng)))
        # contact arrivals at the profile's peak, per second
        mean_profile = sum(MINUTE_PROFILE) / len(MINUTE_PROFILE)
        self.contact_peak_rate = cfg["contacts_per_day"] / (DAY_S * mean_profile)
        ticket_profile = [0.15 + 0.85 * p for p in MINUTE_PROFILE]
        self.ticket_peak_rate = cfg["tickets_per_day"] / (DAY_S * sum(ticket_profile) / len(ticket_profile))

    # -- infrastructure ----------------------------------------------------------------------------

    def at(self, t: float, fn, arg=None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, fn, arg))

    def after(self, delay: float, fn, arg=None) -> None:
        self.at(self.now + delay, fn, arg)

    def lognorm(self, median: float, sigma: float) -> float:
        return median * math.exp(self.rng.gauss(0.0, sigma))

    def emit(self, event_type: str, source: str, fields: dict) -> None:
        self.n_events += 1
        ms = int((self.start_s + self.now) * 1000)
        sec, frac = divmod(ms, 1000)
        if sec != self._ts_sec:
            self._ts_sec = sec
            self._ts_prefix = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        event = {"event_id": f"{self.eid_prefix}{self.n_events:012x}", "event_type": event_type,
                 "occurred_at": f"{self._ts_prefix}.{frac:03d}Z", "source": source, **fields}
        self.by_type[event_type] += 1
        self.out.append(orjson.dumps(event))

    def run(self, send) -> dict:
        """Simulate until `days`; `send(message)` gets ("events", sim_s, bytes, n), ("day", k, sim_s) at
        every midnight and finally ("end", stats)."""
        for day in (-1, 0):
            self.plan_day(day)
        self.at(DAY_S, self.planner, 1)
        self.next_contact(False)
        self.next_ticket(False)
        heap, out = self.heap, self.out
        pop = heapq.heappop
        midnight = DAY_S
        day = 0
        while heap:
            t, _, fn, arg = heap[0]
            if t > self.end:
                break
            if t >= midnight:
                if out:
                    send(("events", self.now, b"\n".join(out), len(out)))
                    out.clear()
                day += 1
                send(("day", day, midnight))
                midnight += DAY_S
            pop(heap)
            self.now = t
            fn(arg)
            if len(out) >= CHUNK_EVENTS:
                send(("events", self.now, b"\n".join(out), len(out)))
                out.clear()
        if out:
            send(("events", self.now, b"\n".join(out), len(out)))
            out.clear()
        return self.stats()

    def stats(self) -> dict:
        return {"events": self.n_events, "by_event_type": dict(sorted(self.by_type.items())),
                "contacts": self.n_contacts, "tickets": self.n_tickets, "customers": self.n_customers,
                "queues": len(self.queues), "queues_by_channel": {c: len(q) for c, q in self.by_channel.items()},
                "agents": len(self.agents),
                "agents_by_channel": dict(Counter(a.channel for a in self.agents)),
                "teams": len({a.team for a in self.agents}),
                "skills_per_agent": round(sum(len(a.queues) for a in self.agents) / max(1, len(self.agents)), 2),
                "simulated_s": round(min(self.now, self.end), 1)}

    # -- shifts and breaks ---------------------------------------------------------------------------

    def planner(self, day: int) -> None:
        self.plan_day(day)
        self.at((day + 1) * DAY_S, self.planner, day + 1)

    def plan_day(self, day: int) -> None:
        rng = self.rng
        base = day * DAY_S
        for a in self.agents:
            if day > 0 and rng.random() < DAY_OFF_P:
                continue
            login = base + a.start_s + rng.uniform(-900, 900)
            if day == 0:                                  # every agent works the first day
                login = min(max(login, 0.0), DAY_S - 3600)
            logout = login + SHIFT_S + rng.uniform(0, 600)
            if logout <= self.now or login > self.end:
                continue
            self.at(max(login, self.now), self.login, (a, day))
            self.at(logout, self.logout, (a, day))
            breaks = [(login + 2 * 3600 + rng.uniform(-900, 900), "break", 900.0),
                      (login + SHIFT_S / 2 + rng.uniform(-1800, 1800), "lunch", 1800.0),
                      (login + SHIFT_S - 2 * 3600 + rng.uniform(-900, 900), "break", 900.0)]
            for reason, p, duration in NOT_READY:
                if rng.random() < p:
                    breaks.append((login + rng.uniform(1800, SHIFT_S - 3600), reason,
                                   duration if reason != "personal" else rng.uniform(120, 420)))
            for t, reason, duration in breaks:
                if t > self.now:
                    self.at(t, self.break_start, (a, day, reason, duration))

    def login(self, arg) -> None:
        a, shift = arg
        a.shift = shift
        if a.logged_in:
            if a.pending is not None and a.pending[0] == "off":
                a.pending = None
                self.free(a)
            return
        a.logged_in, a.nr, a.pending, a.idle_since = True, None, None, self.now
        self.sync(a)
        self.free(a)

    def logout(self, arg) -> None:
        a, shift = arg
        if a.shift != shift or not a.logged_in:
            return
        a.pending = ("off",)
        a.token += 1
        if a.slots == 0:
            self.apply_pending(a)
            self.sync(a)

    def break_start(self, arg) -> None:
        a, shift, reason, duration = arg
        if a.shift != shift or not a.logged_in or a.pending is not None or a.nr is not None:
            return
        a.pending = ("nr", reason, duration)
        a.token += 1
        if a.slots == 0:
            self.apply_pending(a)
            self.sync(a)

    def break_end(self, arg) -> None:
        a, token = arg
        if a.nr_token != token or a.nr is None or not a.logged_in:
            return
        a.nr, a.idle_since = None, self.now
        self.sync(a)
        self.free(a)

    def apply_pending(self, a: _Agent) -> None:
        pending, a.pending = a.pending, None
        a.token += 1
        if pending[0] == "off":
            a.logged_in, a.nr = False, None
            a.nr_token += 1
        else:
            a.nr = pending[1]
            a.nr_token += 1
            self.after(pending[2], self.break_end, (a, a.nr_token))

    def sync(self, a: _Agent) -> None:
        """Emit the agent's state if it changed (once per simulation step, as an ACD reports it)."""
        if not a.logged_in:
            state, reason = "offline", None
        elif a.talking:
            state, reason = "on_contact", None
        elif a.acw:
            state, reason = "acw", None
        elif a.nr is not None:
            state, reason = "not_ready", a.nr
        else:
            state, reason = "available", None
        if state == a.state and reason == a.reason:
            return
        a.state, a.reason = state, reason
        fields = {"agent_id": a.id, "state": state, "queues": a.qnames, "capacity": a.capacity, "team": a.team}
        if reason is not None:
            fields["reason"] = reason
        self.emit("agent.state_changed", "acd-1", fields)

    # -- routing -------------------------------------------------------------------------------

    def free(self, a: _Agent) -> None:
        """Give a free agent work: the longest-waiting contacts (or tickets) of its queues."""
        if a.channel == "email":
            self.ticket_offer(a)
            self.sync(a)
            return
        while a.can_take():
            best, best_t = None, math.inf
            for q in a.queues:
                w = q.waiting
                while w:
                    c, seg = w[0]
                    if c.waiting and c.seg == seg:
                        if c.enq_t < best_t:
                            best, best_t = q, c.enq_t
                        break
                    w.popleft()
            if best is None:
                break
            c, _ = best.waiting.popleft()
            self.answer(c, best, a)
        self.register(a)
        self.sync(a)

    def register(self, a: _Agent) -> None:
        a.token += 1
        if not a.can_take():
            return
        for q in a.queues:
            self.seq += 1
            heapq.heappush(q.idle, (a.slots, a.idle_since, self.seq, a, a.token))

    def pick(self, q: _Queue) -> _Agent | None:
        idle = q.idle
        while idle:
            _, _, _, a, token = heapq.heappop(idle)
            if token == a.token and a.can_take():
                return a
        return None

    def slot_freed(self, a: _Agent) -> None:
        if a.slots == 0:
            a.idle_since = self.now
            if a.pending is not None:
                self.apply_pending(a)
                self.sync(a)
                return
        if a.pending is None:
            self.free(a)
        else:
            self.sync(a)

    # -- contacts ------------------------------------------------------------------------------

    def customer(self) -> int:
        if self.recent_customers and self.rng.random() < 0.12:
            return self.recent_customers[self.rng.randrange(len(self.recent_customers))]
        self.n_customers += 1
        self.recent_customers.append(self.n_customers)
        return self.n_customers

    def next_contact(self, arrive: bool) -> None:
        rng = self.rng
        if arrive and self.contact_queues:
            q = self.contact_queues[bisect.bisect(self.contact_cum, rng.random() * self.contact_cum[-1])]
            self.new_contact(q)
        if self.contact_peak_rate <= 0:
            return
        t = self.now
        while True:
            t += rng.expovariate(self.contact_peak_rate)
            if rng.random() < MINUTE_PROFILE[int(t // 60) % 1440]:
                break
        self.at(t, self.next_contact, True)

    def new_contact(self, q: _Queue) -> None:
        rng = self.rng
        self.n_contacts += 1
        n = self.customer()
        ref = f"+4930{n:08d}" if q.channel == "voice" else f"customer{n}@example.com"
        c = _Contact(f"contact-{self.n_contacts:08d}", q.channel, ref)
        self.emit("contact.offered", c.source, {"contact_id": c.id, "channel": c.channel, "customer_ref": ref})
        if c.channel == "chat":
            self.after(rng.uniform(1.0, 4.0), self.enqueue, (c, q))
        elif rng.random() < 0.03:                      # self-service in the IVR
            self.after(rng.uniform(30.0, 120.0), self.ended, (c, None))
        else:
            self.after(rng.uniform(8.0, 35.0), self.enqueue, (c, q))

    def enqueue(self, arg) -> None:
        c, q = arg
        rng = self.rng
        c.queue, c.enq_t = q, self.now
        c.seg += 1
        self.emit("contact.enqueued", c.source, {"contact_id": c.id, "channel": c.channel, "queue": q.name,
                                                 "customer_ref": c.ref})
        if c.channel == "chat" and c.seg == 1:
            self.emit("chat.message", "chat", {"contact_id": c.id, "channel": "chat", "author": "customer"})
        if c.seg == 1 or c.patience_factor > 1.0:
            patience = rng.uniform(1.0, 4.9) if rng.random() < 0.04 else \
                self.lognorm(q.patience_median, 0.9) * c.patience_factor
            c.deadline = self.now + patience
            c.patience_factor = 1.0
        a = self.pick(q)
        if a is not None:
            self.answer(c, q, a)
            self.register(a)
            self.sync(a)
            return
        c.waiting = True
        q.waiting.append((c, c.seg))
        timer = c.deadline if q.max_wait is None else min(c.deadline, self.now + q.max_wait)
        self.at(max(timer, self.now), self.wait_timer, (c, c.seg))

    def wait_timer(self, arg) -> None:
        c, seg = arg
        if not c.waiting or c.seg != seg:
            return
        c.waiting = False
        q = c.queue
        if self.now >= c.deadline - 1e-9 or q.max_wait is None:
            self.emit("contact.abandoned", c.source, {"contact_id": c.id, "channel": c.channel, "queue": q.name})
            self.ended((c, None))
        else:
            self.emit("contact.flowed_out", c.source, {"contact_id": c.id, "channel": c.channel, "queue": q.name,
                                                       "destination": "voicemail"})
            self.after(self.rng.uniform(20.0, 40.0), self.ended, (c, None))

    def ended(self, arg) -> None:
        c, a = arg
        fields = {"contact_id": c.id, "channel": c.channel}
        if a is not None:
            fields["agent_id"] = a.id
        self.emit("contact.ended", c.source, fields)

    def answer(self, c: _Contact, q: _Queue, a: _Agent) -> None:
        """Connect a contact to an agent; the caller registers the agent again and syncs its state."""
        rng = self.rng
        c.waiting, c.agent = False, a
        self.emit("contact.answered", c.source, {"contact_id": c.id, "channel": c.channel, "queue": q.name,
                                                 "agent_id": a.id})
        a.talking += 1
        a.slots += 1
        a.token += 1
        if c.channel == "chat":
            t = self.now + rng.uniform(5.0, 20.0)
            plan = [(t, "agent")]
            for _ in range(rng.randint(1, 4)):
                t += self.lognorm(35.0, 0.7)
                plan.append((t, "customer"))
                t += self.lognorm(25.0, 0.6) * (1 + 0.15 * (a.slots - 1))
                plan.append((t, "agent"))
            plan.append((t + rng.uniform(10.0, 60.0), "end"))
            c.plan, c.step = plan, 0
            self.at(plan[0][0], self.chat_step, c)
            return
        talk = self.lognorm(q.talk_median, 0.6)
        if rng.random() < q.hold_p:
            start = self.now + talk * rng.uniform(0.2, 0.7)
            hold = self.lognorm(45.0, 0.6)
            self.at(start, self.hold, (c, "contact.hold_started"))
            self.at(start + hold, self.hold, (c, "contact.hold_ended"))
            talk += hold
        self.after(talk, self.talk_end, c)

    def hold(self, arg) -> None:
        c, event_type = arg
        self.emit(event_type, c.source, {"contact_id": c.id, "channel": c.channel, "agent_id": c.agent.id})

    def chat_step(self, c: _Contact) -> None:
        t, what = c.plan[c.step]
        c.step += 1
        if what == "end":
            self.talk_end(c)
            return
        fields = {"contact_id": c.id, "channel": "chat", "author": what}
        if what == "agent":
            fields["agent_id"] = c.agent.id
        self.emit("chat.message", "chat", fields)
        self.at(c.plan[c.step][0], self.chat_step, c)

    def talk_end(self, c: _Contact) -> None:
        a, q, rng = c.agent, c.queue, self.rng
        if rng.random() < q.transfer_p and len(self.by_channel[q.channel]) > 1:
            qs = self.by_channel[q.channel]
            target = qs[bisect.bisect(self.cum[q.channel], rng.random() * self.cum[q.channel][-1])]
            if target is not q:       # a blind transfer: the agent is free at once, the contact queues again
                self.emit("contact.transferred", c.source, {"contact_id": c.id, "channel": c.channel,
                                                            "agent_id": a.id, "queue": q.name,
                                                            "to_queue": target.name})
                c.agent, c.patience_factor = None, 2.0
                a.talking -= 1
                a.slots -= 1
                self.enqueue((c, target))
                self.slot_freed(a)
                return
        self.ended((c, a))
        a.talking -= 1
        a.acw += 1
        self.after(self.lognorm(q.acw_median, 0.6), self.acw_done, c)
        self.sync(a)

    def acw_done(self, c: _Contact) -> None:
        a, q, rng = c.agent, c.queue, self.rng
        disposition, resolved = DISPOSITIONS[rng.randrange(len(DISPOSITIONS))]
        self.emit("contact.acw_completed", c.source, {"contact_id": c.id, "channel": c.channel, "agent_id": a.id,
                                                      "disposition": disposition, "resolved": resolved})
        a.acw -= 1
        a.slots -= 1
        if rng.random() < (0.18 if c.channel == "voice" else 0.25):
            kind = "nps" if rng.random() < 0.2 else "csat"
            score = rng.randint(1, 5) if kind == "csat" else rng.randint(0, 10)
            self.after(rng.uniform(20.0, 300.0), self.survey, ("contact_id", c.id, kind, score, q.name, a.id))
        self.slot_freed(a)

    def survey(self, arg) -> None:
        field, subject, kind, score, queue, agent_id = arg
        fields = {field: subject, "kind": kind, "score": score, "queue": queue}
        if agent_id is not None:
            fields["agent_id"] = agent_id
        self.emit("survey.responded", "survey", fields)

    # -- tickets -------------------------------------------------------------------------------

    def next_ticket(self, arrive: bool) -> None:
        rng = self.rng
        email = self.by_channel.get("email")
        if not email or self.ticket_peak_rate <= 0:
            return
        if arrive:
            q = email[bisect.bisect(self.cum["email"], rng.random() * self.cum["email"][-1])]
            r = rng.random()
            for priority, weight in TICKET_PRIORITIES:
                r -= weight
                if r < 0:
                    break
            self.new_ticket(q, priority)
        t = self.now
        while True:
            t += rng.expovariate(self.ticket_peak_rate)
            if rng.random() < 0.15 + 0.85 * MINUTE_PROFILE[int(t // 60) % 1440]:
                break
        self.at(t, self.next_ticket, True)

    def ticket_event(self, t: _Ticket, event_type: str, **fields) -> None:
        self.emit(event_type, "helpdesk", {"ticket_id": t.id, **fields})

    def status(self, t: _Ticket, status: str) -> None:
        self.ticket_event(t, "ticket.status_changed", status=status, previous_status=t.status)
        t.status = status
        t.tok += 1

    def new_ticket(self, q: _Queue, priority: str) -> None:
        self.n_tickets += 1
        t = _Ticket(f"ticket-{self.n_tickets:07d}", priority, q)
        self.ticket_event(t, "ticket.created", priority=priority, queue=q.name, channel="email",
                          customer_ref=f"customer{self.customer()}@example.com")
        self.push_task(t)

    def push_task(self, t: _Ticket) -> None:
        t.tok += 1
        q = t.queue
        q.tasks.append((self.now, t, t.tok))
        while q.idle_email:
            a, token = q.idle_email.popleft()
            if token == a.token:
                self.ticket_offer(a)
                self.sync(a)
                break

    def ticket_offer(self, a: _Agent) -> None:
        a.token += 1
        if not a.can_take():
            return
        best, best_t = None, math.inf
        for q in a.queues:
            tasks = q.tasks
            while tasks:
                queued, t, tok = tasks[0]
                if tok == t.tok:
                    if queued < best_t:
                        best, best_t = q, queued
                    break
                tasks.popleft()
        if best is None:
            for q in a.queues:
                q.idle_email.append((a, a.token))
            return
        _, t, _ = best.tasks.popleft()
        t.tok += 1
        if t.assignee is not a:
            t.assignee = a
            self.ticket_event(t, "ticket.assigned", agent_id=a.id, queue=t.queue.name)
        if t.status == "new":
            self.status(t, "open")
        a.ticket = t
        a.talking += 1
        a.slots += 1
        self.after(self.lognorm(300.0, 0.6), self.ticket_reply, (a, t))

    def ticket_reply(self, arg) -> None:
        a, t = arg
        rng = self.rng
        self.ticket_event(t, "ticket.agent_replied", agent_id=a.id)
        t.replies += 1
        r = rng.random()
        if t.replies == 1:
            status = "solved" if r < 0.35 else "pending" if r < 0.9 else "on_hold"
        else:
            status = "solved" if r < 0.6 else "pending" if r < 0.95 else "on_hold"
        self.status(t, status)
        tok = t.tok
        if status == "pending":
            if rng.random() < 0.75:
                self.after(self.lognorm(3 * 3600.0, 1.0), self.ticket_customer_reply, (t, tok))
            else:
                self.after(48 * 3600.0, self.ticket_autosolve, (t, tok))
        elif status == "on_hold":
            self.after(self.lognorm(4 * 3600.0, 0.8), self.ticket_reopen_work, (t, tok))
        else:
            self.ticket_solved(t)
        a.ticket = None
        a.talking -= 1
        a.slots -= 1
        a.idle_since = self.now
        if a.pending is not None:
            self.apply_pending(a)
        else:
            self.ticket_offer(a)
        self.sync(a)

    def ticket_solved(self, t: _Ticket) -> None:
        rng = self.rng
        tok = t.tok
        self.after(72 * 3600.0, self.ticket_close, (t, tok))
        if rng.random() < 0.07:
            self.after(self.lognorm(12 * 3600.0, 1.0), self.ticket_reopen, (t, tok))
        if rng.random() < 0.2:
            kind = "nps" if rng.random() < 0.3 else "csat"
            score = rng.randint(1, 5) if kind == "csat" else rng.randint(0, 10)
            agent_id = t.assignee.id if t.assignee is not None else None
            self.after(self.lognorm(5400.0, 1.0), self.survey, ("ticket_id", t.id, kind, score, t.queue.name,
                                                                agent_id))

    def ticket_customer_reply(self, arg) -> None:
        t, tok = arg
        if t.tok != tok or t.status != "pending":
            return
        self.ticket_event(t, "ticket.customer_replied")
        self.status(t, "open")
        self.push_task(t)

    def ticket_autosolve(self, arg) -> None:
        t, tok = arg
        if t.tok != tok or t.status != "pending":
            return
        self.status(t, "solved")
        self.ticket_solved(t)

    def ticket_reopen_work(self, arg) -> None:
        t, tok = arg
        if t.tok != tok or t.status != "on_hold":
            return
        self.status(t, "open")
        self.push_task(t)

    def ticket_reopen(self, arg) -> None:
        t, tok = arg
        if t.tok != tok or t.status != "solved":
            return
        self.ticket_event(t, "ticket.customer_replied")
        self.ticket_event(t, "ticket.reopened")
        self.status(t, "open")
        self.push_task(t)

    def ticket_close(self, arg) -> None:
        t, tok = arg
        if t.tok != tok or t.status != "solved":
            return
        self.status(t, "closed")


def _cumulate(values):
    total = 0.0
    for v in values:
        total += v
        yield total


def _shift_starts() -> list[float]:
    """Cumulative weights of shift starts per quarter hour: staffing follows the arrival curve
    (a shift's middle lands where the demand is) with a night crew."""
    cum, total = [], 0.0
    for quarter in range(96):
        middle = (quarter * 15 + SHIFT_S / 120) % 1440
        total += max(0.02, MINUTE_PROFILE[int(middle)])
        cum.append(total)
    return cum


def _pick_start(cum: list[float], rng: random.Random) -> float:
    return bisect.bisect(cum, rng.random() * cum[-1]) * 900.0


def generator_main(cfg: dict, queue) -> None:
    """The generator process: simulate and put messages on `queue` (see `Site.run`)."""
    try:
        site = Site(cfg)
        queue.put(("site", site.stats(), [(q.name, q.channel, q.threshold_s) for q in site.queues]))
        stats = site.run(queue.put)
        queue.put(("end", stats))
    except BaseException as exc:  # noqa: BLE001 - reported by the measuring process
        import traceback

        queue.put(("error", f"{exc!r}\n{traceback.format_exc()}"))
        raise


# == the measuring process ("the worker") ===========================================================

def entity_partition(entity_key: str, partitions: int) -> int:
    """`streams.app.entity_partition` (copied: importing streams.app pulls in Faust)."""
    return zlib.crc32(entity_key.encode()) % partitions


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class GcWatch:
    """Cyclic-GC pauses: with millions of container objects in the state, a full collection is long."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.by_generation = [[0, 0.0, 0.0] for _ in range(3)]   # collections, total s, longest s
        gc.callbacks.append(self)

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        elif self.started is not None:
            took = time.perf_counter() - self.started
            row = self.by_generation[info["generation"]]
            row[0] += 1
            row[1] += took
            row[2] = max(row[2], took)
            self.started = None

    def report(self) -> dict:
        return {f"gen{g}": {"collections": n, "total_s": round(total, 3), "longest_ms": round(longest * 1000, 1)}
                for g, (n, total, longest) in enumerate(self.by_generation)}

    def close(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


class Worker:
    """The partitions' states fed like the engine (`streams.app`): decode, route, apply; per batch of a
    partition `advance`, `take_dirty` (the changelog writes) and `take_side` (side entries to the
    target's partition, applied there like the side agent does)."""

    def __init__(self, settings, partitions: int, batch: int) -> None:
        import functools

        from models.events import EVENT_ADAPTER
        from streams.kpi.queues import QueueRules
        from streams.kpi.windows import SiteClock
        from streams.partition import PartitionConfig, PartitionState, decode_parts, encode_parts, event_parts

        self._parts = (event_parts, encode_parts, decode_parts)
        self.settings = settings
        self.config = PartitionConfig(
            SiteClock.from_settings(settings.site),
            functools.cache(lambda queue, channel: QueueRules.of(settings.queue(queue, channel))),
            rolling_minutes=tuple(settings.site.rolling_windows_minutes))
        self.states = [PartitionState(self.config) for _ in range(partitions)]
        self.partitions = partitions
        self.batch = batch
        self.pending = [0] * partitions
        self.validate = EVENT_ADAPTER.validate_json
        self.context = {"customer_hash_key": HASH_KEY}
        self.events = 0
        self.input_bytes = 0
        self.internal_bytes = 0           # the compact lines ingest ships to the engine
        self.ingest_s = self.engine_s = 0.0
        self.changelog = {"writes": 0, "bytes": 0, "deletes": 0, "batches": 0}
        self.changelog_by_kind: Counter[str] = Counter()    # bytes written per record kind
        self.side = {"messages": 0, "entries": 0, "bytes": 0}
        self.side_sent: dict = {}         # the worker's `_side_sent`: last payload per (target, subject)

    def feed(self, chunk: bytes) -> None:
        """One generator chunk: ingest's part (validate, hash customer_ref, encode the compact parts of
        the internal line), then the engine's (decode the parts, apply, per-partition batches)."""
        validate, context = self.validate, self.context
        event_parts, encode_parts, decode_parts = self._parts
        started = time.perf_counter()
        lines = [encode_parts(event_parts(validate(line, context=context))) for line in chunk.split(b"\n")]
        engine_started = time.perf_counter()
        states, pending, partitions, batch = self.states, self.pending, self.partitions, self.batch
        crc32 = zlib.crc32
        for line in lines:
            parts = decode_parts(line)
            p = crc32(parts[1].encode()) % partitions
            states[p].apply_parts(*parts)
            n = pending[p] + 1
            if n >= batch:
                self.flush(p)
            else:
                pending[p] = n
        done = time.perf_counter()
        self.ingest_s += engine_started - started
        self.engine_s += done - engine_started
        self.events += len(lines)
        self.input_bytes += len(chunk) - len(lines) + 1
        self.internal_bytes += sum(len(line) for line in lines)

    def _write(self, state) -> None:
        changed, deleted = state.take_dirty()
        log, by_kind = self.changelog, self.changelog_by_kind
        log["batches"] += 1
        log["writes"] += len(changed)
        log["deletes"] += len(deleted)
        for key, value in changed.items():
            n = len(key) + len(value)
            log["bytes"] += n
            by_kind[key[:key.index(":")]] += n

    def flush(self, p: int) -> None:
        state = self.states[p]
        state.advance()
        self._write(state)
        entries = state.take_side()
        if entries:
            by_partition: dict[int, list] = {}
            sent = self.side_sent
            for target, subject, payload in entries:
                if sent.get((target, subject), ...) != payload:
                    sent[(target, subject)] = payload
                    by_partition.setdefault(entity_partition(target, self.partitions), []).append(
                        (target, subject, payload))
            for target_partition, items in by_partition.items():
                value = orjson.dumps(items)
                self.side["messages"] += 1
                self.side["entries"] += len(items)
                self.side["bytes"] += len(value)
                target_state = self.states[target_partition]
                for target, subject, payload in orjson.loads(value):
                    target_state.apply_side(target, subject, payload)
                target_state.advance()
                self._write(target_state)
        # the snapshot publisher (streams.snapshots) drains these on its timer; here every batch
        state.touched_windows.clear()
        state.touched_agents.clear()
        self.pending[p] = 0

    def flush_all(self) -> None:
        for p in range(self.partitions):
            self.flush(p)


def _kind(key: str) -> str:
    return key.split(":", 1)[0]


def census(worker: Worker) -> dict:
    """What the states hold: records and their compact events, window entries, side structures."""
    states = worker.states
    records: Counter[str] = Counter()
    events: Counter[str] = Counter()
    agent_changes: list[int] = []
    oldest_change_us = None
    queues: set[str] = set()
    for state in states:
        for key, record in state.records.items():
            records[_kind(key)] += 1
            if record.contact is not None:
                events["contact"] += len(record.contact.events)
            if record.agent is not None:
                changes = record.agent.changes
                events["agent"] += len(changes)
                agent_changes.append(len(changes))
                if changes and (oldest_change_us is None or changes[0].at_us < oldest_change_us):
                    oldest_change_us = changes[0].at_us
            if record.ticket is not None:
                events["ticket"] += len(record.ticket.events)
            if record.quality is not None:
                events["quality"] += len(record.quality.events)
            if record.customer_facts:
                events["customer_facts"] += sum(len(f) for f in record.customer_facts.values())
        for key in state.queues.days:
            queues.add(key[0])
        for key in state.tickets.days:
            queues.add(key[0])
        for kind, name, *_ in state.agent_time.days:
            if kind == "queue":
                queues.add(name)
    windows = {}
    for table in ("queues", "agent_time", "tickets", "quality"):
        w = [getattr(s, table) for s in states]
        windows[table] = {"intervals": sum(len(x.intervals) for x in w), "days": sum(len(x.days) for x in w)}
        if w[0].buckets is not None:
            windows[table]["buckets"] = sum(len(x.buckets) for x in w)
    # agent windows holding nothing but time logged off (occupancy never uses it)
    offline_only = sum(1 for s in states for w in s.agent_time.intervals.values()
                       if not any(us for state, us in w.state_us.items() if state != "offline"))
    windows["agent_time"]["intervals_offline_only"] = offline_only
    watermark = max((s.watermark_ms for s in states if s.watermark_ms is not None), default=None)
    outcomes: Counter[str] = Counter()
    for s in states:
        outcomes.update(s.counts)
    return {
        "records": dict(sorted(records.items())),
        "records_total": sum(records.values()),
        "compact_events": dict(sorted(events.items())),
        "agent_changes_per_record": {"mean": round(statistics.fmean(agent_changes), 1) if agent_changes else 0,
                                     "max": max(agent_changes, default=0)},
        "oldest_agent_change_h": None if watermark is None or oldest_change_us is None else
        round((watermark * 1000 - oldest_change_us) / 3.6e9, 1),
        "window_entries": windows,
        "window_entries_total": sum(n for table in windows.values() for part, n in table.items()
                                    if part in ("intervals", "days", "buckets")),
        "waiting": sum(len(s.waiting) for s in states),
        "handling": sum(len(s.handling) for s in states),
        "agents_index": sum(len(s.agents) for s in states),
        "open_tickets_index": sum(len(s.open_tickets) for s in states),
        "legs": sum(len(s.legs) for s in states),
        "ticket_timers": sum(len(s._ticket_timers) for s in states),
        "customer_timers": sum(len(s._customer_timers) for s in states),
        "side_sent": len(worker.side_sent),
        "queues_seen": len(queues),
        "agents_seen": records.get("agent", 0),
        "outcomes": dict(sorted(outcomes.items())),
    }


# -- sizes ------------------------------------------------------------------------------------------

_NOT_DATA = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def _owned_bytes(roots: list, transient: int) -> float:
    """Bytes of the objects reachable from `roots`; an object also referenced from outside them (an
    interned queue name, a small int) counts in proportion to the references from inside."""
    objs = {id(r): r for r in roots}
    inside: Counter[int] = Counter()
    stack = list(roots)
    while stack:
        for child in gc.get_referents(stack.pop()):
            if isinstance(child, _NOT_DATA):
                continue
            i = id(child)
            inside[i] += 1
            if i not in objs:
                objs[i] = child
                stack.append(child)
    total = 0.0
    root_ids = {id(r) for r in roots}
    for i, obj in objs.items():
        size = sys.getsizeof(obj)
        fields = getattr(type(obj), "__dataclass_fields__", None)
        if fields is not None and not hasattr(type(obj), "__slots__"):
            size += 8 * len(fields) + 16       # 3.11 keeps instance attributes in a values array
        if i in root_ids:
            total += size
        else:
            holders = sys.getrefcount(obj) - transient
            total += size * min(1.0, inside[i] / max(1, holders))
    return total


def _calibrate() -> int:
    """References `_owned_bytes` itself holds on an object while it weighs it."""
    n = 100
    root = [["x" * n]]          # each object below the root has exactly one holder
    full = sys.getsizeof(root) + sys.getsizeof(root[0]) + sys.getsizeof(root[0][0])
    for transient in range(8):  # too few: the one holder looks shared and the object is under-counted
        if abs(_owned_bytes([root], transient) - full) < 1:
            return transient
    raise RuntimeError("cannot calibrate the size estimate")


def estimate_sizes(worker: Worker, sample: int, rng: random.Random) -> dict:
    """Bytes per structure, from deep sizes of a random sample of its entries times its length (plus
    the hash tables themselves). Fast at any size; cross-checked against tracemalloc in --tracemalloc runs."""
    transient = _calibrate()
    states = worker.states
    out: dict[str, dict] = {}

    def add(name: str, count: int, roots_sample: list, tables: int, per_root: int = 1) -> None:
        per_entry = _owned_bytes(roots_sample, transient) / max(1, len(roots_sample) // per_root) \
            if roots_sample else 0.0
        out[name] = {"entries": count, "bytes": round(per_entry * count + tables),
                     "bytes_per_entry": round(per_entry)}

    by_kind: dict[str, list] = {}
    for state in states:
        for key, record in state.records.items():
            by_kind.setdefault(_kind(key), []).append(record)
    for kind, recs in sorted(by_kind.items()):
        add(f"records.{kind}", len(recs), rng.sample(recs, min(sample, len(recs))), 0)
    del by_kind
    for table in ("queues", "agent_time", "tickets", "quality"):
        for part in ("intervals", "days", "buckets"):
            dicts = [getattr(getattr(s, table), part) for s in states]
            if dicts[0] is None:
                continue
            items = [kv for d in dicts for kv in d.items()]
            picked = rng.sample(items, min(sample, len(items)))
            add(f"{table}.{part}", len(items), [x for kv in picked for x in kv],
                sum(sys.getsizeof(d) for d in dicts), per_root=2)
    for name in ("waiting", "handling", "legs"):
        dicts = [getattr(s, name) for s in states]
        values = [v for d in dicts for v in d.values()]
        add(name, len(values), rng.sample(values, min(sample, len(values))), sum(sys.getsizeof(d) for d in dicts))
    for name in ("_ticket_timers", "_customer_timers"):
        lists = [getattr(s, name) for s in states]
        values = [v for lst in lists for v in lst]
        add(name.lstrip("_"), len(values), rng.sample(values, min(sample, len(values))),
            sum(sys.getsizeof(lst) for lst in lists))
    index = sum(sys.getsizeof(d) for s in states for d in (s.records, s.agents, s.open_tickets, s._day_starts,
                                                            s.dirty, s.deleted, s.side_dirty))
    out["index dicts (records, agents, open_tickets)"] = {"entries": sum(len(s.records) for s in states),
                                                          "bytes": index, "bytes_per_entry": None}
    items = list(worker.side_sent.items())
    picked = rng.sample(items, min(sample, len(items)))
    add("worker side_sent (app._side_sent)", len(items), [x for kv in picked for x in kv],
        sys.getsizeof(worker.side_sent), per_root=2)
    total = sum(v["bytes"] for v in out.values())
    return {"total_bytes": total, "by_structure": dict(sorted(out.items(), key=lambda kv: -kv[1]["bytes"]))}


def encoded_size(states) -> dict:
    """The encoded records: what the compacted changelog holds right now (keys + values)."""
    started = time.perf_counter()
    by_kind: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for state in states:
        for key, record in state.records.items():
            kind = _kind(key)
            by_kind[kind] += len(key) + len(record.encode())
            count[kind] += 1
    return {"bytes": sum(by_kind.values()), "by_kind": dict(sorted(by_kind.items())),
            "bytes_per_record": {k: round(by_kind[k] / count[k]) for k in sorted(count)},
            "encode_s": round(time.perf_counter() - started, 2)}


def scrape(states, settings, repeat: int, traced: bool) -> dict:
    """One full /metrics body through KpiCollector, timed `repeat` times."""
    import tracemalloc

    from prometheus_client import CollectorRegistry, generate_latest

    from streams.exposition import KpiCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(KpiCollector(lambda: list(states), settings))
    times = []
    body = b""
    rss_before = rss()
    if traced:
        tracemalloc.reset_peak()
        current = tracemalloc.get_traced_memory()[0]
    for _ in range(repeat):
        started = time.perf_counter()
        body = generate_latest(registry)
        times.append(time.perf_counter() - started)
    result: dict[str, Any] = {"seconds_min": round(min(times), 3), "seconds_median": round(statistics.median(times), 3),
                              "repeat": repeat, "bytes": len(body)}
    if traced:
        result["traced_peak_above_state_bytes"] = tracemalloc.get_traced_memory()[1] - current
    result["rss_growth_bytes"] = rss() - rss_before
    families: Counter[str] = Counter()
    for line in body.split(b"\n"):
        if line and not line.startswith(b"#"):
            families[line.split(b"{", 1)[0].split(b" ", 1)[0].decode()] += 1
    result["series"] = sum(families.values())
    result["series_by_family"] = dict(families.most_common())
    return result


def _comparable(table: dict) -> dict:
    """Window entries as plain data, all-zero entries left out (a fact added and taken back leaves a
    zero entry in the live state that a rebuild never creates)."""
    out = {}
    for key, value in table.items():
        data = {}
        for name in getattr(value, "__dataclass_fields__", ()):
            v = getattr(value, name)
            if isinstance(v, dict):
                v = {k: x for k, x in v.items() if x}
            if v:
                data[name] = v
        if data:
            out[key] = data
    return out


def rebuild(worker: Worker, partition: int, traced: bool) -> dict:
    """`PartitionState.rebuild` of one partition from its encoded records (the restart / rebalance
    path); with tracemalloc, the rebuilt partition's memory and what it is made of, measured by tearing
    it down piece by piece."""
    import tracemalloc

    from streams.partition import PartitionState

    live = worker.states[partition]
    if traced:                        # collections only for exact traced figures: each one takes seconds
        gc.collect()
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
    values = [(key, record.encode()) for key, record in live.records.items()]
    result: dict[str, Any] = {"partition": partition, "records": len(values),
                              "encoded_bytes": sum(len(k) + len(v) for k, v in values)}
    started = time.perf_counter()
    rebuilt = PartitionState.rebuild(worker.config, values)
    result["seconds"] = round(time.perf_counter() - started, 2)
    if traced:
        result["traced_peak_during_bytes"] = tracemalloc.get_traced_memory()[1] - before   # values included
    same = {}
    for table in ("queues", "agent_time", "tickets", "quality"):
        a, b = getattr(live, table), getattr(rebuilt, table)
        for part in ("intervals", "days", "buckets"):
            if getattr(a, part) is not None:
                same[f"{table}.{part}"] = _comparable(getattr(a, part)) == _comparable(getattr(b, part))
    for name in ("waiting", "handling", "legs", "watermark_ms"):
        same[name] = getattr(live, name) == getattr(rebuilt, name)
    same["records"] = set(live.records) == set(rebuilt.records)
    result["equal_to_live"] = same
    del values
    if traced:
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        result["traced_bytes"] = after - before
        parts: dict[str, int] = {}
        last = after

        def drop(name: str, action) -> None:
            nonlocal last
            action()
            gc.collect()
            now = tracemalloc.get_traced_memory()[0]
            parts[name] = last - now
            last = now

        for table in ("queues", "agent_time", "tickets", "quality"):
            w = getattr(rebuilt, table)
            for part in ("buckets", "intervals", "days"):
                if getattr(w, part) is not None:
                    drop(f"{table}.{part}", lambda w=w, part=part: setattr(w, part, {}))
        for name in ("waiting", "handling", "legs"):
            drop(name, lambda name=name: setattr(rebuilt, name, {}))
        drop("ticket_timers", lambda: setattr(rebuilt, "_ticket_timers", []))
        drop("customer_timers", lambda: setattr(rebuilt, "_customer_timers", []))
        drop("index dicts (agents, open_tickets)", lambda: (setattr(rebuilt, "agents", {}),
                                                            setattr(rebuilt, "open_tickets", {})))
        for kind in sorted({_kind(k) for k in rebuilt.records}):
            def forget(kind=kind) -> None:
                for key in [k for k in rebuilt.records if k.startswith(kind + ":")]:
                    del rebuilt.records[key]
            drop(f"records.{kind}", forget)
        drop("rest (records dict, caches)", lambda: (setattr(rebuilt, "records", {}),
                                                      setattr(rebuilt, "_day_starts", {})))
        result["breakdown_bytes"] = dict(sorted(parts.items(), key=lambda kv: -kv[1]))
    rebuilt = None                    # gone before the caller measures anything else
    if traced:
        gc.collect()
    return result


# == the run ========================================================================================

def build_settings(queues: list[tuple[str, str, float]]):
    """The site's configuration: every queue listed with its channel and threshold, as a site would."""
    from streams.config import QueueSettings, Settings, SiteSettings

    formulas = ("answered_of_offered_excl_short", "answered_of_offered", "met_of_removed")
    return Settings(site=SiteSettings(name="bench-memory", timezone="UTC"), queues={
        name: QueueSettings(channel=channel, sl_threshold_s=threshold, sl_formula=formulas[i % len(formulas)],
                            sl_target=0.8 if channel != "email" else 0.9)
        for i, (name, channel, threshold) in enumerate(queues)})


def checkpoint(worker: Worker, label: str, sim_s: float, args, run: dict, gcw: GcWatch, traced: bool,
               with_rebuild: bool = True) -> dict:
    import tracemalloc

    say(f"{label}: measuring ...")
    measure_started = time.monotonic()
    worker.flush_all()
    row: dict[str, Any] = {"label": label, "sim_time": (START + timedelta(seconds=sim_s)).isoformat(),
                           "sim_days": round(sim_s / DAY_S, 3), "events": worker.events,
                           "input_bytes": worker.input_bytes, "wall_s": round(time.monotonic() - run["started"], 1),
                           "feed_s": round(run["feed_s"], 1),
                           "changelog_written": {**worker.changelog,
                                                 "bytes_by_kind": dict(sorted(worker.changelog_by_kind.items()))},
                           "side_entries_sent": dict(worker.side)}
    if traced:
        row["traced_peak_bytes"] = tracemalloc.get_traced_memory()[1]   # since the last checkpoint
    started = time.perf_counter()
    gc.collect()
    row["full_gc_s"] = round(time.perf_counter() - started, 3)
    row["gc_tracked_objects"] = len(gc.get_objects())
    if traced:
        row["traced_state_bytes"] = tracemalloc.get_traced_memory()[0] - run["traced_baseline"]
    row["rss_bytes"] = rss()
    row["rss_state_bytes"] = row["rss_bytes"] - run["rss_before"]
    row["max_rss_bytes"] = max_rss()
    row.update(census(worker))
    started = time.perf_counter()
    row["estimate"] = estimate_sizes(worker, args.sample, random.Random(args.seed))
    row["estimate"]["seconds"] = round(time.perf_counter() - started, 2)
    row["encoded"] = encoded_size(worker.states)
    row["scrape"] = scrape(worker.states, worker.settings, args.scrape_repeat, traced)
    row["rebuild"] = rebuild(worker, 0, traced) if with_rebuild else None
    row["gc"] = gcw.report()
    if traced:
        tracemalloc.reset_peak()
    row["measure_s"] = round(time.monotonic() - measure_started, 1)
    say(_one_line(row))
    return row


def mib(n: float | None) -> str:
    return "-" if n is None else f"{n / MIB:,.0f}"


def _one_line(row: dict) -> str:
    w = row["window_entries"]
    traced = f", traced {mib(row['traced_state_bytes'])} MiB" if "traced_state_bytes" in row else ""
    return (f"  {row['label']}: {row['records_total']:,} records {row['records']}, "
            f"{row['window_entries_total']:,} window entries (queue intervals {w['queues']['intervals']:,}, "
            f"agent intervals {w['agent_time']['intervals']:,}); state RSS {mib(row['rss_state_bytes'])} MiB, "
            f"estimated {mib(row['estimate']['total_bytes'])} MiB{traced}; encoded {mib(row['encoded']['bytes'])} MiB; "
            f"scrape {row['scrape']['seconds_median']:.2f} s ({row['scrape']['series']:,} series, "
            f"{row['scrape']['bytes'] / MIB:.1f} MiB); rebuild p0 "
            f"{'-' if row['rebuild'] is None else format(row['rebuild']['seconds'], '.2f')} s; "
            f"full gc {row['full_gc_s']:.2f} s")


def text_report(report: dict) -> str:
    cfg, rows, gen = report["config"], report["checkpoints"], report["generator"]
    lines = [
        f"site: {cfg['queues']:,} queues ({', '.join(f'{n} {c}' for c, n in gen['queues_by_channel'].items())}), "
        f"{cfg['agents']:,} agents in {gen['teams']} teams ({gen['skills_per_agent']} queues each), "
        f"{cfg['contacts_per_day']:,} contacts/day, {cfg['tickets_per_day']:,} tickets/day; {cfg['days']} days "
        f"from {cfg['start'][:10]} 00:00 UTC; {cfg['partitions']} partitions, batch {cfg['batch']}; "
        f"tracemalloc {'on' if cfg['tracemalloc'] else 'off'}",
        f"events: {gen['events']:,} ({gen['contacts']:,} contacts, {gen['tickets']:,} tickets, "
        f"{gen['by_event_type'].get('agent.state_changed', 0):,} agent state changes), "
        f"{report['feed']['input_bytes'] / MIB:,.0f} MiB of JSON; {report['feed']['events_per_s']:,.0f} events/s: "
        f"ingest {report['feed']['ingest_us_per_event']} µs + engine {report['feed']['engine_us_per_event']} µs "
        f"per event{' (slowed by tracemalloc)' if cfg['tracemalloc'] else ''}",
        ""]
    lines.append(f"{'checkpoint':18s} {'events':>10s} {'contact':>8s} {'agent':>6s} {'ticket':>7s} {'cust.':>7s} "
                 f"{'q.int':>7s} {'q.day':>6s} {'q.bkt':>7s} {'agt.int':>7s} {'enc MiB':>7s} {'RSS MiB':>7s} "
                 f"{'est MiB':>7s} {'trc MiB':>7s} {'scrape s':>8s} {'MiB':>5s} {'series':>8s} {'rebuild s':>9s} "
                 f"{'gc s':>5s}")
    for r in rows:
        w, rec = r["window_entries"], r["records"]
        lines.append(
            f"{r['label']:18s} {r['events']:>10,} {rec.get('contact', 0):>8,} {rec.get('agent', 0):>6,} "
            f"{rec.get('ticket', 0):>7,} {rec.get('customer', 0):>7,} {w['queues']['intervals']:>7,} "
            f"{w['queues']['days']:>6,} {w['queues']['buckets']:>7,} {w['agent_time']['intervals']:>7,} "
            f"{mib(r['encoded']['bytes']):>7s} {mib(r['rss_state_bytes']):>7s} {mib(r['estimate']['total_bytes']):>7s} "
            f"{mib(r.get('traced_state_bytes')):>7s} {r['scrape']['seconds_median']:>8.2f} "
            f"{r['scrape']['bytes'] / MIB:>5.1f} {r['scrape']['series']:>8,} "
            f"{'-' if r['rebuild'] is None else format(r['rebuild']['seconds'], '.2f'):>9s} "
            f"{r['full_gc_s']:>5.2f}")
    lines.append("(RSS MiB: process RSS minus RSS before the first event; est: sampled deep sizes; trc: tracemalloc; "
                 "rebuild: partition 0 from its encoded records; gc: one full collection)")
    untraced = report.get("untraced")
    if untraced:
        lines.append(f"without tracemalloc at {rows[-1]['label']}: scrape "
                     f"{untraced['scrape']['seconds_median']:.2f} s, rebuild of partition 0 "
                     f"{untraced['rebuild']['seconds']:.2f} s "
                     f"({untraced['rebuild']['records']:,} records)")
    peak = max(rows, key=lambda r: r["estimate"]["total_bytes"])
    est = peak["estimate"]
    lines += ["", f"where the memory is at {peak['label']} (sampled estimate, all partitions, "
                  f"{mib(est['total_bytes'])} MiB):"]
    for name, v in est["by_structure"].items():
        if v["bytes"] >= est["total_bytes"] * 0.002:
            per = f"{v['bytes_per_entry']:>6,} B each" if v["bytes_per_entry"] is not None else " " * 13
            lines.append(f"  {name:44s} {v['bytes'] / MIB:8.1f} MiB {100 * v['bytes'] / est['total_bytes']:5.1f} % "
                         f"{v['entries']:>10,} entries {per}")
    rebuilt = max((r for r in rows if r["rebuild"]), key=lambda r: r["estimate"]["total_bytes"])
    bd = rebuilt["rebuild"].get("breakdown_bytes")
    if bd:
        total = sum(bd.values())
        lines += ["", f"partition 0 rebuilt from its records at {rebuilt['label']} (tracemalloc, "
                      f"{mib(rebuilt['rebuild']['traced_bytes'])} MiB, peak during rebuild "
                      f"{mib(rebuilt['rebuild']['traced_peak_during_bytes'])} MiB):"]
        for name, n in bd.items():
            if n >= total * 0.002:
                lines.append(f"  {name:44s} {n / MIB:8.1f} MiB {100 * n / total if total else 0:5.1f} %")
    last = rows[-1]
    gen2 = last["gc"]["gen2"]
    enc = last["encoded"]["bytes_per_record"]
    lines += ["",
              f"encoded bytes per record: {enc}; changelog written so far: {last['changelog_written']['writes']:,} "
              f"writes, {last['changelog_written']['bytes'] / MIB:,.0f} MiB",
              f"scrape: {last['scrape']['series']:,} series, {last['scrape']['bytes'] / MIB:.1f} MiB, largest family "
              f"{next(iter(last['scrape']['series_by_family'].items()), ('-', 0))}",
              f"gc: {last['gc_tracked_objects']:,} tracked objects; {gen2['collections']} full collections during "
              f"the run, longest {gen2['longest_ms']:,.0f} ms",
              f"agents: {last['agent_changes_per_record']['mean']} state changes per agent record (max "
              f"{last['agent_changes_per_record']['max']}), oldest kept change {last['oldest_agent_change_h']} h old",
              f"queues seen {last['queues_seen']:,} / {cfg['queues']:,}; agent records {last['agents_seen']:,} / "
              f"{cfg['agents']:,}; outcomes {last['outcomes']}"]
    return "\n".join(lines)


def code_identity() -> dict:
    import subprocess

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    status = git("status", "--porcelain", "--", "streams", "models", "bench")
    return {"head": git("rev-parse", "--short", "HEAD"), "uncommitted": [line[3:] for line in status.splitlines()]}


def machine_facts() -> dict:
    import psutil

    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu_model": cpu_model,
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "pydantic": version("pydantic"), "orjson": version("orjson"),
            "prometheus_client": version("prometheus_client")}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--queues", type=int, default=2000)
    p.add_argument("--agents", type=int, default=10000)
    p.add_argument("--contacts-per-day", type=int, default=100_000, help="voice + chat contacts per day")
    p.add_argument("--tickets-per-day", type=int, default=10_000, help="e-mail tickets per day")
    p.add_argument("--days", type=float, default=1.1,
                   help="simulated days from Monday 00:00 (default 1.1); records and windows leave retention "
                        "only after 2 (retention keeps today and yesterday)")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies queues, agents, contacts and tickets")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--batch", type=int, default=1000, help="events per partition between advance()/take_dirty()")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scrape-repeat", type=int, default=1, help="scrapes timed per checkpoint")
    p.add_argument("--sample", type=int, default=1000, help="entries per structure deep-sized for the estimate")
    p.add_argument("--tracemalloc", action="store_true",
                   help="trace every allocation from the first event: exact traced figures and a breakdown of "
                        "a rebuilt partition; about 4x slower")
    p.add_argument("--out", metavar="FILE", help="JSON report (default bench/results/memory-<time>.json)")
    args = p.parse_args(argv)
    if args.scale <= 0 or args.days <= 0 or args.partitions < 1 or args.batch < 1 or args.scrape_repeat < 1:
        p.error("--scale and --days must be > 0; --partitions, --batch and --scrape-repeat >= 1")
    return args


def main(argv=None) -> int:
    import multiprocessing
    import tracemalloc

    # Everything the measurement uses is imported now: a long run must not pick up files edited meanwhile.
    import prometheus_client  # noqa: F401

    import streams.exposition  # noqa: F401
    import streams.partition  # noqa: F401

    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # run the clean-up below (the generator)
    cfg = {"seed": args.seed, "days": args.days,
           "queues": max(1, round(args.queues * args.scale)), "agents": max(1, round(args.agents * args.scale)),
           "contacts_per_day": round(args.contacts_per_day * args.scale),
           "tickets_per_day": round(args.tickets_per_day * args.scale)}
    command = "python -m bench.memory " + shlex.join(argv if argv is not None else sys.argv[1:])
    say(f"site: {cfg['queues']:,} queues, {cfg['agents']:,} agents, {cfg['contacts_per_day']:,} contacts/day, "
        f"{cfg['tickets_per_day']:,} tickets/day over {args.days} days; {args.partitions} partitions"
        f"{'; tracemalloc on' if args.tracemalloc else ''}")
    code = code_identity()
    ctx = multiprocessing.get_context("spawn")
    channel = ctx.Queue(maxsize=16)
    generator = ctx.Process(target=generator_main, args=(cfg, channel), name="bench-memory-generator", daemon=True)
    generator.start()
    gcw = GcWatch()
    try:
        message = channel.get(timeout=120)
        if message[0] == "error":
            raise RuntimeError(f"generator failed: {message[1]}")
        _, site_stats, queues = message
        settings = build_settings(queues)
        traced = args.tracemalloc
        gc.collect()
        run: dict[str, Any] = {"rss_before": rss(), "started": time.monotonic(), "feed_s": 0.0}
        if traced:
            tracemalloc.start()
        run["traced_baseline"] = tracemalloc.get_traced_memory()[0] if traced else 0
        worker = Worker(settings, args.partitions, args.batch)
        rows: list[dict] = []
        last_progress = time.monotonic()
        sim_s = 0.0
        generator_stats = None
        while generator_stats is None:
            message = channel.get(timeout=600)
            kind = message[0]
            if kind == "events":
                _, sim_s, chunk, _ = message
                t = time.perf_counter()
                worker.feed(chunk)
                run["feed_s"] += time.perf_counter() - t
                if time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                    last_progress = time.monotonic()
                    say(f"  {START + timedelta(seconds=sim_s):%a %H:%M} (day {sim_s / DAY_S:.2f} of {args.days}): "
                        f"{worker.events:,} events, {worker.events / run['feed_s']:,.0f}/s, "
                        f"{sum(len(s.records) for s in worker.states):,} records, RSS {rss() / MIB:,.0f} MiB")
            elif kind == "day":
                _, day, at_s = message
                rows.append(checkpoint(worker, f"end of day {day}", at_s, args, run, gcw, traced))
            elif kind == "end":
                generator_stats = message[1]
            elif kind == "error":
                raise RuntimeError(f"generator failed: {message[1]}")
        generator.join(timeout=30)
        if not rows or rows[-1]["sim_days"] < args.days - 1e-6:
            # a short tail after the last midnight is measured without the (slow) rebuild
            tail = bool(rows) and args.days - rows[-1]["sim_days"] < 0.25
            rows.append(checkpoint(worker, f"end ({args.days} d)", args.days * DAY_S, args, run, gcw, traced,
                                   with_rebuild=not tail))
        untraced = None
        if traced:
            tracemalloc.stop()
            say("timing scrape and rebuild again without tracemalloc ...")
            untraced = {"scrape": scrape(worker.states, settings, args.scrape_repeat, False),
                        "rebuild": rebuild(worker, 0, False)}
        report = {
            "benchmark": "memory", "command": command, "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": {**cfg, "scale": args.scale, "partitions": args.partitions, "batch": args.batch,
                       "tracemalloc": traced, "timezone": "UTC", "start": START.isoformat(), "sample": args.sample},
            "code": code, "machine": machine_facts(), "generator": generator_stats,
            "feed": {"events": worker.events, "seconds": round(run["feed_s"], 1),
                     "events_per_s": round(worker.events / run["feed_s"]) if run["feed_s"] else 0,
                     "ingest_us_per_event": round(worker.ingest_s / worker.events * 1e6, 1) if worker.events else 0,
                     "engine_us_per_event": round(worker.engine_s / worker.events * 1e6, 1) if worker.events else 0,
                     "input_bytes": worker.input_bytes, "internal_bytes": worker.internal_bytes},
            "rss_before_bytes": run["rss_before"], "rss_after_bytes": rss(), "max_rss_bytes": max_rss(),
            "checkpoints": rows, "untraced": untraced, "wall_s": round(time.monotonic() - _T0, 1),
        }
    finally:
        gcw.close()
        if generator.is_alive():
            generator.terminate()
            generator.join(timeout=10)
    out = Path(args.out) if args.out else RESULTS / f"memory-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print("\n" + text_report(report) + f"\n\nreproduce: {command}\nreport: {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
