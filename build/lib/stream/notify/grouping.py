"""The dispatcher: alerts in, notifications out when each group's time has come.

Alertmanager's ``dispatch`` and ``dedup_stage`` with the clock passed in (``now``, epoch
seconds). Every alert is routed; on each matched route it joins the aggregation group of
its group labels; each receiver of the route has a *slot* (receiver, group_key). A slot
is checked first ``group_wait_s`` after its first alert arrived, then every
``group_interval_s``. A check sends a notification when an unmuted alert fires that the
receiver has not been told about, when an alert it was told about resolved, or when
``repeat_interval_s`` passed since the last notification of an unchanged firing group.
Silenced and inhibited alerts are left out; a resolve goes only to the receivers that
got the firing.

All state lives in two mappings the caller owns (Faust tables in the worker; dicts in
tests), values JSON-able:

- ``alerts``: fingerprint -> ``{"alert": payload, "received_at", "updated_at"}``; active
  alerts, and resolved ones until every receiver told of the firing was told the resolve;
- ``nflog``: ``"receiver|group_key"`` -> what was last delivered there (firing and resolved
  fingerprints, time, sequence, receiver refs). Written only by :meth:`Dispatcher.delivered`,
  so a dispatcher rebuilt from the mappings re-sends what was not delivered, and only that.

>>> from stream.settings.notify import NotifySettings
>>> settings = NotifySettings(route={"receivers": ["pd"]},
...                           receivers=[{"name": "pd", "kind": "pagerduty"}])
>>> d = Dispatcher(settings, {}, {})
>>> d.add({"status": "firing", "fingerprint": "f1", "startsAt": "2026-11-02T10:00:00Z",
...        "labels": {"alertname": "spend_spike", "customer_id": "acme"}}, now=100.0)
>>> d.due(110.0), d.next_due(110.0)
([], 130.0)
>>> [n] = d.due(130.0); n.receiver, n.group_key, n.status, len(n.alerts)
('pd', '{}:{customer_id="acme"}', 'firing', 1)
>>> d.delivered(n, DeliveryResult(ok=True), 131.0); d.due(430.0)
[]
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from stream.notify.inhibit import Inhibitor, Muter
from stream.notify.model import DeliveryResult, Notification
from stream.notify.routing import RouteNode, group_key
from stream.notify.silences import SilenceStore
from stream.settings.notify import NotifySettings

Slot = tuple[str, str]  # (receiver, group_key)
State = Literal["active", "silenced", "inhibited"]


def nflog_key(receiver: str, key: str) -> str:
    """The notification log's key for a receiver and a group."""
    return f"{receiver}|{key}"


@dataclass(frozen=True, slots=True)
class AlertStatus:
    """A firing alert as ``spendwatch alert list`` and ``/alerts`` show it."""

    alert: dict[str, Any]
    state: State
    silenced_by: tuple[str, ...] = ()
    inhibited_by: tuple[str, ...] = ()
    receivers: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.alert,
            "status": {
                "state": self.state,
                "silencedBy": list(self.silenced_by),
                "inhibitedBy": list(self.inhibited_by),
            },
            "receivers": list(self.receivers),
        }


@dataclass(slots=True)
class _Group:
    route: RouteNode
    labels: dict[str, str]
    order: int  # creation order: notifications of one pass come out in it
    fingerprints: dict[str, None] = field(default_factory=dict)  # an ordered set


