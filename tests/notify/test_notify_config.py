"""Notify settings: matchers, validation errors that name what is wrong, the shipped example."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from stream.settings import DEFAULT_CONFIG, Settings, load_settings
from stream.settings.notify import InhibitRule, Matcher, NotifySettings, SilenceSpec
from stream.settings.yamlsource import ConfigFileError
from tests.notify.scenarios import notify_settings


@pytest.mark.parametrize(
    ("text", "name", "op", "value"),
    [
        ('severity="critical"', "severity", "=", "critical"),
        ('customer_id!="acme"', "customer_id", "!=", "acme"),
        ('endpoint=~"chat|embed"', "endpoint", "=~", "chat|embed"),
        ('model!~"gpt-4.*"', "model", "!~", "gpt-4.*"),
        ("severity=critical", "severity", "=", "critical"),
        ('  team = "a b"  ', "team", "=", "a b"),
        (r'summary="say \"hi\""', "summary", "=", 'say "hi"'),
        (r'endpoint=~"v\d+"', "endpoint", "=~", r"v\d+"),
        ('customer_id=""', "customer_id", "=", ""),
    ],
)
def test_a_matcher_parses_from_its_alertmanager_string(text, name, op, value):
    matcher = Matcher.parse(text)
    assert (matcher.name, matcher.op, matcher.value) == (name, op, value)
    assert Matcher.parse(str(matcher)) == matcher


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('endpoint=~"chat|embed"', {"endpoint": "chat"}, True),
        ('endpoint=~"chat"', {"endpoint": "chatter"}, False),  # anchored at both ends
        ('endpoint=~"hat"', {"endpoint": "chat"}, False),
        ('endpoint!~"chat"', {"endpoint": "embed"}, True),
        ('endpoint!="chat"', {}, True),
        ('endpoint=""', {}, True),  # a missing label is the empty string
        ('endpoint=~".+"', {}, False),
        (r'endpoint=~"v\d+"', {"endpoint": "v12"}, True),
    ],
)
def test_a_matcher_matches_as_alertmanager_does(text, labels, expected):
    assert Matcher.parse(text).matches(labels) is expected


def test_a_bad_regex_is_an_error_naming_the_matcher():
    with pytest.raises(ValueError, match=r"bad matcher 'endpoint=~\"\(chat\"': invalid regex"):
        Matcher.parse('endpoint=~"(chat"')
    with pytest.raises(ValidationError) as info:
        NotifySettings(route={"routes": [{"matchers": ['endpoint=~"[a-"']}]})
    assert "route.routes.0.matchers" in str(info.value)
    assert "bad matcher 'endpoint=~\"[a-\"'" in str(info.value)


@pytest.mark.parametrize("text", ["severity", "=x", '1abc="x"', 'a="x', 'a=x"'])
def test_a_malformed_matcher_is_refused(text):
    with pytest.raises(ValueError, match="bad matcher"):
        Matcher.parse(text)


def test_the_default_notify_settings_are_valid_with_no_receivers():
    settings = Settings().notify
    assert settings.receivers == [] and settings.route.receivers == []
    assert (settings.route.group_wait_s, settings.route.group_interval_s) == (30, 300)
    assert settings.route.repeat_interval_s == 14_400
    assert settings.inhibit_rules == [
        InhibitRule(
            source_matchers=['severity="critical"'],
            target_matchers=['severity="warning"'],
            equal=["alertname", "customer_id"],
        )
    ]


def test_a_route_naming_an_undefined_receiver_is_refused_naming_both():
    with pytest.raises(ValidationError) as info:
        notify_settings(
            {"routes": [{"name": "acme", "matchers": ['customer_id="acme"'], "receivers": ["x"]}]},
            "hook",
        )
    message = str(info.value)
    assert "route 'acme' (notify.route.routes[0]) names receiver 'x'" in message
    assert "defined: hook" in message


def test_an_unnamed_route_is_named_by_its_path():
    with pytest.raises(ValidationError, match=r"route notify.route.routes\[1\].routes\[0\] names"):
        notify_settings({"routes": [{}, {"routes": [{"receivers": ["nope"]}]}]}, "hook")


def test_duplicate_route_names_are_refused():
    with pytest.raises(ValidationError, match=r"route name 'a' is already used by notify.route"):
        notify_settings({"routes": [{"name": "a"}, {"routes": [{"name": "a"}]}]})


def test_duplicate_receiver_names_are_refused():
    with pytest.raises(ValidationError, match="names must be unique; repeated: hook"):
        notify_settings({}, "hook", "hook")


def test_the_root_route_takes_every_alert():
    with pytest.raises(ValidationError, match="must have no matchers"):
        notify_settings({"matchers": ['severity="critical"']})


def test_continue_is_spelled_as_in_alertmanager():
    settings = notify_settings({"routes": [{"continue": True}, {}]})
    assert settings.route.routes[0].continue_ and not settings.route.routes[1].continue_


@pytest.mark.parametrize("when", ["2026-12-01T02:00:00Z", 1796090400, "2026-12-01T03:00:00+01:00"])
def test_a_static_silence_takes_rfc3339_or_epoch_seconds(when):
    spec = SilenceSpec(
        matchers=['customer_id="acme"'],
        starts_at=when,
        ends_at="2026-12-01T04:00:00Z",
        author="ana",
        comment="batch",
    )
    assert spec.starts_at.timestamp() == 1796090400
    assert spec.created_by == "ana"
    assert spec.silence_id() == spec.silence_id() and spec.silence_id().startswith("static-")


def test_a_static_silence_must_end_after_it_starts():
    with pytest.raises(ValidationError, match="must be after starts_at"):
        SilenceSpec(matchers=['a="b"'], starts_at=100, ends_at=50, created_by="ana", comment="oops")


def test_a_bad_notify_section_in_the_file_names_file_line_and_field(tmp_path: Path):
    path = tmp_path / "spendwatch.yaml"
    path.write_text("notify:\n  route:\n    routes:\n      - matchers: ['severity=~\"(\"']\n")
    with pytest.raises(ConfigFileError) as info:
        load_settings(path)
    assert f"{path}:4: notify.route.routes.0.matchers:" in str(info.value)
    assert "bad matcher" in str(info.value)


def test_the_commented_notify_example_in_the_shipped_config_is_valid(tmp_path: Path):
    text = DEFAULT_CONFIG.read_text()
    start = text.index("# notify:")
    example = "\n".join(line[2:] for line in text[start:].splitlines())
    path = tmp_path / "spendwatch.yaml"
    path.write_text(text[:start] + example + "\n")
    settings = load_settings(path).notify
    assert [r.name for r in settings.receivers] == ["oncall-slack", "account-webhook", "pagerduty"]
    assert settings.route.routes[0].continue_
    assert len(settings.silences) == 1
