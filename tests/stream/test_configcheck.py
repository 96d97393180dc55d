"""`spendwatch config check / explain / schema` on shipped and broken config files."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from stream.commands.cli import main
from stream.commands.schema import config_schema
from stream.settings import CONFIG_DIR

SHIPPED_PRICES = (CONFIG_DIR / "prices.yaml").resolve()


def config(tmp_path: Path, body: str, customers: str | None = None) -> Path:
    head = f"prices_file: {SHIPPED_PRICES}\n"
    if customers is not None:
        (tmp_path / "customers.yaml").write_text(customers)
        head += "customers_file: customers.yaml\n"
    path = tmp_path / "spendwatch.yaml"
    path.write_text(head + body)
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["config", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_shipped_config_has_no_errors_or_warnings(capsys):
    code, _, err = run(capsys, "check")
    assert code == 0
    assert "(0 errors, 0 warnings)" in err


def test_a_yaml_syntax_error_names_file_and_line(tmp_path, capsys):
    path = config(tmp_path, "buckets:\n  width_s: [60\n")
    code, _, err = run(capsys, "check", str(path))
    assert code == 2
    assert f"error: {path}:" in err and "YAML syntax error" in err


def test_every_error_is_reported_with_file_line_field_and_value(tmp_path, capsys):
    path = config(
        tmp_path,
        "buckets:\n"
        "  width_s: -1\n"  # line 3: out of range
        "  colour: blue\n"  # line 4: unknown field
        "detectors:\n"
        "  overrides:\n"
        "    - match: {endpoint: '/batch(/'}\n"  # line 7: bad regex
        "      spend_spike: {min_z: 3}\n"
        "  windows:\n"
        "    - {cron: '0 25 * * *', duration: 2h, mute: [spend_spike]}\n",  # line 10
    )
    code, _, err = run(capsys, "check", str(path))
    assert code == 2
    assert f"{path}:3: buckets.width_s: Input should be greater than 0 (got -1)" in err
    assert f"{path}:4: buckets.colour: Extra inputs are not permitted" in err
    assert f"{path}:7: detectors.overrides.0.match.endpoint:" in err and "regular expression" in err
    assert f"{path}:10: detectors.windows.0.cron:" in err and "0-23" in err
    assert "(4 errors, 0 warnings)" in err


def test_a_broken_customers_file_is_reported_beside_the_config(tmp_path, capsys):
    path = config(tmp_path, "buckets: {width_s: 0}\n", customers="- {customer_id: x, plan: 3}\n")
    code, _, err = run(capsys, "check", str(path))
    assert code == 2
    assert f"{path}:3: buckets.width_s" in err
    assert f"{tmp_path / 'customers.yaml'}:1:" in err


def test_overrides_that_can_never_match_are_warnings(tmp_path, capsys):
    path = config(
        tmp_path,
        "detectors:\n"
        "  overrides:\n"
        "    - match: {plan: platinum}\n"  # line 5
        "      spend_spike: {min_z: 3}\n"
        "    - match: {customer_id: nobody}\n"  # line 7
        "      spend_spike: {min_z: 3}\n"
        "    - match: {model: gpt-9-ultra}\n"  # line 9
        "      retry_storm_global: {error_rate: 0.5}\n"
        "    - match: {customer_id: acme}\n"  # line 11
        "      spend_spike: {min_z: 4, consecutive: 2}\n"
        "    - match: {customer_id: acme, endpoint: batch}\n"  # line 13: shadowed
        "      spend_spike: {min_z: 9}\n"
        "    - match: {model: gpt-4o}\n"  # line 15: spend_spike keys have no model
        "      spend_spike: {min_z: 9}\n",
        customers="- {customer_id: acme, plan: pro, monthly_price_usd: 10}\n",
    )
    code, _, err = run(capsys, "check", str(path))
    assert code == 0, err
    assert f"{path}:5: detectors.overrides.0.match.plan: can never match: plan 'platinum'" in err
    assert f"{path}:7: detectors.overrides.1.match.customer_id: may never match" in err
    assert f"{path}:9: detectors.overrides.2.match.model: may never match" in err
    assert f"{path}:13: detectors.overrides.4: shadowed" in err and "overrides[3]" in err
    assert f"{path}:15: detectors.overrides.5.match: never applies to spend_spike" in err
    assert "(0 errors, 5 warnings)" in err


NOTIFY = """notify:
  receivers:
    - {name: slack-a, kind: slack, slack: {channel: "#a"}}
  route:
    receivers: [slack-a]
    routes:
