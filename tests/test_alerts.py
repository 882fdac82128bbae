"""SLA alerts, pure (streams.alert_rules, streams.alerts and their use by the queue owner and the
partition state), with explicit event times: raise duration, minimum volume, hysteresis, resolve,
idempotent keys, restart without a second `firing`, per-contact and per-ticket alerts by timers, and
configuration errors that name the rule and the field."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from models.events import EVENT_ADAPTER
from streams.alert_rules import DEFAULT_RULES, PER_ENTITY, AlertRule
from streams.alerts import Reading, step
from streams.config import ConfigError, load_settings
from streams.kpi.queues import QueueRules
from streams.kpi.windows import SiteClock
from streams.partition import PartitionConfig, PartitionState
from streams.snapshots import QUEUE_KPIS, merge, partition_partials, queue_alerts

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)   # a Monday morning, site time UTC
CONTEXT = {"customer_hash_key": b"test-key"}


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


# -- one rule, step by step -------------------------------------------------------------------------

SL = AlertRule(kpi="service_level", comparison="<", raise_threshold=0.8, clear_threshold=0.85, for_s=60, min_volume=10)


def run(rule: AlertRule, readings: list[tuple[int, float | None, int]]) -> list[tuple[int, str, int]]:
    """(at s, value, volume) -> [(at s, change, started at s)]."""
    state, out = None, []
    for at_s, value, volume in readings:
        before = state
        state, change = step(state, rule, Reading(value, volume, 0.8, 0.85), at_s * 1000)
        if change:
            out.append((at_s, change, (state or before)[0] // 1000))
    return out


def test_fires_after_the_raise_duration_and_resolves_only_at_the_clear_threshold():
    changes = run(SL, [(0, 0.9, 50), (10, 0.7, 50), (40, 0.6, 50), (69, 0.7, 50), (70, 0.7, 50),
                       (80, 0.82, 50), (90, 0.849, 50), (100, 0.85, 50), (110, 0.7, 50)])
    # below 0.8 from 10 s; fires at 70 s (60 s later); 0.82 and 0.849 are between raise and clear:
    # still firing; resolves at 0.85; a new breach starts a new pending period
    assert changes == [(70, "firing", 10), (100, "resolved", 10)]


def test_a_breach_that_does_not_last_the_raise_duration_never_fires():
    assert run(SL, [(0, 0.5, 50), (30, 0.5, 50), (59, 0.5, 50), (60, 0.95, 50), (100, 0.5, 50), (150, 0.5, 50)]) == []


def test_below_minimum_volume_nothing_fires_and_a_firing_alert_resolves_when_volume_goes():
    assert run(SL, [(0, 0.0, 2), (100, 0.0, 9), (500, 0.5, 3)]) == []   # two calls at night
    assert run(SL, [(0, 0.5, 20), (60, 0.5, 20), (120, 0.5, 4)]) == [(60, "firing", 0), (120, "resolved", 0)]


def test_a_kpi_without_value_resolves_a_firing_alert():
    assert run(SL, [(0, 0.5, 20), (60, 0.5, 20), (90, None, 20)]) == [(60, "firing", 0), (90, "resolved", 0)]


# -- configuration ----------------------------------------------------------------------------------

def test_every_default_rule_is_valid_and_resolvable():
    for name, rule in DEFAULT_RULES.items():
        raise_, clear = rule.thresholds(0.8 if rule.kpi.value == "service_level" else 20.0)
        assert not rule.breached(clear, raise_) or raise_ == clear, name   # clearing never re-raises


@pytest.mark.parametrize("body, field", [
    ('kpi = "service_level"\ncomparison = "<"\nraise_threshold = 0.8\nclear_threshold = 0.7', "clear_threshold"),
    ('kpi = "abandon_rate"\ncomparison = ">"\nraise_threshold = "target"', "raise_threshold"),
    ('kpi = "service_level"\ncomparison = "=="\nraise_threshold = 0.8', "comparison"),
    ('kpi = "nps"\ncomparison = "<"\nraise_threshold = 0.8', "kpi"),
    ('kpi = "service_level"\ncomparison = "<"\nraise_threshold = 0.8\nfor_s = -1', "for_s"),
])
def test_an_invalid_rule_fails_at_start_naming_the_rule_and_the_field(tmp_path, body, field):
    config = tmp_path / "site.toml"
    config.write_text(f"[alerts.rules.sales_sl]\n{body}\n")
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    assert "alerts.rules.sales_sl" in str(error.value) and field in str(error.value)


def test_configured_rules_replace_and_switch_off_defaults(tmp_path):
    config = tmp_path / "site.toml"
    config.write_text('[alerts.rules.abandon_rate_high]\nenabled = false\nkpi = "abandon_rate"\ncomparison = ">"\n'
                      'raise_threshold = 0.1\n[alerts.rules.sales_sl]\nkpi = "service_level"\ncomparison = "<"\n'
                      'raise_threshold = "target-0.1"\nqueue = "sales*"\n')
    active = load_settings(config).alerts.active()
    assert "abandon_rate_high" not in active and "service_level_below_target" in active
    rule = active["sales_sl"]
    assert rule.thresholds(0.8) == pytest.approx((0.7, 0.7))
    assert rule.covers("sales_de", "voice") and not rule.covers("support", "voice")


# -- the queue owner: rules on the merged figures ---------------------------------------------------

def event(kind: str, at: datetime, n: int, **fields) -> object:
    body = {"event_id": f"e-{kind}-{n}-{ms(at)}", "event_type": kind, "occurred_at": at.isoformat(),
            "source": "test", **fields}
    return EVENT_ADAPTER.validate_json(orjson.dumps(body), context=CONTEXT)


def contact(n: int, queue: str, enqueued: datetime, wait_s: float, answered: bool = True) -> list:
    cid = f"c-{n}"
    out = [event("contact.offered", enqueued, n, contact_id=cid, channel="voice"),
           event("contact.enqueued", enqueued, n, contact_id=cid, channel="voice", queue=queue)]
    end = enqueued + timedelta(seconds=wait_s)
    if answered:
        out.append(event("contact.answered", end, n, contact_id=cid, channel="voice", queue=queue, agent_id="a-1"))
    else:
        out.append(event("contact.abandoned", end, n, contact_id=cid, channel="voice", queue=queue))
    return out


def config(**extra) -> PartitionConfig:
    settings = load_settings()
    return PartitionConfig(SiteClock("UTC", 15), functools.cache(lambda q, c: QueueRules.of(settings.queue(q, c))),
                           **extra)


class QueueOwner:
    """One partition feeding its partials to the queue owner, the record going through JSON as it does
    through the queue-snapshot table (a restart is a new owner with the restored record)."""

    def __init__(self, monkeypatch) -> None:
        monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
        self.settings = load_settings()
        self.state = PartitionState(config())
        self.record: bytes | None = None
        self.rules = {name: rule for name, rule in self.settings.alerts.active().items() if rule.kpi in QUEUE_KPIS}

    def feed(self, events) -> list:
        for e in events:
            self.state.apply(e)
        self.state.advance()
        fired = []
        clock = self.state.config.clock
        for queue, partial in partition_partials(self.state).items():
            record = merge(orjson.loads(self.record) if self.record else None, 0, partial, clock)
            fired += queue_alerts(record, queue, self.settings, clock, self.rules)
            self.record = orjson.dumps(record)
        return fired


def test_service_level_falls_fires_once_survives_a_restart_and_resolves(monkeypatch):
    owner = QueueOwner(monkeypatch)
    n = 0
    fired = []
    # 09:00-09:05: 20 contacts answered within 10 s (voice threshold 20 s): SL 100 %
    for i in range(20):
        n += 1
        fired += owner.feed(contact(n, "sales", T0 + timedelta(seconds=15 * i), 10))
    assert fired == []
    # 09:05-09:10: staffing drop, 30 contacts wait 60 s each: SL falls below the 80 % target
    for i in range(30):
        n += 1
        fired += owner.feed(contact(n, "sales", T0 + timedelta(minutes=5, seconds=10 * i), 60))
    firing = [a for a in fired if a.rule == "service_level_below_target"]
    assert [a.status for a in firing] == ["firing"]
    alert = firing[0]
    assert alert.scope.queue == "sales" and alert.scope.channel == "voice" and alert.severity == "critical"
    assert alert.value < 0.8 and alert.raise_threshold == 0.8 and alert.clear_threshold == pytest.approx(0.82)
    assert alert.at_ms - alert.started_at_ms >= 60_000 and alert.window == "rolling_15m"
    assert "Service level of sales (voice)" in alert.summary and alert.key.endswith(str(alert.started_at_ms))
    # a restart: a new worker state from the same events, the record restored from the table
    restarted = QueueOwner(monkeypatch)
    restarted.record = owner.record
    restarted.state = owner.state
    more = []
    for i in range(5):   # still bad: no second firing
        n += 1
        more += restarted.feed(contact(n, "sales", T0 + timedelta(minutes=10, seconds=10 * i), 60))
    assert [a for a in more if a.rule == "service_level_below_target"] == []
    # staff back: quick answers until the rolling 15 min SL is over 82 %
    for i in range(200):
        n += 1
        more += restarted.feed(contact(n, "sales", T0 + timedelta(minutes=11, seconds=5 * i), 5))
    resolved = [a for a in more if a.rule == "service_level_below_target"]
    assert [a.status for a in resolved] == ["resolved"] and resolved[0].key == alert.key
    assert resolved[0].value >= 0.82


def test_a_quiet_queue_at_night_raises_nothing(monkeypatch):
    owner = QueueOwner(monkeypatch)
    night = T0.replace(hour=2)
    fired = owner.feed(contact(1, "sales", night, 600) + contact(2, "sales", night + timedelta(minutes=1), 900,
                                                                answered=False))
    fired += owner.feed([event("agent.state_changed", night + timedelta(minutes=30), 9, agent_id="a-9",
                               state="offline")])
    assert [a for a in fired if a.kpi in ("service_level", "abandon_rate", "asa_seconds")] == []


# -- per contact and per ticket: timers in event time ------------------------------------------------

def entity_state() -> PartitionState:
    settings = load_settings()
    rules = {name: rule for name, rule in settings.alerts.active().items() if rule.kpi in PER_ENTITY}
    rules["long_wait"] = AlertRule(kpi="contact_wait_seconds", comparison=">", raise_threshold=120, for_s=0)
    return PartitionState(config(entity_alert_rules=rules, site="test-site"))


def tick(state: PartitionState, at: datetime, n: int) -> None:
    """Another entity's event: time passes on the partition."""
    state.apply(event("agent.state_changed", at, n, agent_id=f"clock-{n}", state="available"))
    state.advance()


