"""The dispatcher's timing, de-duplication, muting and restart, with an injected clock."""

import pytest

from stream.notify.grouping import Dispatcher, nflog_key
from stream.notify.inhibit import Inhibitor
from stream.notify.model import DeliveryResult
from stream.notify.silences import Silence, SilenceStore
from tests.notify.scenarios import (
    OK,
    JsonTable,
    alert,
    check,
    dispatcher,
    drive,
    notify_settings,
    resolved,
)

ONE = {"receivers": ["hook"], "group_wait_s": 30, "group_interval_s": 300}
TWO_VIA_CONTINUE = {
    "routes": [
        {"name": "everything", "matchers": ['severity=~".+"'], "receivers": ["slack"],
         "continue": True},
        {"name": "acme", "matchers": ['customer_id="acme"'], "receivers": ["hook"]},
    ]
}  # fmt: skip


def test_a_burst_of_50_alerts_for_one_customer_within_group_wait_is_one_notification():
    d = dispatcher(notify_settings(ONE, "hook"))
    for i in range(50):
        name = ("spend_spike", "retry_storm")[i % 2]
        d.add(alert("acme", name, endpoint=f"ep{i}"), now=i * 0.5)
    d.add(alert("initech"), now=3.0)

    sent = drive(d, 0.0, 14_000.0)  # until just before the 4 h repeat

    by_customer = {n.group_labels["customer_id"]: (t, n) for t, n in sent}
    assert len(sent) == 2
    t, acme = by_customer["acme"]
    assert t == 30.0
    assert len(acme.alerts) == 50 and acme.status == "firing" and acme.sequence == 1
    assert acme.common_labels == {"customer_id": "acme", "severity": "warning"}
    assert acme.common_annotations == {"runbook_url": "https://runbooks/x"}
    assert acme.group_key == '{}:{customer_id="acme"}'
    assert by_customer["initech"][0] == 33.0


def test_changes_to_a_notified_group_are_batched_at_group_interval():
    d = dispatcher(notify_settings(ONE, "hook"))
    d.add(alert(endpoint="a"), now=0.0)
    sent = drive(d, 0.0, 100.0)
    d.add(alert(endpoint="b"), now=100.0)
    d.add(alert(endpoint="c"), now=200.0)
    sent += drive(d, 100.0, 1000.0)

    assert [(t, len(n.alerts), n.sequence) for t, n in sent] == [(30.0, 1, 1), (330.0, 3, 2)]


def test_repeat_interval_resends_a_still_firing_unchanged_group():
    d = dispatcher(notify_settings({**ONE, "repeat_interval_s": 3600}, "hook"))
    d.add(alert(), now=0.0)

    sent = drive(d, 0.0, 7300.0)

    assert [t for t, _ in sent] == [30.0, 3630.0, 7230.0]
    assert all(n.status == "firing" and len(n.alerts) == 1 for _, n in sent)
    assert [n.sequence for _, n in sent] == [1, 2, 3]


def test_the_resolve_reaches_every_receiver_that_got_the_firing():
    d = dispatcher(notify_settings(TWO_VIA_CONTINUE, "slack", "hook"))
    item = alert()
    d.add(item, now=0.0)
    firing = drive(d, 0.0, 100.0)
    d.add(resolved(item), now=100.0)
    resolves = drive(d, 100.0, 10_000.0)

    assert sorted(n.receiver for _, n in firing) == ["hook", "slack"]
    assert sorted(n.receiver for _, n in resolves) == ["hook", "slack"]
    assert {(t, n.status) for t, n in resolves} == {(330.0, "resolved")}
    assert all(n.alerts[0]["status"] == "resolved" for _, n in resolves)
    assert len(d.alerts) == 0 and d.next_due(10_000.0) is None
    assert all(entry["firing"] == [] for entry in d.nflog.values())


