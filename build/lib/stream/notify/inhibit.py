"""Inhibition, and the one "does this mute it?" interface silences share (Alertmanager mute.go).

A firing alert matching a rule's source matchers mutes every alert matching its target
matchers whose ``equal`` labels have the same values (a missing label counts as ""). An
alert never inhibits itself. The inhibitor learns the firing alerts as the dispatcher
sees them (:meth:`Inhibitor.observe`), so it keeps a small index, not a scan per alert.

>>> from stream.settings.notify import InhibitRule
>>> rule = InhibitRule(source_matchers=['severity="critical"'],
...                    target_matchers=['severity="warning"'], equal=["customer_id"])
>>> inhibitor = Inhibitor([rule])
>>> inhibitor.observe({"status": "firing", "fingerprint": "c1",
...                    "labels": {"severity": "critical", "customer_id": "acme"}})
>>> inhibitor.mutes({"severity": "warning", "customer_id": "acme"}, 0.0)
['c1']
>>> inhibitor.mutes({"severity": "warning", "customer_id": "initech"}, 0.0)
[]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from stream.core.alerts import fingerprint
from stream.settings.notify import InhibitRule, matches_all, parse_matchers


class Muter(Protocol):
    """Anything that can mute an alert: silences ("silenced"), inhibition ("inhibited")."""

    kind: str

    def mutes(self, labels: Mapping[str, str], now: float) -> list[str]:
        """Why ``labels`` is muted at ``now`` (silence ids, inhibiting fingerprints); [] if not."""
        ...


class Inhibitor:
    """Mutes targets of ``rules`` while a matching source alert fires (kind "inhibited")."""

    kind = "inhibited"

    def __init__(self, rules: Sequence[InhibitRule]) -> None:
        self.rules = list(rules)
        self._sources = [parse_matchers(r.source_matchers) for r in self.rules]
        self._targets = [parse_matchers(r.target_matchers) for r in self.rules]
        # per rule: equal-label values -> fingerprints of firing source alerts
        self._index: list[dict[tuple[str, ...], set[str]]] = [{} for _ in self.rules]
        self._seen: dict[str, list[tuple[int, tuple[str, ...]]]] = {}

    def observe(self, alert: Mapping[str, Any]) -> None:
        """Take note of an alert transition (a webhook-contract alert item)."""
        fp = str(alert["fingerprint"])
        self._forget(fp)
        if alert.get("status") != "firing":
            return
        labels = alert["labels"]
        entries = []
        for i, rule in enumerate(self.rules):
            if matches_all(self._sources[i], labels):
                key = tuple(labels.get(name, "") for name in rule.equal)
                self._index[i].setdefault(key, set()).add(fp)
                entries.append((i, key))
        if entries:
            self._seen[fp] = entries

    def observe_all(self, alerts: Iterable[Mapping[str, Any]]) -> None:
        for alert in alerts:
            self.observe(alert)

    def _forget(self, fp: str) -> None:
        for i, key in self._seen.pop(fp, []):
            members = self._index[i].get(key)
            if members is not None:
                members.discard(fp)
                if not members:
                    del self._index[i][key]

    def mutes(self, labels: Mapping[str, str], now: float) -> list[str]:
        """Fingerprints of the firing alerts that inhibit ``labels`` (``now`` is unused)."""
        own = fingerprint(dict(labels))
        found: set[str] = set()
        for i, rule in enumerate(self.rules):
            if not self._index[i] or not matches_all(self._targets[i], labels):
                continue
            key = tuple(labels.get(name, "") for name in rule.equal)
            found |= self._index[i].get(key, set()) - {own}
        return sorted(found)