class Dispatcher:
    """Groups, de-duplicates and times notifications over caller-owned state mappings.

    ``muters`` default to a :class:`SilenceStore` over ``silences`` (seeded with the
    config's static silences) and an :class:`Inhibitor` of the config's rules. Muters
    with an ``observe(alert)`` method are shown every alert the dispatcher takes.
    """

    def __init__(
        self,
        settings: NotifySettings,
        alerts: MutableMapping[str, dict[str, Any]],
        nflog: MutableMapping[str, dict[str, Any]],
        muters: Sequence[Muter] | None = None,
        *,
        silences: MutableMapping[str, dict[str, Any]] | None = None,
        external_url: str = "",
    ) -> None:
        self.tree = RouteNode.build(settings.route)
        self.alerts = alerts
        self.nflog = nflog
        if muters is None:
            store = SilenceStore({} if silences is None else silences)
            store.seed(settings.silences)
            muters = [store, Inhibitor(settings.inhibit_rules)]
        self.muters = list(muters)
        self.external_url = external_url
        self._pending: dict[Slot, tuple[Notification, float]] = {}
        self._last_check: dict[Slot, float] = {}
        self._routes: dict[str, list[RouteNode]] = {}
        # The groups, kept as alerts come and go (not rebuilt per check), and a heap of
        # when each slot is next due: a check costs O(slots due), not O(all slots).
        self._index: dict[Slot, _Group] = {}
        self._slots_of: dict[str, list[Slot]] = {}
        self._resolved: set[str] = set()
        self._heap: list[tuple[float, Slot]] = []
        self._at: dict[Slot, float] = {}
        self._created = 0
        for fp, record in alerts.items():
            self._join(fp, record["alert"])
        for slot in self._index:
            self._schedule(slot)
        self._observe(record["alert"] for record in alerts.values())

    @property
    def silences(self) -> SilenceStore | None:
        """The first silence store among the muters (for the CLI and the API)."""
        return next((m for m in self.muters if isinstance(m, SilenceStore)), None)

    def _observe(self, payloads: Iterable[Mapping[str, Any]]) -> None:
        observers = [m for m in self.muters if hasattr(m, "observe")]
        for payload in payloads:
            for muter in observers:
                muter.observe(payload)  # type: ignore[attr-defined]

    # -- intake ---------------------------------------------------------------------

    def add(self, alert: Mapping[str, Any], now: float) -> None:
        """Take an alert transition (an item of the webhook contract), received at ``now``."""
        fp = str(alert["fingerprint"])
        old = self.alerts.get(fp)
        payload = dict(alert)
        if old is None:
            record = {"alert": payload, "received_at": now, "updated_at": now}
        else:
            before = old["alert"]
            if (
                before["status"] == "resolved"
                and payload["status"] == "firing"
                and payload.get("startsAt") == before.get("startsAt")
            ):
                return  # a late copy of the episode that already resolved
            changed = before["status"] != payload["status"]
            refired = changed and payload["status"] == "firing"
            record = {
                "alert": payload,
                "received_at": now if refired else old["received_at"],
                "updated_at": now if changed else old["updated_at"],
            }
        self.alerts[fp] = record  # assigned, not mutated: a Faust table sees the change
        if old is None:
            self._join(fp, payload)
        elif payload["status"] == "resolved":
            self._resolved.add(fp)
        else:
            self._resolved.discard(fp)
        for slot in self._slots_of.get(fp, ()):
            self._schedule(slot)
        self._observe([payload])

    def _join(self, fp: str, payload: Mapping[str, Any]) -> None:
        """Put a new alert in the groups of the routes it matches."""
        labels = payload["labels"]
        slots: list[Slot] = []
        for node in self._route(fp, labels):
            if not node.receivers:
                continue
            wanted = node.group_labels(labels)
            key = group_key(node, wanted)
            for receiver in node.receivers:
                slot = (receiver, key)
                group = self._index.get(slot)
                if group is None:
                    group = self._index[slot] = _Group(node, wanted, self._created)
                    self._created += 1
                group.fingerprints[fp] = None
                slots.append(slot)
        self._slots_of[fp] = slots
        if payload["status"] == "resolved":
            self._resolved.add(fp)

    def _leave(self, fp: str) -> None:
        """Take a forgotten alert out of its groups; a group left empty is forgotten too
        (its next alert starts a new group, with group_wait)."""
        self._resolved.discard(fp)
        self._routes.pop(fp, None)
        for slot in self._slots_of.pop(fp, ()):
            group = self._index.get(slot)
            if group is None:
                continue
            group.fingerprints.pop(fp, None)
            if not group.fingerprints:
                del self._index[slot]
                self._last_check.pop(slot, None)
                self._at.pop(slot, None)

    def _schedule(self, slot: Slot) -> None:
        """(Re)compute when ``slot`` is next due and queue it; stale heap entries are skipped."""
        group = self._index.get(slot)
        if group is None:
            self._at.pop(slot, None)
            return
        pending = self._pending.get(slot)
        if pending is not None:
            at = pending[1] + group.route.repeat_interval_s
        else:
            at = self._next_check(slot, group)
        if self._at.get(slot) != at:
            self._at[slot] = at
            heapq.heappush(self._heap, (at, slot))

    # -- timing ---------------------------------------------------------------------

    def due(self, now: float) -> list[Notification]:
        """The notifications whose time has come at ``now``; hand them to delivery.

        A slot with a notification in flight gets no other until :meth:`delivered` (or
        :meth:`release`) is called for it, or ``repeat_interval_s`` passes.
        """
        mutes: dict[str, dict[str, list[str]]] = {}
        out: list[tuple[int, Notification]] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, slot = heapq.heappop(heap)
            if self._at.get(slot) != at:
                continue  # rescheduled since; a later entry stands for it
            del self._at[slot]
            group = self._index.get(slot)
            if group is None:
                continue
            if self._free(slot, group, now) and self._next_check(slot, group) <= now:
                self._last_check[slot] = now
                notification = self._notification(slot, group, now, mutes)
                if notification is not None:
                    self._pending[slot] = (notification, now)
                    out.append((group.order, notification))
            self._schedule(slot)
        self._collect()
        return [n for _, n in sorted(out, key=lambda item: item[0])]

    def next_due(self, now: float) -> float | None:
        """When :meth:`due` should next be called (may be <= ``now``); None: nothing waits."""
        heap = self._heap
        while heap and self._at.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # stale
        return heap[0][0] if heap else None

    def _free(self, slot: Slot, group: _Group, now: float) -> bool:
        pending = self._pending.get(slot)
        if pending is None:
            return True
        if now - pending[1] < group.route.repeat_interval_s:
            return False
        del self._pending[slot]  # lost in delivery: derive it again
        return True

    def _next_check(self, slot: Slot, group: _Group) -> float:
        entry = self.nflog.get(nflog_key(*slot))
        last = self._last_check.get(slot)
        if entry is None or not entry["firing"]:  # a new group (or a new episode of one)
            first = min(self.alerts[fp]["received_at"] for fp in group.fingerprints)
            at = first + group.route.group_wait_s
            return at if last is None else max(at, last + group.route.group_interval_s)
        return (entry["ts"] if last is None else last) + group.route.group_interval_s

    # -- grouping -------------------------------------------------------------------

    def _route(self, fp: str, labels: Mapping[str, str]) -> list[RouteNode]:
        nodes = self._routes.get(fp)
        if nodes is None:
            nodes = self._routes[fp] = self.tree.match(labels)
        return nodes

    def _groups(self) -> dict[Slot, _Group]:
        return self._index

    def _mutes(
        self, fp: str, now: float, cache: dict[str, dict[str, list[str]]]
    ) -> dict[str, list[str]]:
        found = cache.get(fp)
        if found is None:
            labels = self.alerts[fp]["alert"]["labels"]
            found = {}
            for muter in self.muters:
                reasons = muter.mutes(labels, now)
                if reasons:
                    found.setdefault(muter.kind, []).extend(reasons)
            cache[fp] = found
        return found

    def _notification(
        self, slot: Slot, group: _Group, now: float, cache: dict[str, dict[str, list[str]]]
    ) -> Notification | None:
        entry = self.nflog.get(nflog_key(*slot))
        told = set(entry["firing"]) if entry else set()
        firing, resolved = [], []
        for fp in group.fingerprints:
            payload = self.alerts[fp]["alert"]
            if payload["status"] == "firing":
                if not self._mutes(fp, now, cache):
                    firing.append(payload)
            elif fp in told:
                resolved.append(payload)
        new = {a["fingerprint"] for a in firing} - told
        repeat = entry is not None and now - entry["ts"] >= group.route.repeat_interval_s
        if not (new or resolved or (firing and told and repeat)):
            return None
        items = sorted(firing, key=_order) + sorted(resolved, key=_order)
        return Notification(
            receiver=slot[0],
            group_key=slot[1],
            status="firing" if firing else "resolved",
            group_labels=dict(group.labels),
            common_labels=_common([a["labels"] for a in items]),
            common_annotations=_common([a.get("annotations", {}) for a in items]),
            alerts=tuple(items),
            sequence=(entry["sequence"] if entry else 0) + 1,
            external_url=self.external_url,
        )

    def _collect(self) -> None:
        """Forget resolved alerts no receiver still needs to hear about (and so idle slots)."""
        done = []
        for fp in self._resolved:
            pinned = False
            for slot in self._slots_of.get(fp, ()):
                entry = self.nflog.get(nflog_key(*slot))
                pending = self._pending.get(slot)
                if (entry and fp in entry["firing"]) or (
                    pending and any(a["fingerprint"] == fp for a in pending[0].alerts)
                ):
                    pinned = True
                    break
            if not pinned:
                done.append(fp)
        for fp in done:
            del self.alerts[fp]
            self._leave(fp)

    # -- delivery feedback ----------------------------------------------------------

    def delivered(self, notification: Notification, result: DeliveryResult, now: float) -> None:
        """Record a delivery outcome; only a success writes the notification log.

        A failure frees the slot: its next check (``group_interval_s`` on) derives the
        notification again from the alerts as they are then.
        """
        slot = (notification.receiver, notification.group_key)
        self._record(slot, notification, result, now)
        self._schedule(slot)

    def _record(
        self, slot: Slot, notification: Notification, result: DeliveryResult, now: float
    ) -> None:
        pending = self._pending.get(slot)
        created = now
        if pending is not None and pending[0].sequence <= notification.sequence:
            if pending[0] is notification:
                created = pending[1]
            del self._pending[slot]
        if not result.ok:
            self._last_check[slot] = now
            return
        key = nflog_key(*slot)
        entry = self.nflog.get(key)
        if entry is not None and entry["sequence"] >= notification.sequence:
            return  # an older notification than the one the log has
        firing = sorted(a["fingerprint"] for a in notification.alerts if a["status"] == "firing")
        resolved = sorted(a["fingerprint"] for a in notification.alerts if a["status"] != "firing")
        refs = dict(entry["refs"]) if entry and entry["firing"] and firing else {}
        if firing:
            refs.update(result.refs)
        else:
            self._last_check.pop(slot, None)  # the episode is over; a new one waits again
        self.nflog[key] = {
            "receiver": notification.receiver,
            "group_key": notification.group_key,
            "firing": firing,
            "resolved": resolved,
            "ts": created,
            "sequence": notification.sequence,
            "refs": refs,
        }

    def release(self, notification: Notification, now: float) -> None:
        """Delivery gave ``notification`` up: derive it again at the slot's next check."""
        self.delivered(notification, DeliveryResult(ok=False, detail="given up"), now)

    def refs_for(self, notification: Notification) -> dict[str, str]:
        """What the receiver returned for this group's current episode (Slack thread)."""
        entry = self.nflog.get(nflog_key(notification.receiver, notification.group_key))
        return dict(entry["refs"]) if entry and entry["firing"] else {}

    def gc(self, now: float, retention_s: float) -> list[str]:
        """Forget log entries of groups with no alerts left, older than ``retention_s``.

        Call it now and then (Alertmanager keeps its log 120 h); returns the keys dropped.
        """
        live = {nflog_key(*slot) for slot in self._groups()}
        old = [
            key
            for key, entry in self.nflog.items()
            if key not in live and float(entry["ts"]) + retention_s <= now
        ]
        for key in old:
            del self.nflog[key]
        return old

    # -- listing --------------------------------------------------------------------

    def groups(self) -> list[dict[str, Any]]:
        """Each (receiver, group) slot: its alert count, when its last delivered
        notification was made (``notified_at``, epoch s), when it was last checked, and
        whether a notification is in flight. A slot checked after its last notification,
        with none in flight, has nothing to send until its alerts change or the repeat
        interval passes."""
        out = []
        for slot, group in self._index.items():
            entry = self.nflog.get(nflog_key(*slot))
            out.append(
                {
                    "receiver": slot[0],
                    "group_key": slot[1],
                    "alerts": len(group.fingerprints),
                    "notified_at": entry["ts"] if entry else None,
                    "last_check": self._last_check.get(slot),
                    "in_flight": slot in self._pending,
                }
            )
        return sorted(out, key=lambda g: (g["receiver"], g["group_key"]))

    def active(self, now: float) -> list[AlertStatus]:
        """Firing alerts with their state: active, silenced (ids) or inhibited (by whom)."""
        cache: dict[str, dict[str, list[str]]] = {}
        out = []
        for fp, record in self.alerts.items():
            payload = record["alert"]
            if payload["status"] != "firing":
                continue
            mutes = self._mutes(fp, now, cache)
            silenced = tuple(mutes.get(SilenceStore.kind, ()))
            inhibited = tuple(mutes.get(Inhibitor.kind, ()))
            state: State = "silenced" if silenced else "inhibited" if inhibited else "active"
            receivers = tuple(
                dict.fromkeys(r for n in self._route(fp, payload["labels"]) for r in n.receivers)
            )
            out.append(AlertStatus(dict(payload), state, silenced, inhibited, receivers))
        return sorted(out, key=lambda s: _order(s.alert))


def _order(alert: Mapping[str, Any]) -> tuple[str, str]:
    return str(alert.get("startsAt", "")), str(alert["fingerprint"])


def _common(maps: list[Mapping[str, str]]) -> dict[str, str]:
    """The pairs every mapping has (Alertmanager's commonLabels / commonAnnotations)."""
    if not maps:
        return {}
    common = dict(maps[0])
    for other in maps[1:]:
        common = {k: v for k, v in common.items() if other.get(k) == v}
    return common