def test_a_contact_waiting_too_long_fires_with_its_id_and_resolves_when_answered(monkeypatch):
    monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
    state = entity_state()
    enqueued = T0
    for e in contact(1, "billing", enqueued, 0)[:2]:   # offered and enqueued, not answered
        state.apply(e)
    state.advance()
    tick(state, enqueued + timedelta(seconds=119), 1)
    assert state.take_alerts() == []
    tick(state, enqueued + timedelta(seconds=125), 2)
    (alert,) = state.take_alerts()
    assert (alert.status, alert.rule, alert.scope.contact_id, alert.scope.queue) == ("firing", "long_wait", "c-1", "billing")
    assert alert.started_at_ms == ms(enqueued) + 120_000 and alert.value == pytest.approx(125)
    assert "+49" not in alert.model_dump_json() and alert.site == "test-site"
    # the record keeps the state: rebuilt from its changelog value, the partition does not fire again
    changed, _ = state.take_dirty()
    rebuilt = PartitionState.rebuild(state.config, changed.items())
    tick(rebuilt, enqueued + timedelta(seconds=200), 3)
    assert rebuilt.take_alerts() == []
    rebuilt.apply(event("contact.answered", enqueued + timedelta(seconds=210), 1, contact_id="c-1", channel="voice",
                        queue="billing", agent_id="a-1"))
    rebuilt.advance()
    (resolved,) = rebuilt.take_alerts()
    assert resolved.status == "resolved" and resolved.key == alert.key


