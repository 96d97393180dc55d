"""Routing: depth first, first match wins unless continue; children inherit what is unset."""

from stream.notify.routing import RouteNode, group_key
from stream.settings.notify import Route
from tests.notify.scenarios import notify_settings

TREE = {
    "receivers": ["default"],
    "group_by": ["customer_id"],
    "group_wait_s": 20,
    "routes": [
        {
            "name": "pager",
            "matchers": ['severity="critical"'],
            "receivers": ["pagerduty"],
            "group_wait_s": 0,
            "continue": True,
        },
        {
            "name": "acme",
            "matchers": ['customer_id="acme"'],
            "receivers": ["acme-slack"],
            "group_by": ["..."],
            "routes": [
                {"name": "acme-batch", "matchers": ['endpoint="batch"'], "repeat_interval_s": 60},
            ],
        },
        {"name": "retries", "matchers": ['alertname="retry_storm"'], "group_interval_s": 30},
    ],
}


def tree() -> RouteNode:
    receivers = ["default", "pagerduty", "acme-slack"]
    return RouteNode.build(notify_settings(TREE, *receivers).route)


def names(labels: dict[str, str]) -> list[str | None]:
    return [node.name for node in tree().match(labels)]


def test_the_root_takes_what_no_child_matches():
    assert names({"customer_id": "initech", "severity": "warning"}) == [None]


def test_the_first_matching_child_wins():
    labels = {"customer_id": "acme", "alertname": "retry_storm", "severity": "warning"}
    assert names(labels) == ["acme"]


def test_continue_goes_on_to_the_next_siblings():
    assert names({"customer_id": "acme", "severity": "critical"}) == ["pager", "acme"]
    assert names({"customer_id": "initech", "severity": "critical"}) == ["pager"]
    labels = {"alertname": "retry_storm", "severity": "critical"}
    assert names(labels) == ["pager", "retries"]


def test_the_deepest_matching_descendant_is_the_match():
    assert names({"customer_id": "acme", "endpoint": "batch"}) == ["acme-batch"]


def test_children_inherit_what_they_leave_unset():
    [batch] = tree().match({"customer_id": "acme", "endpoint": "batch"})
    assert batch.receivers == ("acme-slack",)  # from acme
    assert batch.group_by is None  # ["..."] from acme: every label
    assert batch.group_wait_s == 20  # from the root
    assert batch.group_interval_s == 300  # the named default, through the root
    assert batch.repeat_interval_s == 60  # its own
    [retries] = tree().match({"alertname": "retry_storm"})
    assert retries.receivers == ("default",) and retries.group_by == ("customer_id",)
    assert retries.group_interval_s == 30


def test_an_unset_root_falls_back_to_the_named_defaults():
    root = RouteNode.build(Route())
    assert root.receivers == () and root.group_by == ("customer_id",)
    assert (root.group_wait_s, root.group_interval_s, root.repeat_interval_s) == (
        30.0,
        300.0,
        14_400.0,
    )


def test_group_labels_are_the_group_by_labels_the_alert_has():
    [root] = tree().match({"customer_id": "initech", "endpoint": "chat"})
    assert root.group_labels({"customer_id": "initech", "endpoint": "chat"}) == {
        "customer_id": "initech"
    }
    assert root.group_labels({"provider": "openai"}) == {}
    [acme] = tree().match({"customer_id": "acme"})
    assert acme.group_labels({"customer_id": "acme", "endpoint": "x"}) == {
        "customer_id": "acme",
        "endpoint": "x",
    }


def test_group_keys_are_stable_and_name_the_route_path():
    [batch] = tree().match({"customer_id": "acme", "endpoint": "batch"})
    labels = {"endpoint": "batch", "customer_id": "acme"}
    assert group_key(batch, labels) == '{}/acme/acme-batch:{customer_id="acme", endpoint="batch"}'
    assert group_key(batch, labels) == group_key(
        tree().match(labels)[0], dict(reversed(labels.items()))
    )


def test_unnamed_routes_are_keyed_by_position():
    root = RouteNode.build(Route(routes=[Route(matchers=['a="1"']), Route(matchers=['a="2"'])]))
    assert [n.key for n in root.match({"a": "2"})] == ["{}/1"]
