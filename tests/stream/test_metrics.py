"""/metrics text: one HELP/TYPE/samples block per declared family, checked by promtool."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from stream.metrics import FAMILIES, UNDECLARED_HELP, Family, Metrics
from tests.promtool import check_metrics

STREAM = Path(__file__).resolve().parents[2] / "stream"

# Label values a real worker can meet, and the characters the text format escapes.
AWKWARD = 'a\\b "quoted"\nline'


def populated() -> Metrics:
    """Every declared family with two samples (one with an awkward label value)."""
    m = Metrics()
    for family in FAMILIES.values():
        for n, value in enumerate(("plain", AWKWARD)):
            labels = {label: f"{value}-{label}" for label in family.labels}
            if family.kind == "summary":
                m.observe(family.name, 0.125 * (n + 1), **labels)
            elif family.kind == "counter":
                m.inc(family.name, n + 1, **labels)
            else:
                m.set(family.name, 2.5 * n, **labels)
    return m


def family_of(line: str) -> str:
    """The family a line of the text belongs to (a summary's samples to its base name)."""
    if line.startswith("#"):
        return line.split()[2]
    name = line.split("{")[0].split()[0]
    for suffix in ("_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and FAMILIES.get(base, Family(base, "counter", "")).kind == "summary":
            return base
    return name


def test_a_summary_renders_help_then_type_then_sum_and_count():
    m = Metrics()
    m.observe("spendwatch_batch_seconds", 0.5, stage="ingest")
    m.observe("spendwatch_batch_seconds", 0.25, stage="ingest")
    m.observe("spendwatch_batch_seconds", 2.0, stage="detect")
    lines = m.render().splitlines()
    start = lines.index("# TYPE spendwatch_batch_seconds summary") - 1
    assert lines[start].startswith("# HELP spendwatch_batch_seconds ")
    assert lines[start + 2 : start + 6] == [
        'spendwatch_batch_seconds_sum{stage="detect"} 2',
        'spendwatch_batch_seconds_count{stage="detect"} 1',
        'spendwatch_batch_seconds_sum{stage="ingest"} 0.75',
        'spendwatch_batch_seconds_count{stage="ingest"} 2',
    ]
    assert sum("batch_seconds" in line for line in lines) == 6


@pytest.mark.parametrize("family", FAMILIES.values(), ids=lambda f: f.name)
def test_every_declared_family_has_help_and_type_in_an_empty_render(family):
    lines = Metrics().render().splitlines()
    at = lines.index(f"# HELP {family.name} {family.help}")
    assert lines[at + 1] == f"# TYPE {family.name} {family.kind}"
    samples = [
        line for line in lines if not line.startswith("#") and family_of(line) == family.name
    ]
    if family.kind == "counter" and not family.labels:
        assert samples == [f"{family.name} 0"]  # unlabelled counters start at zero
    else:
        assert samples == []


def test_an_empty_render_passes_promtool():
    result = check_metrics(Metrics().render())
    assert result.returncode == 0, result.stdout + result.stderr


def test_dead_letters_are_declared_before_the_first_one():
    text = Metrics().render()
    assert "# HELP spendwatch_dead_letters_total " in text
    assert "# TYPE spendwatch_dead_letters_total counter" in text


def test_each_family_is_one_block_in_the_declared_order():
    lines = populated().render().splitlines()
    blocks = [family_of(line) for line in lines]
    runs = [name for i, name in enumerate(blocks) if i == 0 or blocks[i - 1] != name]
    assert runs == list(FAMILIES)  # each name once (one contiguous block), declared order
    for name in FAMILIES:
        at = lines.index(f"# TYPE {name} {FAMILIES[name].kind}")
        assert lines[at - 1].startswith(f"# HELP {name} ")


def test_label_values_are_escaped_per_the_text_format():
    m = Metrics()
    m.inc("spendwatch_dead_letters_total", reason=AWKWARD)
    assert 'spendwatch_dead_letters_total{reason="a\\\\b \\"quoted\\"\\nline"} 1' in m.render()


def test_numbers_render_as_prometheus_spells_them():
    m = Metrics()
    m.set("spendwatch_event_time_lag_seconds", float("inf"))
    m.set("spendwatch_notification_queue_depth", float("nan"), receiver="r")
    m.inc("spendwatch_events_in_total", 0.5, topic="usage")
    text = m.render()
    assert "spendwatch_event_time_lag_seconds +Inf" in text
    assert 'spendwatch_notification_queue_depth{receiver="r"} NaN' in text
    assert 'spendwatch_events_in_total{topic="usage"} 0.5' in text
    assert check_metrics(text).returncode == 0


def test_promtool_accepts_a_render_with_every_family_populated():
    text = populated().render()
    result = check_metrics(text)
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{text}"


def test_promtool_fails_a_summary_count_before_its_help_and_type():
    """The order the old sorted render produced: so the check above can fail."""
    text = (
        'spendwatch_batch_seconds_count{stage="ingest"} 1\n'
        "# HELP spendwatch_batch_seconds Time to process one batch.\n"
        "# TYPE spendwatch_batch_seconds summary\n"
        'spendwatch_batch_seconds_sum{stage="ingest"} 0.25\n'
    )
    result = check_metrics(text)
    assert result.returncode != 0
    assert "spendwatch_batch_seconds_count" in result.stdout + result.stderr


def test_an_undeclared_name_still_renders_with_a_generic_help():
    """Rendering never crashes on a forgotten declaration; the source scan below is the
    test that catches one."""
    m = Metrics()
    m.inc("spendwatch_new_things_total", kind="x")
    m.set("spendwatch_new_level", 3)
    m.observe("spendwatch_new_seconds", 0.5)
    text = m.render()
    assert text.endswith(
        f"# HELP spendwatch_new_level {UNDECLARED_HELP}\n"
        "# TYPE spendwatch_new_level gauge\n"
        "spendwatch_new_level 3\n"
        f"# HELP spendwatch_new_seconds {UNDECLARED_HELP}\n"
        "# TYPE spendwatch_new_seconds summary\n"
        "spendwatch_new_seconds_sum 0.5\n"
        "spendwatch_new_seconds_count 1\n"
        f"# HELP spendwatch_new_things_total {UNDECLARED_HELP}\n"
        "# TYPE spendwatch_new_things_total counter\n"
        'spendwatch_new_things_total{kind="x"} 1\n'
    )
    assert check_metrics(text).returncode == 0


def metric_writes() -> list[tuple[str, str, set[str] | None]]:
    """(where, name, label names or None if not visible) for each metric the code writes:
    ``.inc/.set/.observe("spendwatch_...", ..., label=...)`` and ``.counters["spendwatch_..."]``."""
    found = []
    for path in sorted(STREAM.rglob("*.py")):
        if path.name == "metrics.py" and path.parent == STREAM:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(STREAM.parent)}:{getattr(node, 'lineno', 0)}"
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("inc", "set", "observe")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).startswith("spendwatch_")
            ):
                labels = {k.arg for k in node.keywords if k.arg and k.arg != "amount"}
                found.append((where, str(node.args[0].value), labels))
            elif (
                isinstance(node, ast.Subscript)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr in ("counters", "gauges")
                and isinstance(node.slice, ast.Constant)
            ):
                found.append((where, str(node.slice.value), None))
    return found


def test_every_metric_the_stream_code_writes_is_declared_with_its_labels():
    writes = metric_writes()
    assert len(writes) >= 15, writes  # the scan sees the worker's writes
    for where, name, labels in writes:
        assert name in FAMILIES, f"{where}: {name} is not declared in stream/metrics.py"
        if labels is not None:
            assert labels == set(FAMILIES[name].labels), f"{where}: {name} labels {labels}"
