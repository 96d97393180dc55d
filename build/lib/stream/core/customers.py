"""Customer records from config: a YAML list (config/customers.yaml) or JSON lines.

Each bad record is refused with the file, the line, the field and why; nothing is guessed.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from stream.core.events import Customer, Rejection, parse_customer
from stream.settings.yamlsource import ConfigFileError, describe_errors, load_yaml


def load_customers(path: Path) -> dict[str, Customer]:
    """Customers by id from ``path`` (``.jsonl`` / ``.json`` lines, else a YAML list)."""
    if path.suffix in (".jsonl", ".ndjson"):
        return _from_jsonl(path)
    data, lines = load_yaml(path)
    if data == {}:
        return {}
    if not isinstance(data, list):
        raise ConfigFileError(f"{path}: expected a list of customer records")
    customers: dict[str, Customer] = {}
    errors: list[str] = []
    for i, record in enumerate(data):
        try:
            customer = Customer.model_validate(record)
        except ValidationError as exc:
            errors.append(describe_errors(path, exc, lines, prefix=(i,)))
            continue
        customers[customer.customer_id] = customer
    if errors:
        raise ConfigFileError("\n".join(errors))
    return customers


def _from_jsonl(path: Path) -> dict[str, Customer]:
    customers: dict[str, Customer] = {}
    errors: list[str] = []
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            record = parse_customer(raw)
            if isinstance(record, Rejection):
                errors.append(f"{path}:{number}: {record.field}: {record.detail}")
            else:
                customers[record.customer_id] = record
    if errors:
        raise ConfigFileError("\n".join(errors))
    return customers