def test_a_ticket_past_its_first_response_due_fires_at_the_due_time_and_resolves_on_the_reply(monkeypatch):
    monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
    state = entity_state()
    state.apply(event("ticket.created", T0, 1, ticket_id="t-7", priority="urgent", queue="email_support",
                      customer_ref="jane@example.com"))
    state.advance()
    due_s = state.config.ticket_rules.targets["urgent"][0] / 1e6
    tick(state, T0 + timedelta(seconds=due_s - 1), 1)
    assert [a.rule for a in state.take_alerts()] == []
    tick(state, T0 + timedelta(seconds=due_s + 1), 2)
    (alert,) = [a for a in state.take_alerts() if a.rule == "ticket_first_response_breached"]
    assert alert.scope.ticket_id == "t-7" and alert.scope.priority == "urgent" and alert.status == "firing"
    assert "jane" not in alert.model_dump_json()
    state.apply(event("ticket.agent_replied", T0 + timedelta(seconds=due_s + 30), 1, ticket_id="t-7", agent_id="a-1"))
    state.advance()
    (resolved,) = [a for a in state.take_alerts() if a.rule == "ticket_first_response_breached"]
    assert resolved.status == "resolved" and resolved.key == alert.key


def test_ticket_rules_of_the_queue_owner_at_risk_and_breach_counts(monkeypatch):
    """tickets_at_risk (default rule) fires for the queue and priority when a ticket's first-response
    due comes within the warning lead and resolves with the reply; a breach count over rolling 60 min
    fires once the due has passed."""
    owner = QueueOwner(monkeypatch)
    owner.rules["late_replies"] = AlertRule(kpi="ticket_first_response_breaches", comparison=">", raise_threshold=0,
                                            window="rolling_60m", for_s=0, priority="urgent")
    rules = owner.state.config.ticket_rules
    due_s = rules.targets["urgent"][0] / 1e6
    lead_s = rules.warning_lead_us / 1e6
    fired = owner.feed([event("ticket.created", T0, 1, ticket_id="t-1", priority="urgent", queue="email_support")])
    assert fired == []
    fired = owner.feed([event("agent.state_changed", T0 + timedelta(seconds=due_s - lead_s / 2), 2, agent_id="x",
                              state="available")])
    (risk,) = fired
    assert (risk.rule, risk.status, risk.scope.queue, risk.scope.priority, risk.value) == \
        ("tickets_at_risk", "firing", "email_support", "urgent", 1.0)
    fired = owner.feed([event("agent.state_changed", T0 + timedelta(seconds=due_s + 1), 3, agent_id="x",
                              state="available")])
    assert {(a.rule, a.status) for a in fired} == {("late_replies", "firing"), ("tickets_at_risk", "resolved")}


