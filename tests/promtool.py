"""Prometheus's own ``promtool check metrics`` on a /metrics text (the format's judge).

Debian's ``prometheus`` package ships /usr/bin/promtool; ``make promtool`` installs it
(``make test`` does too). A missing promtool fails the test that needs it: never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

INSTALL_HINT = "promtool not found ({}): `make promtool` installs it (Debian's prometheus)"


def promtool() -> str:
    """The promtool executable, or the test fails saying how to install it."""
    found = os.environ.get("PROMTOOL") or shutil.which("promtool") or "/usr/bin/promtool"
    if not os.access(found, os.X_OK):
        pytest.fail(INSTALL_HINT.format(found), pytrace=False)
    return found


def check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    """``promtool check metrics`` with ``text`` on stdin; exit 0 means valid, linted clean."""
    return subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
