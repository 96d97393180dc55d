"""The contracts shipped in the package are the project's copy of shared/contracts."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from stream import contracts

SHARED = Path(__file__).resolve().parents[2] / "shared" / "contracts"


def test_the_package_ships_the_four_contracts() -> None:
    assert {"usage-event", "error-event", "customer", "alert-webhook"} == contracts.NAMES
    for name in contracts.NAMES:
        jsonschema.Draft202012Validator.check_schema(contracts.schema(name))


def test_an_unknown_contract_name_says_which_exist() -> None:
    with pytest.raises(KeyError, match="known: alert-webhook, customer"):
        contracts.path("usage")


@pytest.mark.skipif(not SHARED.is_dir(), reason="no shared/contracts beside this checkout")
def test_the_shipped_contracts_are_byte_identical_to_shared() -> None:
    """Where shared/ lies beside the repository it is the source of truth."""
    shared = {p.name: p.read_bytes() for p in SHARED.glob("*.json")}
    shipped = {p.name: p.read_bytes() for p in contracts.DIR.glob("*.json")}
    assert shipped == shared