def test_a_receiver_that_never_got_the_firing_gets_no_resolve():
    d = dispatcher(notify_settings(TWO_VIA_CONTINUE, "slack", "hook"))
    item = alert()
    d.add(item, now=0.0)
    first = {n.receiver: n for n in d.due(30.0)}
    d.delivered(first["slack"], OK, 31.0)
    d.delivered(first["hook"], DeliveryResult(ok=False, status_code=503), 31.0)
    d.add(resolved(item), now=100.0)

    later = drive(d, 100.0, 10_000.0)

    assert [(n.receiver, n.status) for _, n in later] == [("slack", "resolved")]
    assert nflog_key("hook", first["hook"].group_key) not in d.nflog


def test_an_alert_that_fires_and_resolves_within_group_wait_sends_nothing():
    d = dispatcher(notify_settings(ONE, "hook"))
    item = alert()
    d.add(item, now=0.0)
    d.add(resolved(item), now=10.0)

    assert drive(d, 0.0, 10_000.0) == []
    assert len(d.alerts) == 0


def test_a_silenced_alert_sends_nothing_and_is_listed_as_silenced():
    silences = JsonTable()
    d = dispatcher(notify_settings(ONE, "hook"), silences=silences)
    assert d.silences is not None
    d.silences.add(Silence("maint", ('customer_id="acme"',), 0.0, 5000.0, "ana", "batch"))
    d.add(alert("acme"), now=10.0)

    assert drive(d, 10.0, 4000.0) == []
    [status] = d.active(4000.0)
    assert status.state == "silenced" and status.silenced_by == ("maint",)
    assert status.to_dict()["status"] == {
        "state": "silenced",
        "silencedBy": ["maint"],
        "inhibitedBy": [],
    }


def test_when_a_silence_expires_while_the_alert_fires_it_is_sent_at_the_next_check():
    d = dispatcher(notify_settings(ONE, "hook"))
    assert d.silences is not None
    d.silences.add(Silence("s", ('alertname="spend_spike"',), 0.0, 1000.0, "ana", "deploy"))
    d.add(alert(), now=10.0)

    sent = drive(d, 10.0, 3000.0)

    assert [(t, n.status) for t, n in sent] == [(1240.0, "firing")]  # checks: 40 + 300 k


def test_expiring_a_silence_early_sends_the_alert_at_the_next_check():
    d = dispatcher(notify_settings(ONE, "hook"))
    assert d.silences is not None
    d.silences.add(Silence("s", ('customer_id="acme"',), 0.0, 1e12, "ana", "deploy"))
    d.add(alert(), now=10.0)
    assert drive(d, 10.0, 500.0) == []
    d.silences.expire("s", now=500.0)

    assert [t for t, _ in drive(d, 500.0, 3000.0)] == [640.0]


def test_a_group_whose_alerts_are_all_muted_sends_nothing_but_its_unmuted_peer_does():
    d = dispatcher(notify_settings({**ONE, "group_by": ["alertname"]}, "hook"))
    assert d.silences is not None
    d.silences.add(Silence("s", ('customer_id="acme"',), 0.0, 1e12, "ana", "noisy"))
    d.add(alert("acme", endpoint="a"), now=0.0)
    d.add(alert("acme", endpoint="b"), now=0.0)
    d.add(alert("initech"), now=0.0)

    [(_, n)] = drive(d, 0.0, 5000.0)

    assert [a["labels"]["customer_id"] for a in n.alerts] == ["initech"]


