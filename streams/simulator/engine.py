"""The discrete-event simulation: a seeded contact center run in event time.

Everything is driven by one heap of timed actions and one seeded `random.Random`; no wall clock,
no I/O, no global random state, so a (config) always yields the same bytes. Events are serialised
with orjson the moment they happen and yielded in emission order (event time, non-decreasing).
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections import deque
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from random import Random
from zoneinfo import ZoneInfo

import orjson

from streams.simulator import center as C
from streams.simulator.base import SimConfig, SimMessage

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_INF = math.inf
_DUMPS = orjson.dumps


def dumps(obj: object) -> bytes:
    """Compact JSON as an exactly sized bytes object. (orjson 3.8 returns bytes that keep a ~4 KB
    allocation each; a million kept records would take 4 GB. The copy costs 0.2 us.)"""
    return memoryview(_DUMPS(obj)).tobytes()

REPEAT_WINDOW_S = 72 * 3600.0

_FIRST_NAMES = ("anna", "ben", "clara", "david", "emma", "felix", "greta", "hannah", "jonas", "lea",
                "lukas", "maria", "noah", "olivia", "paul", "sophie", "tim", "lena", "max", "mia",
                "leon", "laura", "elias", "julia", "finn", "sarah", "emil", "nora", "jan", "ida")
_LAST_NAMES = ("mueller", "schmidt", "schneider", "fischer", "weber", "meyer", "wagner", "becker",
               "schulz", "hoffmann", "koch", "richter", "klein", "wolf", "neumann", "schwarz",
               "zimmermann", "braun", "krueger", "hartmann", "lange", "werner", "krause", "lehmann")
_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")

DEFAULT_START = (2025, 1, 6, 8, 0)   # a Monday, 08:00 local


def default_start(tz_name: str) -> datetime:
    return datetime(*DEFAULT_START, tzinfo=ZoneInfo(tz_name))


def run_tag(config: SimConfig, start: datetime) -> str:
    """Short id prefix unique to what determines the valid stream (not duration, not bad_ratio), so
    two different runs into the same topics never share event, contact or ticket ids."""
    basis = repr((config.seed, start.astimezone(_UTC).isoformat(), config.timezone, float(config.rate),
                  float(config.staffing_factor)))
    return hashlib.blake2b(basis.encode(), digest_size=4).hexdigest()


# --- entities ---------------------------------------------------------------------------------

class _Customer:
    __slots__ = ("phone", "email")

    def __init__(self, phone: str, email: str) -> None:
        self.phone = phone
        self.email = email


class _Queue:
    __slots__ = ("spec", "name", "channel", "waiting", "idle", "is_chat")

    def __init__(self, spec: C.QueueSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.channel = spec.channel
        self.is_chat = spec.channel == "chat"
        self.waiting: deque[tuple[_Contact, int]] = deque()
        self.idle: list[tuple[int, float, int, _Agent, int]] = []   # (load, idle_since, seq, agent, token)


class _Agent:
    __slots__ = ("id", "key", "team", "queues", "qobjs", "chat_qobjs", "capacity", "cap_voice", "cap_chat",
                 "is_email", "logged_in", "shift", "nr_reason", "nr_token", "pending", "voice", "chats",
                 "talking", "in_acw", "idle_since", "token", "state", "reason", "ticket", "chat_penalty")

    def __init__(self, agent_id: str, team: str, queues: tuple[str, ...], capacity: dict[str, int]) -> None:
        self.id = agent_id
        self.key = agent_id.encode()
        self.team = team
        self.queues = list(queues)
        self.capacity = capacity
        self.cap_voice = capacity.get("voice", 0)
        self.cap_chat = capacity.get("chat", 0)
        self.is_email = "email" in capacity
        # blended voice+chat agents are the chat queue's overflow: chat-only agents come first
        self.chat_penalty = 3 if self.cap_voice and self.cap_chat else 0
        self.qobjs: list[_Queue] = []
        self.chat_qobjs: list[_Queue] = []
        self.logged_in = False
        self.shift = -1
        self.nr_reason: str | None = None
        self.nr_token = 0
        self.pending: tuple | None = None
        self.voice = 0            # voice/callback slots in use (answer .. ACW done)
        self.chats = 0            # chat slots in use
        self.talking = 0          # contacts in conversation
        self.in_acw = 0           # contacts in after-contact work
        self.idle_since = 0.0
        self.token = 0
        self.state = "offline"
        self.reason: str | None = None
        self.ticket: _Ticket | None = None


class _Contact:
    __slots__ = ("id", "key", "channel", "topic", "source", "customer", "ref", "queue", "seg", "waiting",
                 "enq_t", "deadline", "wait_total", "agent", "plan", "step", "transfers", "callback",
                 "patient_factor")

    def __init__(self, cid: str, channel: str, customer: _Customer) -> None:
        self.id = cid
        self.key = cid.encode()
        self.channel = channel
        self.topic = "chat" if channel == "chat" else "telephony"
        self.source = "chat" if channel == "chat" else "acd-1"
        self.customer = customer
        self.ref = customer.email if channel == "chat" else customer.phone
        self.queue: _Queue | None = None
        self.seg = 0
        self.waiting = False
        self.enq_t = 0.0
        self.deadline = _INF      # absolute patience deadline
        self.wait_total = 0.0
        self.agent: _Agent | None = None
        self.plan: list[tuple[float, str]] | None = None
        self.step = 0
        self.transfers = 0
        self.callback = channel == "callback"
        self.patient_factor = 1.0


class _Ticket:
    __slots__ = ("id", "key", "priority", "customer", "status", "assignee", "tok", "replies")

    def __init__(self, tid: str, priority: str, customer: _Customer) -> None:
        self.id = tid
        self.key = tid.encode()
        self.priority = priority
        self.customer = customer
        self.status = "new"
        self.assignee: _Agent | None = None
        self.tok = 0
        self.replies = 0


# --- the simulation ---------------------------------------------------------------------------

class Simulation:
    """One run. Iterate `messages()` for the valid stream."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.tz = ZoneInfo(config.timezone)
        start = config.start if config.start is not None else default_start(config.timezone)
        start_utc = start.astimezone(_UTC)
        start_utc = start_utc.replace(microsecond=start_utc.microsecond // 1000 * 1000)
        self.start_utc = start_utc
        delta = start_utc - _EPOCH
        self.start_ms = delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
        self.start_s = self.start_ms / 1000.0
        self.tag = run_tag(config, start_utc)
        self.end = float(config.duration_s)
        self.rng = Random(config.seed)
        self.rate = float(config.rate)
        self.zulu = config.timezone in ("UTC", "Etc/UTC", "Z", "Etc/Zulu", "Zulu")

        self.now = 0.0
        self._heap: list[tuple[float, int, object, object]] = []
        self._seq = 0
        self._out: list[SimMessage] = []
        self._n_events = 0
        self._n_contacts = 0
        self._n_tickets = 0
        self._n_customers = 0
        # timestamp caches
        self._ts_sec = -1
        self._ts_prefix = ""
        self._ts_suffix = ""
        self._at_ms = -1
        self._at: datetime = start_utc
        self._ts_ms = -1
        self._ts = ""

        self.queues = {spec.name: _Queue(spec) for spec in C.QUEUES}
        self.contact_queues = [self.queues[q.name] for q in C.CONTACT_QUEUES]
        self._queue_cum: list[float] = []
        total = 0.0
        for q in C.CONTACT_QUEUES:
            total += q.share
            self._queue_cum.append(total)
        self._queue_total = total
        self.teams: dict[str, list[_Agent]] = {t.name: [] for t in C.TEAMS}
        self._n_agents = 0
        self._ticket_tasks: list[tuple[float, int, _Ticket, int]] = []
        self._idle_email: deque[tuple[_Agent, int]] = deque()
        self._plans: dict[int, dict[str, list[int]]] = {}

    # --- infrastructure -------------------------------------------------------------------------

    def _at_time(self, t: float, fn, arg=None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn, arg))

    def _after(self, delay: float, fn, arg=None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self.now + delay, self._seq, fn, arg))

    def _stamp(self) -> tuple[str, str]:
        """(event_id, occurred_at) for an event happening now."""
        self._n_events += 1
        ms = self.start_ms + int(self.now * 1000.0)
        if ms != self._ts_ms:
            sec, frac = divmod(ms, 1000)
            if sec != self._ts_sec:
                self._ts_sec = sec
                local = datetime.fromtimestamp(sec, self.tz)
                self._ts_prefix = local.strftime("%Y-%m-%dT%H:%M:%S")
                if self.zulu:
                    self._ts_suffix = "Z"
                else:
                    off = local.utcoffset()
                    minutes = int(off.total_seconds()) // 60 if off is not None else 0
                    sign = "+" if minutes >= 0 else "-"
                    minutes = abs(minutes)
                    self._ts_suffix = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
            self._ts_ms = ms
            self._ts = f"{self._ts_prefix}.{frac:03d}{self._ts_suffix}"
        return f"{self.tag}-{self._n_events:x}", self._ts

    def _emit(self, topic: str, key: bytes, event: dict) -> None:
        ms = self._ts_ms
        if ms != self._at_ms:
            self._at_ms = ms
            self._at = _EPOCH + timedelta(milliseconds=ms)
        self._out.append(SimMessage(topic, key, memoryview(_DUMPS(event)).tobytes(), self._at, "valid"))

    def messages(self) -> Iterator[SimMessage]:
        self._setup()
        heap = self._heap
        pop = heapq.heappop
        out = self._out
        end = self.end
        while heap:
            t, _, fn, arg = pop(heap)
            if t > end:
                break
            self.now = t
            fn(arg)
            if out:
                yield from out
                out.clear()

    def _lognorm(self, median: float, sigma: float) -> float:
        return median * math.exp(self.rng.gauss(0.0, sigma))

    def _local(self, t: float) -> datetime:
        return datetime.fromtimestamp(self.start_s + t, self.tz)

    def _t_of(self, local_wall: datetime) -> float:
        return (local_wall - self.start_utc).total_seconds()

    # --- set-up -------------------------------------------------------------------------------

    def _setup(self) -> None:
        first_day = self._local(0.0).date()
        self._plan_day(first_day - timedelta(days=1))
        self._plan_day(first_day)
        self._at_time(self._t_of(self._midnight(first_day + timedelta(days=1))), self._planner,
                      first_day + timedelta(days=1))
        self._next_contact_arrival(None)
        self._next_ticket_arrival(None)

    def _midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=self.tz)

    def _agent(self, team: C.TeamSpec, index: int) -> _Agent:
        agents = self.teams[team.name]
        while len(agents) <= index:
            queues, capacity = C.team_variant(team, len(agents))
            self._n_agents += 1
            agent = _Agent(f"agent-{1000 + self._n_agents}", team.name, queues, capacity)
            for name in queues:
                q = self.queues[name]
                if q.channel in ("voice", "chat"):
                    agent.qobjs.append(q)
                    if q.is_chat:
                        agent.chat_qobjs.append(q)
            agents.append(agent)
        return agents[index]

    def _plan_day(self, day: date) -> None:
        weekday = day.weekday()
        plan = self._plans.get(weekday)
        if plan is None:
            plan = self._plans[weekday] = C.plan_day(self.rate, weekday, self.config.staffing_factor)
        midnight = self._midnight(day)
        rng = self.rng
        shift_id = day.toordinal()
        for team in C.TEAMS:
            for index, (slot, slots) in enumerate(plan[team.name]):
                agent = self._agent(team, index)
                login = self._t_of(midnight + timedelta(minutes=30 * slot)) + rng.uniform(-240, 300)
                length = slots * 1800.0
                logout = login + length + rng.uniform(0, 360)
                if logout <= 0:
                    continue
                self._at_time(max(login, 0.0), self._login, (agent, shift_id))
                self._at_time(logout, self._logout, (agent, shift_id))
                breaks = [(login + 2 * 3600 + rng.uniform(-900, 900), "break", 900.0)]
                if length >= 6 * 3600:
                    breaks.append((login + length / 2 + rng.uniform(-1800, 1800), "lunch", 1800.0))
                if length >= 8 * 3600:
                    breaks.append((login + length - 2 * 3600 + rng.uniform(-900, 900), "break", 900.0))
                if rng.random() < 0.08:
                    breaks.append((login + rng.uniform(1800, length - 3600), "training", 2700.0))
                if rng.random() < 0.06:
                    breaks.append((login + rng.uniform(1800, length - 3600), "coaching", 1200.0))
                if rng.random() < 0.35:
                    breaks.append((login + rng.uniform(900, length - 900), "personal", rng.uniform(120, 420)))
                for at, reason, duration in breaks:
                    if at > 0:
                        self._at_time(at, self._break_start, (agent, shift_id, reason, duration))

    def _planner(self, day: date) -> None:
        self._plan_day(day)
        nxt = day + timedelta(days=1)
        self._at_time(self._t_of(self._midnight(nxt)), self._planner, nxt)

    # --- customers ----------------------------------------------------------------------------

    def _new_customer(self) -> _Customer:
        rng = self.rng
        self._n_customers += 1
        phone = f"+4930{rng.randrange(1_000_000, 99_999_999)}"
        first = _FIRST_NAMES[rng.randrange(len(_FIRST_NAMES))]
        last = _LAST_NAMES[rng.randrange(len(_LAST_NAMES))]
        email = f"{first}.{last}{rng.randrange(1, 1000)}@{_DOMAINS[rng.randrange(len(_DOMAINS))]}"
        return _Customer(phone, email)

    # --- arrivals -----------------------------------------------------------------------------

    def _profile(self, t: float) -> float:
        local = self._local(t)
        return C.MINUTE_PROFILE[local.hour * 60 + local.minute] * C.WEEKDAY_FACTOR[local.weekday()]

    def _next_contact_arrival(self, arrive: object) -> None:
        if arrive is not None:
            r = self.rng.random() * self._queue_total
            for q, cum in zip(self.contact_queues, self._queue_cum):
                if r < cum:
                    break
            self._new_contact(q, self._new_customer())
        lam = self.rate / 60.0
        rng = self.rng
        t = self.now
        while True:
            t += rng.expovariate(lam)
            if rng.random() < self._profile(t):
                break
        self._at_time(t, self._next_contact_arrival, True)

    def _next_ticket_arrival(self, arrive: object) -> None:
        rng = self.rng
        if arrive is not None:
            r = rng.random()
            for priority, weight in C.TICKET_PRIORITIES:
                r -= weight
                if r < 0:
                    break
            self._new_ticket(self._new_customer(), priority)
        lam = self.rate * C.TICKET_SHARE / 60.0
        t = self.now
        while True:
            t += rng.expovariate(lam)
            if rng.random() < C.ticket_profile(self._profile(t)):
                break
        self._at_time(t, self._next_ticket_arrival, True)

    def _repeat_arrival(self, arg: tuple[_Customer, str]) -> None:
        customer, queue_name = arg
        self._new_contact(self.queues[queue_name], customer)

    # --- contacts -----------------------------------------------------------------------------

    def _new_contact(self, q: _Queue, customer: _Customer, channel: str | None = None) -> _Contact:
        self._n_contacts += 1
        c = _Contact(f"c-{self.tag}-{self._n_contacts:06d}", channel or q.channel, customer)
        eid, ts = self._stamp()
        self._emit(c.topic, c.key, {"event_id": eid, "event_type": "contact.offered", "occurred_at": ts,
                                    "source": c.source, "contact_id": c.id, "channel": c.channel,
                                    "customer_ref": c.ref})
        rng = self.rng
        if c.callback:
            self._enqueue((c, q))
        elif c.channel == "chat":
            self._after(rng.uniform(1.0, 4.0), self._enqueue, (c, q))
        elif rng.random() < C.IVR_SELF_SERVICE_P:
            self._after(rng.uniform(30.0, 120.0), self._end_unanswered, c)
        else:
            self._after(rng.uniform(8.0, 35.0), self._enqueue, (c, q))
        return c

    def _enqueue(self, arg: tuple[_Contact, _Queue]) -> None:
        c, q = arg
        rng = self.rng
        now = self.now
        c.queue = q
        c.seg += 1
        c.enq_t = now
        eid, ts = self._stamp()
        self._emit(c.topic, c.key, {"event_id": eid, "event_type": "contact.enqueued", "occurred_at": ts,
                                    "source": c.source, "contact_id": c.id, "channel": c.channel,
                                    "queue": q.name, "customer_ref": c.ref})
        if c.channel == "chat" and c.seg == 1:
            eid, ts = self._stamp()
            self._emit("chat", c.key, {"event_id": eid, "event_type": "chat.message", "occurred_at": ts,
                                       "source": "chat", "contact_id": c.id, "channel": "chat",
                                       "author": "customer"})
        # patience: set on the first queue, renewed (longer) after a transfer
        if c.callback:
            c.deadline = _INF
        elif c.seg == 1 or c.patient_factor > 1.0:
            spec = q.spec
            if rng.random() < spec.short_abandon_p:
                patience = rng.uniform(1.0, 4.9)
            else:
                patience = self._lognorm(spec.patience_median, spec.patience_sigma) * c.patient_factor
            c.deadline = now + patience
            c.patient_factor = 1.0
        agent = self._pick_agent(q)
        if agent is not None:
            self._answer(c, q, agent)
            self._register(agent)
            self._sync_state(agent)
            return
        c.waiting = True
        q.waiting.append((c, c.seg))
        timer = c.deadline
        spec = q.spec
        if spec.max_wait is not None and not c.callback:
            timer = min(timer, now + spec.max_wait)
        if timer < _INF:
            self._at_time(max(timer, now), self._wait_timer, (c, c.seg))

    def _pick_agent(self, q: _Queue) -> _Agent | None:
        idle = q.idle
        while idle:
            load, _, _, agent, token = idle[0]
            heapq.heappop(idle)
            if token == agent.token:
                return agent
        return None

    def _wait_timer(self, arg: tuple[_Contact, int]) -> None:
        c, seg = arg
        if not c.waiting or c.seg != seg:
            return
        q = c.queue
        spec = q.spec
        now = self.now
        c.waiting = False
        c.wait_total += now - c.enq_t
        if now >= c.deadline - 1e-9 or spec.flow_to is None:
            eid, ts = self._stamp()
            self._emit(c.topic, c.key, {"event_id": eid, "event_type": "contact.abandoned", "occurred_at": ts,
                                        "source": c.source, "contact_id": c.id, "channel": c.channel,
                                        "queue": q.name})
            self._contact_ended(c, None)
            # many who hang up try again soon
            if self.rng.random() < 0.45:
                self._schedule_repeat(c.customer, q.name, self._lognorm(600.0, 0.9))
            return
        dest = spec.flow_to
        eid, ts = self._stamp()
        self._emit(c.topic, c.key, {"event_id": eid, "event_type": "contact.flowed_out", "occurred_at": ts,
                                    "source": c.source, "contact_id": c.id, "channel": c.channel,
                                    "queue": q.name, "destination": dest})
        if dest.startswith("queue:"):
            self._enqueue((c, self.queues[dest[6:]]))
        elif dest == "voicemail":
            self._after(self.rng.uniform(15.0, 50.0), self._end_unanswered, c)
            if self.rng.random() < 0.3:
                self._schedule_repeat(c.customer, q.name, self._lognorm(3 * 3600.0, 1.0))
        elif dest == "callback":
            self._contact_ended(c, None)
            self._new_contact(q, c.customer, "callback")
        elif dest == "email":
            self._contact_ended(c, None)
            self._new_ticket(c.customer, "normal")
        else:  # pragma: no cover - configuration error
            raise ValueError(f"unknown flow destination {dest!r}")

    def _end_unanswered(self, c: _Contact) -> None:
        self._contact_ended(c, None)

    def _contact_ended(self, c: _Contact, agent: _Agent | None) -> None:
        eid, ts = self._stamp()
        event = {"event_id": eid, "event_type": "contact.ended", "occurred_at": ts, "source": c.source,
                 "contact_id": c.id, "channel": c.channel}
        if agent is not None:
            event["agent_id"] = agent.id
        self._emit(c.topic, c.key, event)

    def _answer(self, c: _Contact, q: _Queue, agent: _Agent) -> None:
        """Connect a contact to an agent; the caller re-registers the agent and syncs its state."""
        rng = self.rng
        now = self.now
        c.waiting = False
        c.wait_total += now - c.enq_t
        c.agent = agent
        eid, ts = self._stamp()
        self._emit(c.topic, c.key, {"event_id": eid, "event_type": "contact.answered", "occurred_at": ts,
                                    "source": c.source, "contact_id": c.id, "channel": c.channel,
                                    "queue": q.name, "agent_id": agent.id})
        agent.talking += 1
        agent.token += 1
        spec = q.spec
        if c.channel == "chat":
            agent.chats += 1
            slow = 1.0 + C.CHAT_CONCURRENCY_SLOWDOWN * (agent.chats - 1)
            t = now + rng.uniform(*C.CHAT_GREETING)
            plan = [(t, "agent")]
            for _ in range(rng.randint(*C.CHAT_EXCHANGES)):
                t += self._lognorm(*C.CHAT_CUSTOMER_DELAY)
                plan.append((t, "customer"))
                t += self._lognorm(*C.CHAT_AGENT_DELAY) * slow
                plan.append((t, "agent"))
            plan.append((t + rng.uniform(*C.CHAT_CLOSE), "end"))
            c.plan = plan
            c.step = 0
            self._at_time(plan[0][0], self._chat_step, c)
            return
        agent.voice += 1
        if c.callback and rng.random() < C.CALLBACK_NO_ANSWER_P:
            self._after(rng.uniform(20.0, 40.0), self._talk_end, c)
            c.plan = [(0.0, "no_answer")]
            return
        c.plan = None
        talk = self._lognorm(spec.talk_median, spec.talk_sigma)
        if spec.transfer_p and c.transfers == 0 and rng.random() < spec.transfer_p:
            self._after(talk * rng.uniform(0.2, 0.7), self._transfer, c)
            return
        if rng.random() < spec.hold_p:
            hold = self._lognorm(spec.hold_median, 0.6)
            self._after(talk * rng.uniform(0.2, 0.7), self._hold_start, (c, hold))
            talk += hold
        self._after(talk, self._talk_end, c)

    def _hold_start(self, arg: tuple[_Contact, float]) -> None:
        c, duration = arg
        eid, ts = self._stamp()
        self._emit(c.topic, c.key, {"event_id": eid, "event_type": "contact.hold_started", "occurred_at": ts,
                                    "source": c.source, "contact_id": c.id, "channel": c.channel,
                                    "agent_id": c.agent.id})
        self._after(duration, self._hold_end, c)

    def _hold_end(self, c: _Contact) -> None:
        eid, ts = self._stamp()
        self._emit(c.topic, c.key, {"event_id": eid, "event_type": "contact.hold_ended", "occurred_at": ts,
                                    "source": c.source, "contact_id": c.id, "channel": c.channel,
                                    "agent_id": c.agent.id})

    def _transfer(self, c: _Contact) -> None:
        agent = c.agent
        q = c.queue
        target = self.queues[q.spec.transfer_to]
        eid, ts = self._stamp()
        self._emit(c.topic, c.key, {"event_id": eid, "event_type": "contact.transferred", "occurred_at": ts,
                                    "source": c.source, "contact_id": c.id, "channel": c.channel,
                                    "agent_id": agent.id, "queue": q.name, "to_queue": target.name})
        c.transfers += 1
        c.agent = None
        c.patient_factor = 2.0      # transferred callers wait longer before giving up
        self._enqueue((c, target))
        # blind transfer: the first agent is free at once (no ACW for its part)
        agent.talking -= 1
        agent.voice -= 1
        self._slot_freed(agent)

    def _chat_step(self, c: _Contact) -> None:
        t, what = c.plan[c.step]
        c.step += 1
        if what == "end":
            self._talk_end(c)
            return
        agent = c.agent
        eid, ts = self._stamp()
        event = {"event_id": eid, "event_type": "chat.message", "occurred_at": ts, "source": "chat",
                 "contact_id": c.id, "channel": "chat", "author": what}
        if what == "agent":
            event["agent_id"] = agent.id
        self._emit("chat", c.key, event)
        self._at_time(c.plan[c.step][0], self._chat_step, c)

    def _talk_end(self, c: _Contact) -> None:
        agent = c.agent
        self._contact_ended(c, agent)
        agent.talking -= 1
        agent.in_acw += 1
        spec = c.queue.spec
        rng = self.rng
        no_answer = c.plan is not None and c.plan[0][1] == "no_answer"
        self._after(self._lognorm(spec.acw_median, spec.acw_sigma) if not no_answer else rng.uniform(5, 15),
                    self._acw_done, (c, no_answer))
        self._sync_state(agent)

    def _acw_done(self, arg: tuple[_Contact, bool]) -> None:
        c, no_answer = arg
        agent = c.agent
        spec = c.queue.spec
        rng = self.rng
        if no_answer:
            disposition, resolved = "no_answer", False
        else:
            r = rng.random() * sum(w for _, _, w in spec.dispositions)
            for disposition, resolved, weight in spec.dispositions:
                r -= weight
                if r < 0:
                    break
        eid, ts = self._stamp()
        self._emit(c.topic, c.key, {"event_id": eid, "event_type": "contact.acw_completed", "occurred_at": ts,
                                    "source": c.source, "contact_id": c.id, "channel": c.channel,
                                    "agent_id": agent.id, "disposition": disposition, "resolved": resolved})
        agent.in_acw -= 1
        if c.channel == "chat":
            agent.chats -= 1
        else:
            agent.voice -= 1
        # quality: a survey now and then; unresolved customers come back more often
        if not no_answer:
            if rng.random() < (0.18 if c.channel != "chat" else 0.25):
                kind = "nps" if rng.random() < (0.2 if c.channel != "chat" else 0.0) else "csat"
                score = self._score(kind, c.wait_total, resolved)
                self._after(rng.uniform(20.0, 300.0), self._survey,
                            ("contact_id", c.id, c.key, kind, score, c.queue.name, agent.id))
            if rng.random() < (0.07 if resolved else 0.45):
                self._schedule_repeat(c.customer, c.queue.name, self._lognorm(3 * 3600.0, 1.2))
        self._slot_freed(agent)

    def _schedule_repeat(self, customer: _Customer, queue_name: str, delay: float) -> None:
        if delay < REPEAT_WINDOW_S - 60:
            self._after(delay, self._repeat_arrival, (customer, queue_name))

    def _score(self, kind: str, wait: float, resolved: bool) -> int:
        rng = self.rng
        if kind == "csat":
            mean = 4.5 - min(2.2, wait / 120.0) - (0.0 if resolved else 1.1)
            return min(5, max(1, round(rng.gauss(mean, 0.8))))
        mean = 8.6 - min(4.5, wait / 50.0) - (0.0 if resolved else 2.5)
        return min(10, max(0, round(rng.gauss(mean, 1.6))))

    def _survey(self, arg: tuple) -> None:
        field, entity_id, key, kind, score, queue, agent_id = arg
        eid, ts = self._stamp()
        event = {"event_id": eid, "event_type": "survey.responded", "occurred_at": ts, "source": "survey",
                 field: entity_id, "kind": kind, "score": score, "queue": queue}
        if agent_id is not None:
            event["agent_id"] = agent_id
        self._emit("survey", key, event)

    # --- agents -------------------------------------------------------------------------------

    def _register(self, a: _Agent) -> None:
        """Invalidate the agent's idle entries and, if it can take work, list it again."""
        a.token += 1
        if a.is_email or not a.logged_in or a.nr_reason is not None or a.pending is not None or a.voice:
            return
        token = a.token
        if a.chats == 0:
            for q in a.qobjs:
                self._seq += 1
                heapq.heappush(q.idle, (a.chat_penalty if q.is_chat else 0, a.idle_since, self._seq, a, token))
        elif a.chats < a.cap_chat:
            for q in a.chat_qobjs:
                self._seq += 1
                heapq.heappush(q.idle, (a.chats + a.chat_penalty, a.idle_since, self._seq, a, token))

    def _offer_work(self, a: _Agent) -> None:
        """Give a free agent the longest-waiting contacts of its queues, up to its capacity."""
        while a.logged_in and a.nr_reason is None and a.pending is None and not a.voice:
            if a.chats == 0:
                queues = a.qobjs
            elif a.chats < a.cap_chat:
                queues = a.chat_qobjs
            else:
                break
            best = None
            best_t = _INF
            for q in queues:
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
            self._answer(c, best, a)
        self._register(a)

    def _slot_freed(self, a: _Agent) -> None:
        if not a.voice and not a.chats:
            a.idle_since = self.now
            if a.pending is not None:
                self._apply_pending(a)
                self._sync_state(a)
                return
        if a.pending is None:
            self._offer_work(a)
        self._sync_state(a)

    def _busy(self, a: _Agent) -> bool:
        return bool(a.voice or a.chats or a.ticket is not None)

    def _apply_pending(self, a: _Agent) -> None:
        pending = a.pending
        a.pending = None
        if pending[0] == "off":
            a.logged_in = False
            a.nr_reason = None
            a.nr_token += 1
        else:
            _, reason, duration = pending
            a.nr_reason = reason
            a.nr_token += 1
            self._after(duration, self._break_end, (a, a.nr_token))
        self._register(a)

    def _sync_state(self, a: _Agent) -> None:
        if not a.logged_in:
            state, reason = "offline", None
        elif a.talking:
            state, reason = "on_contact", None
        elif a.in_acw:
            state, reason = "acw", None
        elif a.nr_reason is not None:
            state, reason = "not_ready", a.nr_reason
        else:
            state, reason = "available", None
        if state == a.state and reason == a.reason:
            return
        a.state = state
        a.reason = reason
        eid, ts = self._stamp()
        event = {"event_id": eid, "event_type": "agent.state_changed", "occurred_at": ts, "source": "acd-1",
                 "agent_id": a.id, "state": state}
        if reason is not None:
            event["reason"] = reason
        event["queues"] = a.queues
        event["capacity"] = a.capacity
        event["team"] = a.team
        self._emit("agent", a.key, event)

    def _login(self, arg: tuple[_Agent, int]) -> None:
        a, shift = arg
        a.shift = shift
        if a.logged_in:
            if a.pending is not None and a.pending[0] == "off":
                a.pending = None      # back-to-back shifts: stay logged in
                if not self._busy(a):
                    self._free(a)
            return
        a.logged_in = True
        a.nr_reason = None
        a.pending = None
        a.idle_since = self.now
        self._sync_state(a)
        self._free(a)

    def _free(self, a: _Agent) -> None:
        if a.is_email:
            self._ticket_offer(a)
        else:
            self._offer_work(a)
        self._sync_state(a)

    def _logout(self, arg: tuple[_Agent, int]) -> None:
        a, shift = arg
        if a.shift != shift or not a.logged_in:
            return
        if self._busy(a):
            a.pending = ("off",)
            self._register(a)
            return
        a.pending = ("off",)
        self._apply_pending(a)
        self._sync_state(a)

    def _break_start(self, arg: tuple[_Agent, int, str, float]) -> None:
        a, shift, reason, duration = arg
        if a.shift != shift or not a.logged_in or a.pending is not None or a.nr_reason is not None:
            return
        a.pending = ("nr", reason, duration)
        if self._busy(a):
            self._register(a)       # finish the current work first, take nothing new
            return
        self._apply_pending(a)
        self._sync_state(a)

    def _break_end(self, arg: tuple[_Agent, int]) -> None:
        a, token = arg
        if a.nr_token != token or a.nr_reason is None or not a.logged_in:
            return
        a.nr_reason = None
        a.idle_since = self.now
        self._sync_state(a)     # back to available before any contact is routed to it
        self._free(a)

    # --- tickets ------------------------------------------------------------------------------

    def _ticket_event(self, t: _Ticket, event_type: str, **fields) -> None:
        eid, ts = self._stamp()
        event = {"event_id": eid, "event_type": event_type, "occurred_at": ts, "source": "helpdesk",
                 "ticket_id": t.id}
        event.update(fields)
        self._emit("ticket", t.key, event)

    def _status(self, t: _Ticket, status: str) -> None:
        self._ticket_event(t, "ticket.status_changed", status=status, previous_status=t.status)
        t.status = status
        t.tok += 1

    def _new_ticket(self, customer: _Customer, priority: str) -> None:
        self._n_tickets += 1
        t = _Ticket(f"t-{self.tag}-{self._n_tickets:06d}", priority, customer)
        self._ticket_event(t, "ticket.created", priority=priority, queue="email_support", channel="email",
                           customer_ref=customer.email)
        self._push_task(t, C.TICKET_FIRST_RESPONSE_S[priority])

    def _push_task(self, t: _Ticket, due_in: float) -> None:
        t.tok += 1
        self._seq += 1
        heapq.heappush(self._ticket_tasks, (self.now + due_in, self._seq, t, t.tok))
        idle = self._idle_email
        while idle:
            a, token = idle.popleft()
            if token == a.token:
                self._ticket_offer(a)
                self._sync_state(a)
                break

    def _ticket_offer(self, a: _Agent) -> None:
        a.token += 1
        if not a.logged_in or a.nr_reason is not None or a.pending is not None or a.ticket is not None:
            return
        tasks = self._ticket_tasks
        while tasks:
            _, _, t, tok = heapq.heappop(tasks)
            if tok == t.tok:
                break
        else:
            self._idle_email.append((a, a.token))
            return
        a.ticket = t
        if t.assignee is not a:
            t.assignee = a
            self._ticket_event(t, "ticket.assigned", agent_id=a.id, queue="email_support")
        if t.status == "new":
            self._status(t, "open")
        self._after(self._lognorm(*C.TICKET_WORK), self._ticket_reply, (a, t))

    def _ticket_reply(self, arg: tuple[_Agent, _Ticket]) -> None:
        a, t = arg
        rng = self.rng
        self._ticket_event(t, "ticket.agent_replied", agent_id=a.id)
        t.replies += 1
        r = rng.random()
        if t.replies == 1:
            status = "solved" if r < 0.35 else "pending" if r < 0.9 else "on_hold"
        else:
            status = "solved" if r < 0.6 else "pending" if r < 0.95 else "on_hold"
        self._status(t, status)
        tok = t.tok
        if status == "pending":
            if rng.random() < 0.75:
                self._after(self._lognorm(3 * 3600.0, 1.0), self._ticket_customer_reply, (t, tok))
            else:
                self._after(48 * 3600.0, self._ticket_autosolve, (t, tok))
        elif status == "on_hold":
            self._after(self._lognorm(4 * 3600.0, 0.8), self._ticket_unhold, (t, tok))
        else:
            self._ticket_solved(t)
        a.ticket = None
        if a.pending is not None:
            self._apply_pending(a)
            self._sync_state(a)
        else:
            self._free(a)

    def _ticket_solved(self, t: _Ticket) -> None:
        rng = self.rng
        tok = t.tok
        self._after(72 * 3600.0, self._ticket_close, (t, tok))
        if rng.random() < 0.07:
            delay = self._lognorm(12 * 3600.0, 1.0)
            if delay < 70 * 3600.0:
                self._after(delay, self._ticket_reopen, (t, tok))
        if rng.random() < 0.2:
            kind = "nps" if rng.random() < 0.3 else "csat"
            score = self._score(kind, 0.0, True) if t.replies <= 2 else self._score(kind, 120.0, True)
            agent_id = t.assignee.id if t.assignee is not None else None
            self._after(self._lognorm(5400.0, 1.0), self._survey,
                        ("ticket_id", t.id, t.key, kind, score, "email_support", agent_id))

    def _ticket_customer_reply(self, arg: tuple[_Ticket, int]) -> None:
        t, tok = arg
        if t.tok != tok or t.status != "pending":
            return
        self._ticket_event(t, "ticket.customer_replied")
        self._status(t, "open")
        self._push_task(t, C.TICKET_NEXT_RESPONSE_S[t.priority])

    def _ticket_autosolve(self, arg: tuple[_Ticket, int]) -> None:
        t, tok = arg
        if t.tok != tok or t.status != "pending":
            return
        self._status(t, "solved")
        self._ticket_solved(t)

    def _ticket_unhold(self, arg: tuple[_Ticket, int]) -> None:
        t, tok = arg
        if t.tok != tok or t.status != "on_hold":
            return
        self._status(t, "open")
        self._push_task(t, C.TICKET_NEXT_RESPONSE_S[t.priority])

    def _ticket_reopen(self, arg: tuple[_Ticket, int]) -> None:
        t, tok = arg
        if t.tok != tok or t.status != "solved":
            return
        self._ticket_event(t, "ticket.customer_replied")
        self._ticket_event(t, "ticket.reopened")
        self._status(t, "open")
        self._push_task(t, C.TICKET_NEXT_RESPONSE_S[t.priority])

    def _ticket_close(self, arg: tuple[_Ticket, int]) -> None:
        t, tok = arg
        if t.tok != tok or t.status != "solved":
            return
        self._status(t, "closed")
