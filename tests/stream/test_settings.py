from pathlib import Path

import pytest

from stream.core.customers import load_customers
from stream.settings import DEFAULT_CONFIG, load_settings
from stream.settings.yamlsource import ConfigFileError


def write(tmp_path: Path, text: str, name: str = "spendwatch.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_shipped_config_loads():
    settings = load_settings(DEFAULT_CONFIG)
    assert settings.buckets.width_s == 60
    assert settings.detectors.spend_spike.relative_margin == 0.2
    assert settings.detectors.retry_storm.error_rate == 0.10
    assert settings.plan("free").cost_cap_usd == 25
    assert settings.plan("no-such-plan") == settings.plans["default"]
    assert settings.resolve(settings.prices_file) == DEFAULT_CONFIG.parent / "prices.yaml"


def test_the_shipped_customers_load():
    customers = load_customers(DEFAULT_CONFIG.parent / "customers.yaml")
    assert customers["initech"].monthly_price_usd == 0


@pytest.mark.parametrize(
    ("text", "line", "field", "why"),
    [
        ("buckets:\n  width_s: -1\n", 2, "buckets.width_s", "greater than 0"),
        (
            "detectors:\n  spend_spike:\n    min_zz: 3\n",
            3,
            "detectors.spend_spike.min_zz",
            "Unexpected",
        ),
        (
            "detectors:\n  retry_storm:\n    error_rate: 2\n",
            3,
            "detectors.retry_storm.error_rate",
            "less than or equal to 1",
        ),
        ("plans:\n  pro: {margin_target: lots}\n", 2, "plans.pro.margin_target", "valid number"),
        ("bukets: {}\n", 1, "bukets", "Extra inputs"),
    ],
)
def test_a_bad_config_names_file_line_field_and_reason(tmp_path, text, line, field, why):
    path = write(tmp_path, text)
    with pytest.raises(ConfigFileError) as info:
        load_settings(path)
    message = str(info.value)
    assert f"{path}:{line}: {field}:" in message
    assert why in message


def test_a_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "buckets:\n  width_s: 60\n   lateness: [\n")
    with pytest.raises(ConfigFileError, match=rf"{path}:3: YAML syntax error"):
        load_settings(path)


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, "detectors:\n  spend_spike:\n    min_z: 4\n")
    monkeypatch.setenv("SPENDWATCH_DETECTORS__SPEND_SPIKE__MIN_Z", "7.5")
    monkeypatch.setenv("SPENDWATCH_BUCKETS__WIDTH_S", "30")
    settings = load_settings(path)
    assert settings.detectors.spend_spike.min_z == 7.5
    assert settings.buckets.width_s == 30


def test_a_bad_environment_override_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SPENDWATCH_BUCKETS__WIDTH_S", "-3")
    with pytest.raises(ConfigFileError, match="buckets.width_s"):
        load_settings(write(tmp_path, "{}\n"))


def test_bad_customer_records_name_file_line_and_field(tmp_path):
    path = write(
        tmp_path,
        "- {customer_id: a, plan: pro, monthly_price_usd: 10}\n"
        "- {customer_id: b, plan: pro, monthly_price_usd: -1}\n",
        "c.yaml",
    )
    with pytest.raises(ConfigFileError, match=rf"{path}:2: 1.monthly_price_usd"):
        load_customers(path)
    jsonl = write(tmp_path, '{"customer_id": "a", "plan": "pro"}\n', "c.jsonl")
    with pytest.raises(ConfigFileError, match=rf"{jsonl}:1: monthly_price_usd"):
        load_customers(jsonl)


def test_a_secret_in_the_config_file_is_refused(tmp_path):
    path = write(tmp_path, "kafka:\n  sasl_username: svc\n  sasl_password: hunter2\n")
    with pytest.raises(ConfigFileError, match=rf"{path}:3: kafka.sasl_password: secrets are read"):
        load_settings(path)


def test_secrets_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SPENDWATCH_KAFKA__SASL_PASSWORD", "hunter2")
    settings = load_settings(write(tmp_path, "kafka:\n  security_protocol: SASL_SSL\n"))
    assert settings.kafka.sasl_password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)
