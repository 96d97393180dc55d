"""``spendwatch config check``: every config file validated, every problem reported at once.

Errors (the config cannot be used) and warnings (it can, but part of it never applies)
each name the file, the line, the field path and what is wrong. Files are checked
independently, so a broken spendwatch.yaml does not hide a broken price table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.core.customers import load_customers
from stream.core.events import Customer
from stream.core.pricing import PriceConfigError, PriceTable
from stream.settings import CONFIG_DIR, DEFAULT_CONFIG, Settings, load_settings
from stream.settings.overrides import DETECTORS, KEY_FIELDS, Match, is_literal
from stream.settings.yamlsource import ConfigFileError, Lines, line_of, load_yaml

ALERTNAMES = ("spend_spike", "cost_shift", "retry_storm", "margin_breach")
SEVERITIES = ("warning", "critical")
_MATCHER = re.compile(r'^\s*(\w+)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')
_ROUTE_PATH = re.compile(r"notify\.route((?:\.routes\[\d+\])*)")


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # "error" | "warning"
    text: str  # file:line: field: what is wrong


@dataclass
class Report:
    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]


def check(path: Path | None = None) -> Report:
    """Check the config at ``path`` (default config/spendwatch.yaml) and the files it names."""
    file = path or DEFAULT_CONFIG
    findings: list[Finding] = []
    settings: Settings | None = None
    raw: Any = {}
    lines: Lines = {}
    try:
        raw, lines = load_yaml(file)
        settings = load_settings(file)
    except ConfigFileError as exc:
        findings += [Finding("error", _precise(t, lines)) for t in str(exc).splitlines()]
    base = file.parent if file.exists() else CONFIG_DIR
    raw = raw if isinstance(raw, dict) else {}
    prices_path = (
        settings.resolve(settings.prices_file)
        if settings
        else base / str(raw.get("prices_file") or "prices.yaml")
    )
    prices: PriceTable | None = None
    try:
        prices = PriceTable.load(prices_path)
    except PriceConfigError as exc:
        findings += [Finding("error", t) for t in str(exc).splitlines()]
    customers_name = settings.customers_file if settings else raw.get("customers_file")
    customers: dict[str, Customer] | None = None
    if customers_name:
        customers_path = (
            settings.resolve(Path(customers_name)) if settings else base / customers_name
        )
        try:
            customers = load_customers(customers_path)
        except ConfigFileError as exc:
            findings += [Finding("error", t) for t in str(exc).splitlines()]
    if settings is not None:
        findings += [
            Finding("warning", t) for t in _rule_warnings(file, lines, settings, prices, customers)
        ]
        findings += [Finding("warning", t) for t in _route_warnings(file, lines, settings)]
    return Report(findings)


def _precise(text: str, lines: Lines) -> str:
    """A notify error naming a route path gets that route's line, not the section's."""
    found = _ROUTE_PATH.search(text)
    if not found or not lines:
        return text
    loc: tuple[str | int, ...] = ("notify", "route")
    for index in re.findall(r"\d+", found.group(1)):
        loc = (*loc, "routes", int(index))
    line = line_of(lines, loc)
    return (
        re.sub(r"^(.*?):\d+:", lambda m: f"{m.group(1)}:{line}:", text, count=1) if line else text
    )


def _where(file: Path, lines: Lines, loc: tuple[str | int, ...]) -> str:
    line = line_of(lines, loc)
    field = ".".join(str(p) for p in loc)
    return f"{file}:{line}: {field}" if line else f"{file}: {field}"


def _rule_warnings(
    file: Path,
    lines: Lines,
    settings: Settings,
    prices: PriceTable | None,
    customers: dict[str, Customer] | None,
) -> list[str]:
    out: list[str] = []
    det = settings.detectors
    rules: list[tuple[str, Any]] = [("overrides", r) for r in det.overrides]
    rules += [("windows", w) for w in det.windows]
    counts = {"overrides": 0, "windows": 0}
    for section, rule in rules:
        i = counts[section]
        counts[section] += 1
        loc = ("detectors", section, i)
        out += _never_matches(file, lines, (*loc, "match"), rule.match, settings, prices, customers)
        touched = [d for d in DETECTORS if rule.patch(d) or d in getattr(rule, "mute", ())]
        for d in touched:
            missing = [f for f in rule.match.given() if f not in KEY_FIELDS[d]]
            if missing:
                out.append(
                    f"{_where(file, lines, (*loc, 'match'))}: never applies to {d}: its keys have "
                    f"no {', '.join(missing)} (they have {', '.join(KEY_FIELDS[d])})"
                )
    for j, later in enumerate(det.overrides):
        by = _shadowed_by(det.overrides[:j], later)
        if by is not None:
            out.append(
                f"{_where(file, lines, ('detectors', 'overrides', j))}: shadowed: every key it "
                f"matches takes each parameter it sets from an earlier override ({by})"
            )
    return out


def _never_matches(
    file: Path,
    lines: Lines,
    loc: tuple[str | int, ...],
    match: Match,
    settings: Settings,
    prices: PriceTable | None,
    customers: dict[str, Customer] | None,
) -> list[str]:
    out = []
    given = match.given()
    plan = given.get("plan")
    if plan is not None and is_literal(plan) and plan not in settings.plans:
        out.append(
            f"{_where(file, lines, (*loc, 'plan'))}: can never match: plan {plan!r} is not "
            f"defined in plans (defined: {', '.join(settings.plans)})"
        )
    customer = given.get("customer_id")
    known_customer = customers is None or customer is None or not is_literal(customer)
    if not known_customer and customer not in (customers or {}):
        out.append(
            f"{_where(file, lines, (*loc, 'customer_id'))}: may never match: customer "
            f"{customer!r} is not in {settings.customers_file} (the customers topic may add it)"
        )
    model = given.get("model")
    if prices is not None and model is not None and is_literal(model):
        provider = given.get("provider")
        if prices.resolve(provider if provider and is_literal(provider) else "", model) is None:
            out.append(
                f"{_where(file, lines, (*loc, 'model'))}: may never match: model {model!r} is "
                f"not in the price table {settings.prices_file}"
            )
    return out


def _shadowed_by(earlier: list[Any], later: Any) -> str | None:
    """The earlier overrides that set every parameter ``later`` sets, for every key it
    matches; None when ``later`` takes effect somewhere (or sets nothing)."""
    sets = [(d, p) for d in DETECTORS for p in later.patch(d)]
    if not sets:
        return None
    used: list[int] = []
    for d, p in sets:
        for i, rule in enumerate(earlier):
            if p in rule.patch(d) and rule.match.covers(later.match):
                used.append(i)
                break
        else:
            return None
    return ", ".join(f"overrides[{i}]" for i in sorted(set(used)))


def _route_warnings(file: Path, lines: Lines, settings: Settings) -> list[str]:
    """Routes no alert can reach: a matcher on alertname or severity no alert carries."""
    route = getattr(getattr(settings, "notify", None), "route", None)
    if route is None or not hasattr(route, "walk"):
        return []
    known = {"alertname": ALERTNAMES, "severity": SEVERITIES}
    out = []
    for path, node in route.walk("notify.route"):
        for text in getattr(node, "matchers", []):
            found = _MATCHER.match(str(text))
            if not found or found.group(1) not in known:
                continue
            name, op, value = found.groups()
            values = known[name]
            if op in ("=", "=~"):
                test = re.compile(value).fullmatch if op == "=~" else value.__eq__
                if not any(test(v) for v in values):
                    loc: tuple[str | int, ...] = ("notify", "route")
                    for index in re.findall(r"\d+", path):
                        loc = (*loc, "routes", int(index))
                    out.append(
                        f"{_where(file, lines, (*loc, 'matchers'))}: no alert can reach this "
                        f"route: {name} is one of {', '.join(values)} (matcher {text})"
                    )
    return out
