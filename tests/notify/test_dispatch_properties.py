"""Properties of the dispatcher under any order of alerts, silences, delivery failures and
restarts (inhibition by the default rule: a critical for acme mutes its warnings)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.alerts import rfc3339
from stream.notify.grouping import Dispatcher, nflog_key
from stream.notify.model import DeliveryResult
from stream.notify.routing import group_key
from stream.notify.silences import Silence
from tests.notify.scenarios import OK, T0, JsonTable, alert, check, drive, notify_settings, resolved

ROUTE = {
    "group_wait_s": 10,
    "group_interval_s": 60,
    "repeat_interval_s": 3600,
    "routes": [
        {"matchers": ['severity=~".+"'], "receivers": ["slack"], "continue": True},
        {"matchers": ['customer_id="acme"'], "receivers": ["hook"]},
    ],
}
SETTINGS = notify_settings(ROUTE, "slack", "hook")
ALERTS = [alert(c, endpoint=e) for c in ("acme", "initech") for e in ("chat", "embed")]
ALERTS.append(alert("acme", severity="critical", endpoint="chat"))
FAIL = DeliveryResult(ok=False, status_code=503)

steps = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=200),  # seconds since the previous step
        st.sampled_from(["fire", "resolve", "restart", "wake", "silence"]),
        st.integers(0, len(ALERTS) - 1),
        st.sampled_from(["ok", "fail", "lost"]),  # what delivery does with what is due
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(steps)
def test_every_receiver_ends_told_exactly_the_unmuted_firing_alerts_never_repeating_early(script):
    alerts, nflog, silences = JsonTable(), JsonTable(), JsonTable()
    d = Dispatcher(SETTINGS, alerts, nflog, silences=silences)
    last: dict[str, tuple[float, set[str]]] = {}  # per slot: last delivered (time, firing)
    firing: set[str] = set()
    t = 0.0

    def deliver(now: float, outcome: str) -> None:
        for n in d.due(now):
            check(n)
            if outcome == "lost":
                continue
            if outcome == "fail":
                d.delivered(n, FAIL, now)
                continue
            key = nflog_key(n.receiver, n.group_key)
            told = {a["fingerprint"] for a in n.alerts if a["status"] == "firing"}
            has_resolved = any(a["status"] == "resolved" for a in n.alerts)
            if key in last and not has_resolved and told == last[key][1]:
                assert now - last[key][0] >= 3600, "an unchanged group was re-sent early"
            last[key] = (now, told)
            d.delivered(n, OK, now)

    for dt, action, i, outcome in script:
        t += dt
        item = ALERTS[i]
        if action == "fire" and item["fingerprint"] not in firing:
            d.add({**item, "startsAt": rfc3339(T0 + t)}, t)  # a new episode starts now
            firing.add(item["fingerprint"])
        elif action == "resolve" and item["fingerprint"] in firing:
            d.add(
                {**resolved(item), "startsAt": alerts[item["fingerprint"]]["alert"]["startsAt"]}, t
            )
            firing.discard(item["fingerprint"])
        elif action == "restart":
            d = Dispatcher(SETTINGS, alerts, nflog, silences=silences)
        elif action == "silence" and d.silences is not None:
            who = f'customer_id="{item["labels"]["customer_id"]}"'
            d.silences.add(Silence("", (who,), t, t + 5 * dt, "test", "property"))
        deliver(t, outcome)

    d = Dispatcher(SETTINGS, alerts, nflog, silences=silences)  # drops what is in flight
    drive(d, t, t + 1200)  # silences over, all delivered from now on, well before a repeat

    assert {fp for fp in alerts} == firing  # resolved alerts are gone once told
    unmuted = {s.alert["fingerprint"] for s in d.active(t + 1200) if s.state == "active"}
    assert firing - unmuted <= {a["fingerprint"] for a in ALERTS[:2]}  # inhibited only
    for fp in unmuted:
        for node in d.tree.match(alerts[fp]["alert"]["labels"]):
            labels = node.group_labels(alerts[fp]["alert"]["labels"])
            for receiver in node.receivers:
                entry = nflog[nflog_key(receiver, group_key(node, labels))]
                assert fp in entry["firing"]
    told = {fp for entry in nflog.values() for fp in entry["firing"]}
    assert told == unmuted
