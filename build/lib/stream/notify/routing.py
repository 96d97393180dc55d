"""Routing: which route nodes (and so which receivers and timings) take an alert.

As Alertmanager's ``dispatch/route.go``: the tree is walked depth first; the first child
that matches wins unless it has ``continue``; a node none of whose children match is
itself the match. Children inherit receivers, grouping and timings their config leaves
unset. Each node has a ``key`` (its path of names or positions) that is stable across
processes, so group keys built on it are too.

>>> from stream.settings.notify import Route
>>> tree = RouteNode.build(Route(receivers=["all"], routes=[
...     Route(name="acme", matchers=['customer_id="acme"'], receivers=["acme"], continue_=True),
...     Route(matchers=['severity="critical"'], group_wait_s=0),
... ]))
>>> [(n.key, n.receivers, n.group_wait_s) for n in tree.match({"customer_id": "acme",
...                                                          "severity": "critical"})]
[('{}/acme', ('acme',), 30.0), ('{}/1', ('all',), 0.0)]
>>> group_key(tree.match({"customer_id": "acme"})[0], {"customer_id": "acme"})
'{}/acme:{customer_id="acme"}'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from stream.settings.notify import (
    ALL_LABELS,
    DEFAULT_GROUP_BY,
    DEFAULT_GROUP_INTERVAL_S,
    DEFAULT_GROUP_WAIT_S,
    DEFAULT_REPEAT_INTERVAL_S,
    Matcher,
    Route,
    matches_all,
    parse_matchers,
)


@dataclass(frozen=True, slots=True)
class RouteNode:
    """A route with everything inherited filled in; times in seconds."""

    key: str
    name: str | None
    matchers: tuple[Matcher, ...]
    receivers: tuple[str, ...]
    continue_: bool
    group_by: tuple[str, ...] | None  # None: every label (group_by ["..."])
    group_wait_s: float
    group_interval_s: float
    repeat_interval_s: float
    children: tuple[RouteNode, ...]

    @classmethod
    def build(cls, route: Route, parent: RouteNode | None = None, index: int = 0) -> RouteNode:
        """The resolved tree for ``route`` (the root when ``parent`` is None)."""
        inherited: tuple[tuple[str, ...], tuple[str, ...] | None, float]
        if parent is None:
            key = "{}"
            inherited = (), tuple(DEFAULT_GROUP_BY), DEFAULT_GROUP_WAIT_S
            intervals = DEFAULT_GROUP_INTERVAL_S, DEFAULT_REPEAT_INTERVAL_S
        else:
            key = f"{parent.key}/{route.name if route.name else index}"
            inherited = parent.receivers, parent.group_by, parent.group_wait_s
            intervals = parent.group_interval_s, parent.repeat_interval_s
        group_by: tuple[str, ...] | None
        if route.group_by is None:
            group_by = inherited[1]
        else:
            group_by = None if ALL_LABELS in route.group_by else tuple(route.group_by)
        node = cls(
            key=key,
            name=route.name,
            matchers=parse_matchers(route.matchers),
            receivers=inherited[0] if route.receivers is None else tuple(route.receivers),
            continue_=route.continue_,
            group_by=group_by,
            group_wait_s=_pick(route.group_wait_s, inherited[2]),
            group_interval_s=_pick(route.group_interval_s, intervals[0]),
            repeat_interval_s=_pick(route.repeat_interval_s, intervals[1]),
            children=(),
        )
        children = tuple(cls.build(child, node, i) for i, child in enumerate(route.routes))
        object.__setattr__(node, "children", children)
        return node

    def match(self, labels: Mapping[str, str]) -> list[RouteNode]:
        """The nodes that take an alert with ``labels``, in tree order (empty: none)."""
        if not matches_all(self.matchers, labels):
            return []
        found: list[RouteNode] = []
        for child in self.children:
            matched = child.match(labels)
            found.extend(matched)
            if matched and not child.continue_:
                break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels an alert is grouped by on this route (only those it has)."""
        if self.group_by is None:
            return dict(labels)
        return {name: labels[name] for name in self.group_by if name in labels}


def _pick(value: float | None, inherited: float) -> float:
    return inherited if value is None else value


def group_key(node: RouteNode, group_labels: Mapping[str, str]) -> str:
    """Alertmanager's group key: route key and sorted group labels, stable across processes."""
    inner = ", ".join(
        f"{k}={json.dumps(group_labels[k], ensure_ascii=False)}" for k in sorted(group_labels)
    )
    return f"{node.key}:{{{inner}}}"