def test_a_configured_summary_is_used_for_both_events():
    from models.alerts import AlertScope
    from streams.alerts import Evaluator

    rule = SL.model_copy(update={"summary": "Sales is understaffed", "for_s": 0})
    evaluator = Evaluator({}, "site")
    scope = AlertScope(queue="sales", channel="voice")
    evaluator.observe("sales_sl", rule, scope, Reading(0.5, 20, 0.8, 0.85), 1000)
    evaluator.observe("sales_sl", rule, scope, Reading(0.9, 20, 0.8, 0.85), 2000)
    assert [e.summary for e in evaluator.events] == ["Sales is understaffed", "Resolved: Sales is understaffed"]


def test_a_firing_contact_alert_resolves_when_retention_drops_the_contact(monkeypatch):
    """A contact still waiting when retention drops its record (its events are older than the day
    before the watermark's): the alert must not fire for ever on the topic."""
    monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
    state = entity_state()
    for e in contact(1, "billing", T0, 0)[:2]:
        state.apply(e)
    state.advance()
    tick(state, T0 + timedelta(seconds=300), 1)
    assert [a.status for a in state.take_alerts()] == ["firing"]
    tick(state, T0 + timedelta(days=2), 2)
    (resolved,) = state.take_alerts()
    assert resolved.status == "resolved" and resolved.scope.contact_id == "c-1" and "contact:c-1" not in state.records