def test_a_critical_alert_inhibits_the_matching_warning_of_the_same_customer():
    d = dispatcher(notify_settings(ONE, "hook"))  # default rule: equal alertname, customer_id
    critical = alert("acme", severity="critical", endpoint="chat")
    d.add(critical, now=0.0)
    d.add(alert("acme", severity="warning", endpoint="embed"), now=0.0)
    d.add(alert("acme", name="retry_storm", severity="warning"), now=0.0)
    d.add(alert("initech", severity="warning"), now=0.0)

    sent = drive(d, 0.0, 100.0)

    names = {n.group_labels["customer_id"]: n for _, n in sent}
    acme = {(a["labels"]["alertname"], a["labels"]["severity"]) for a in names["acme"].alerts}
    assert acme == {("retry_storm", "warning"), ("spend_spike", "critical")}
    assert len(names["acme"].alerts) == 2 and len(names["initech"].alerts) == 1
    states = {(s.alert["labels"]["customer_id"], s.alert["labels"].get("endpoint")): s
              for s in d.active(100.0)}  # fmt: skip
    assert states[("acme", "embed")].state == "inhibited"
    assert states[("acme", "embed")].inhibited_by == (critical["fingerprint"],)
    assert states[("acme", "chat")].state == "active"

    d.add(resolved(critical), now=100.0)  # the source resolves: the warning is sent
    [(t, n)] = drive(d, 100.0, 1000.0)
    assert t == 330.0
    assert {(a["labels"].get("endpoint"), a["status"]) for a in n.alerts} == {
        ("chat", "resolved"),
        ("embed", "firing"),
        (None, "firing"),
    }


def test_explicit_muters_replace_the_defaults():
    settings = notify_settings(ONE, "hook")
    store = SilenceStore(JsonTable())
    store.add(Silence("s", ('severity="warning"',), 0.0, 1e12, "ana", "quiet"))
    d = Dispatcher(settings, JsonTable(), JsonTable(), [store, Inhibitor([])])
    d.add(alert(severity="warning"), now=0.0)
    d.add(alert(severity="critical"), now=0.0)

    [(_, n)] = drive(d, 0.0, 1000.0)

    assert [a["labels"]["severity"] for a in n.alerts] == ["critical"]


def test_a_restarted_dispatcher_resends_what_was_not_delivered_and_only_that():
    settings = notify_settings(TWO_VIA_CONTINUE, "slack", "hook")
    alerts, nflog = JsonTable(), JsonTable()
    first = Dispatcher(settings, alerts, nflog)
    first.add(alert(), now=0.0)
    out = {n.receiver: n for n in first.due(30.0)}
    first.delivered(out["slack"], OK, 31.0)  # the hook's delivery is in flight: crash

    second = Dispatcher(settings, alerts, nflog)
    again = second.due(32.0)

    assert [n.receiver for n in again] == ["hook"]
    assert again[0].alerts == out["hook"].alerts and again[0].sequence == out["hook"].sequence
    second.delivered(check(again[0]), OK, 33.0)

    third = Dispatcher(settings, alerts, nflog)
    assert drive(third, 33.0, 14_000.0) == []  # nothing twice (repeat is at 4 h)
    repeats = drive(third, 14_000.0, 15_000.0)  # 4 h after each one's notification
    assert [(t, n.receiver) for t, n in repeats] == [(14_430.0, "slack"), (14_432.0, "hook")]


def test_a_restart_keeps_silences_and_inhibitions_from_the_mappings():
    settings = notify_settings(ONE, "hook")
    alerts, nflog, silences = JsonTable(), JsonTable(), JsonTable()
    first = Dispatcher(settings, alerts, nflog, silences=silences)
    assert first.silences is not None
    first.silences.add(Silence("s", ('endpoint="x"',), 0.0, 1e12, "ana", "quiet"))
    first.add(alert(severity="critical", endpoint="chat"), now=0.0)
    first.add(alert(severity="warning", endpoint="embed"), now=0.0)
    first.add(alert(name="retry_storm", endpoint="x"), now=0.0)

    second = Dispatcher(settings, alerts, nflog, silences=silences)
    states = sorted(s.state for s in second.active(10.0))
    [(_, n)] = drive(second, 0.0, 100.0)

    assert states == ["active", "inhibited", "silenced"]
    assert [a["labels"]["endpoint"] for a in n.alerts] == ["chat"]


def test_a_delivery_failure_is_derived_again_at_the_next_check():
    d = dispatcher(notify_settings(ONE, "hook"))
    d.add(alert(), now=0.0)
    [n] = d.due(30.0)
    assert d.due(40.0) == [] and d.next_due(40.0) == 30.0 + 14_400.0  # in flight
    d.release(n, now=40.0)

    [(t, again)] = drive(d, 40.0, 1000.0)

    assert t == 340.0 and again.sequence == 1