%s
"""


def test_a_route_naming_an_undefined_receiver_is_an_error_with_its_line(tmp_path, capsys):
    routes = "      - name: pager\n        receivers: [pagerduty]\n"
    path = config(tmp_path, NOTIFY % routes)
    code, _, err = run(capsys, "check", str(path))
    assert code == 2
    assert f"{path}:8:" in err and "pagerduty" in err


def test_duplicate_route_names_are_an_error_with_file_and_line(tmp_path, capsys):
    routes = (
        "      - {name: twice, matchers: ['severity=\"critical\"']}\n"
        "      - {name: twice, matchers: ['severity=\"warning\"']}\n"
    )
    path = config(tmp_path, NOTIFY % routes)
    code, _, err = run(capsys, "check", str(path))
    assert code == 2
    assert f"{path}:" in err and "twice" in err


def test_routes_no_alert_can_reach_are_warnings(tmp_path, capsys):
    routes = (
        "      - {name: typo, matchers: ['alertname=\"spend_spikes\"']}\n"
        "      - {name: sev, matchers: ['severity=~\"page|urgent\"']}\n"
        "      - {name: fine, matchers: ['alertname=~\"spend_.*\"']}\n"
    )
    path = config(tmp_path, NOTIFY % routes)
    code, _, err = run(capsys, "check", str(path))
    assert code == 0, err
    assert f"{path}:8: notify.route.routes.0.matchers: no alert can reach" in err
    assert f"{path}:9: notify.route.routes.1.matchers: no alert can reach" in err
    assert "(0 errors, 2 warnings)" in err


def test_explain_shows_each_parameter_and_where_it_came_from(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SPENDWATCH_DETECTORS__SPEND_SPIKE__CALM_BUCKETS", "7")
    path = config(
        tmp_path,
        "detectors:\n"
        "  spend_spike:\n"
        "    min_z: 6\n"  # line 4
        "  overrides:\n"
        "    - match: {customer_id: acme}\n"
        "      spend_spike: {relative_margin: 1.0}\n"
        "    - match: {customer_id: acme, endpoint: batch}\n"
        "      spend_spike: {relative_margin: 2.0, consecutive: 5}\n"
        "  windows:\n"
        "    - name: nightly\n"
        "      match: {customer_id: acme}\n"
        "      cron: '0 2 * * *'\n"
        "      duration: 2h\n"
        "      timezone: Europe/Berlin\n"
        "      mute: [retry_storm]\n",
    )
    code, out, _ = run(
        capsys,
        "explain",
        "--config",
        str(path),
        "--customer",
        "acme",
        "--endpoint",
        "batch",
        "--at",
        "2026-11-02T01:30:00Z",
    )
    assert code == 0
    spike = out.split("\n\n")[0].splitlines()
    assert spike[0].startswith("spend_spike (") and "customer_id=acme, endpoint=batch" in spike[0]
    rows = {line.split()[0]: line for line in spike[1:]}
    assert rows["relative_margin"].split()[1:3] == ["1.0", "overrides[0]"]
    assert rows["consecutive"].endswith("overrides[1] (customer_id=acme, endpoint=batch)")
    assert rows["min_z"].endswith(f"{path}:4")
    assert rows["calm_buckets"].endswith(
        "environment SPENDWATCH_DETECTORS__SPEND_SPIKE__CALM_BUCKETS"
    )
    assert rows["clip_z"].endswith("built-in default")
    muted = "retry_storm (per customer + endpoint; key: customer_id=acme, endpoint=batch)"
    assert f"{muted} - MUTED by windows[0] nightly" in out
    assert (
        "windows[0] nightly: cron '0 2 * * *' for 7200s Europe/Berlin, mutes retry_storm (open)"
        in out
    )


def test_the_shipped_schema_is_the_generated_one_and_the_shipped_config_validates():
    shipped = json.loads((CONFIG_DIR / "spendwatch.schema.json").read_text())
    assert shipped == config_schema(), (
        "regenerate: spendwatch config schema --out config/spendwatch.schema.json"
    )
    text = (CONFIG_DIR / "spendwatch.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=spendwatch.schema.json\n")
    jsonschema.Draft202012Validator(shipped).validate(yaml.safe_load(text))


@pytest.mark.parametrize(
    "bad", [{"buckets": {"width_s": -1}}, {"detectors": {"overrides": [{"spend_spike": {}}]}}]
)
def test_the_schema_refuses_what_the_models_refuse(bad):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(config_schema()).validate(bad)
