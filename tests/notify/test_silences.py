"""Silences and inhibition: the two muters, over JSON-only tables."""

import pytest

from stream.core.alerts import fingerprint
from stream.notify.inhibit import Inhibitor
from stream.notify.silences import Silence, SilenceStore
from stream.settings.notify import InhibitRule, SilenceSpec
from tests.notify.scenarios import JsonTable, alert, resolved

ACME = {"alertname": "spend_spike", "customer_id": "acme", "severity": "warning"}


def store_with(*silences: Silence) -> SilenceStore:
    store = SilenceStore(JsonTable())
    for silence in silences:
        store.add(silence)
    return store


def test_a_silence_is_pending_then_active_then_expired():
    s = Silence("s", ('customer_id="acme"',), 100.0, 200.0, "ana", "deploy")
    assert [s.state(t) for t in (99.0, 100.0, 199.9, 200.0)] == [
        "pending",
        "active",
        "active",
        "expired",
    ]


def test_a_silence_mutes_only_matching_alerts_while_active():
    store = store_with(
        Silence("a", ('customer_id="acme"', 'alertname=~"spend_.*"'), 100.0, 200.0, "ana", "x"),
        Silence("b", ('severity="warning"',), 150.0, 300.0, "bo", "y"),
    )
    assert store.mutes(ACME, 50.0) == []
    assert store.mutes(ACME, 120.0) == ["a"]
    assert store.mutes(ACME, 160.0) == ["a", "b"]
    assert store.mutes({**ACME, "customer_id": "initech"}, 160.0) == ["b"]
    assert store.mutes(ACME, 300.0) == []


def test_expiring_ends_a_silence_now_and_a_pending_one_never_starts():
    store = store_with(
        Silence("now", ('customer_id="acme"',), 0.0, 1000.0, "ana", "x"),
        Silence("later", ('customer_id="acme"',), 500.0, 1000.0, "ana", "x"),
    )
    store.expire("now", 100.0)
    store.expire("later", 100.0)
    assert store.mutes(ACME, 100.0) == [] and store.mutes(ACME, 600.0) == []
    assert [s.id for s in store.list(600.0, "expired")] == ["later", "now"]
    with pytest.raises(KeyError):
        store.expire("nope", 0.0)


def test_a_new_silence_gets_an_id_and_round_trips_through_its_table():
    table = JsonTable()
    sid = SilenceStore(table).add(Silence("", ('a="b"',), 0.0, 10.0, "ana", "x"))
    again = SilenceStore(table).get(sid)
    assert sid and again == Silence(sid, ('a="b"',), 0.0, 10.0, "ana", "x")


def test_list_filters_by_state_soonest_ending_first():
    store = store_with(
        Silence("long", ('a="b"',), 0.0, 500.0, "ana", "x"),
        Silence("short", ('a="b"',), 0.0, 100.0, "ana", "x"),
        Silence("future", ('a="b"',), 400.0, 600.0, "ana", "x"),
    )
    assert [s.id for s in store.list(50.0)] == ["short", "long", "future"]
    assert [s.id for s in store.list(50.0, "active")] == ["short", "long"]
    assert [s.id for s in store.list(50.0, "pending")] == ["future"]


def test_static_silences_from_the_config_are_seeded_and_gc_forgets_old_expired_ones():
    spec = SilenceSpec(
        matchers=['customer_id="acme"'],
        starts_at="2026-12-01T02:00:00Z",
        ends_at="2026-12-01T04:00:00Z",
        created_by="ana",
        comment="re-embedding",
    )
    store = SilenceStore(JsonTable())
    store.seed([spec])
    store.seed([spec])  # a restart seeds again: still one
    assert [s.id for s in store.list(0.0)] == [spec.silence_id()]
    assert store.mutes(ACME, 1796090400.0 + 60) == [spec.silence_id()]
    assert store.gc(1796097600.0 + 3600, retention_s=7200) == []
    assert store.gc(1796097600.0 + 7200, retention_s=7200) == [spec.silence_id()]


def test_a_silence_with_a_bad_matcher_is_refused():
    with pytest.raises(ValueError, match="bad matcher"):
        Silence("s", ('a=~"("',), 0.0, 1.0, "ana", "x")


def inhibitor(equal=("alertname", "customer_id")) -> Inhibitor:
    rule = InhibitRule(
        source_matchers=['severity="critical"'],
        target_matchers=['severity="warning"'],
        equal=list(equal),
    )
    return Inhibitor([rule])


def test_a_firing_critical_inhibits_the_warning_with_equal_labels():
    inh = inhibitor()
    critical = alert("acme", severity="critical", endpoint="chat")
    inh.observe(critical)
    assert inh.mutes({**ACME, "endpoint": "embed"}, 0.0) == [critical["fingerprint"]]
    assert inh.mutes({**ACME, "customer_id": "initech"}, 0.0) == []
    assert inh.mutes({**ACME, "alertname": "retry_storm"}, 0.0) == []


def test_a_resolved_source_no_longer_inhibits():
    inh = inhibitor()
    critical = alert("acme", severity="critical")
    inh.observe(critical)
    inh.observe(resolved(critical))
    assert inh.mutes(ACME, 0.0) == []


def test_labels_missing_on_both_sides_count_as_equal():
    inh = inhibitor(equal=("endpoint",))
    inh.observe(alert("acme", severity="critical"))
    assert inh.mutes({"severity": "warning", "customer_id": "initech"}, 0.0) != []
    assert inh.mutes({"severity": "warning", "endpoint": "chat"}, 0.0) == []


def test_an_alert_does_not_inhibit_itself():
    rule = InhibitRule(
        source_matchers=['customer_id="acme"'], target_matchers=['customer_id="acme"']
    )
    inh = Inhibitor([rule])
    inh.observe(alert("acme"))
    assert inh.mutes(dict(alert("acme")["labels"]), 0.0) == []
    other = alert("acme", endpoint="chat")
    inh.observe(other)
    assert inh.mutes(dict(alert("acme")["labels"]), 0.0) == [other["fingerprint"]]
    assert fingerprint(dict(other["labels"])) == other["fingerprint"]