def test_refs_from_delivery_follow_the_episode_and_are_cleared_by_its_resolve():
    d = dispatcher(notify_settings(ONE, "hook"))
    item = alert()
    d.add(item, now=0.0)
    [n] = d.due(30.0)
    d.delivered(n, DeliveryResult(ok=True, refs={"channel": "C1", "ts": "1.2"}), 31.0)
    d.add(resolved(item), now=40.0)
    [r] = d.due(330.0)

    assert d.refs_for(r) == {"channel": "C1", "ts": "1.2"}
    d.delivered(r, OK, 331.0)
    assert d.refs_for(r) == {}


def test_a_late_copy_of_a_resolved_episodes_firing_is_ignored():
    d = dispatcher(notify_settings(ONE, "hook"))
    item = alert()
    d.add(item, now=0.0)
    d.add(resolved(item), now=10.0)
    d.add(item, now=20.0)

    assert d.active(20.0) == []


@pytest.mark.parametrize("group_by", [["..."], ["endpoint"]])
def test_group_by_splits_notifications(group_by):
    d = dispatcher(notify_settings({**ONE, "group_by": group_by}, "hook"))
    d.add(alert(endpoint="a"), now=0.0)
    d.add(alert(endpoint="b"), now=0.0)

    sent = drive(d, 0.0, 100.0)

    assert len(sent) == 2 and len({n.group_key for _, n in sent}) == 2


def test_alerts_on_a_route_without_receivers_are_listed_but_never_notified():
    d = dispatcher(notify_settings({}))
    d.add(alert(), now=0.0)

    assert drive(d, 0.0, 10_000.0) == [] and d.next_due(0.0) is None
    assert [s.state for s in d.active(0.0)] == ["active"]


def test_gc_forgets_old_log_entries_of_groups_with_no_alerts_left():
    d = dispatcher(notify_settings(ONE, "hook"))
    item = alert()
    d.add(item, now=0.0)
    d.add(alert("initech"), now=0.0)
    drive(d, 0.0, 100.0)
    d.add(resolved(item), now=100.0)
    drive(d, 100.0, 1000.0)

    assert d.gc(1000.0, retention_s=3600) == []
    assert d.gc(330.0 + 3600, retention_s=3600) == ['hook|{}:{customer_id="acme"}']
    assert list(d.nflog) == ['hook|{}:{customer_id="initech"}']  # still has a firing alert


def test_a_new_episode_of_a_resolved_group_waits_group_wait_again():
    d = dispatcher(notify_settings(ONE, "hook"))
    item = alert()
    d.add(item, now=0.0)
    drive(d, 0.0, 100.0)
    d.add(resolved(item), now=100.0)
    drive(d, 100.0, 400.0)  # the resolve went out at 330
    d.add(alert(endpoint="chat"), now=400.0)

    [(t, n)] = drive(d, 400.0, 1000.0)

    assert t == 430.0 and n.sequence == 3 and d.refs_for(n) == {}


def test_groups_say_when_a_slot_was_notified_checked_and_whether_a_send_is_in_flight():
    d = dispatcher(notify_settings(ONE, "hook"))
    d.add(alert("acme", endpoint="a"), now=0.0)
    d.add(alert("acme", endpoint="b"), now=1.0)
    assert d.groups() == [
        {
            "receiver": "hook",
            "group_key": '{}:{customer_id="acme"}',
            "alerts": 2,
            "notified_at": None,
            "last_check": None,
            "in_flight": False,
        }
    ]
    [n] = d.due(30.0)
    [group] = d.groups()
    assert (group["notified_at"], group["last_check"], group["in_flight"]) == (None, 30.0, True)
    d.delivered(n, OK, 31.0)
    [group] = d.groups()
    assert (group["notified_at"], group["last_check"], group["in_flight"]) == (30.0, 30.0, False)
    # The next check, group_interval on, finds nothing new: the group is settled.
    assert d.due(330.0) == []
    [group] = d.groups()
    assert (group["notified_at"], group["last_check"], group["in_flight"]) == (30.0, 330.0, False)
