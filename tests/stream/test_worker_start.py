"""``spendwatch worker`` refuses to start on what would crash it later."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_missing_receiver_secret_is_refused_at_start_with_its_name(tmp_path: Path) -> None:
    config = tmp_path / "spendwatch.yaml"
    config.write_text(
        json.dumps(
            {
                "prices_file": str(REPO / "config" / "prices.yaml"),
                "notify": {
                    "route": {"receivers": ["hook"]},
                    "receivers": [
                        {
                            "name": "hook",
                            "kind": "webhook",
                            "webhook": {"url": "http://127.0.0.1:9/x", "secret_env": "HOOK_KEY"},
                        }
                    ],
                },
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "HOOK_KEY"}
    # No broker at this address: the refusal must come before any connection attempt.
    env["SPENDWATCH_KAFKA__BOOTSTRAP_SERVERS"] = "127.0.0.1:9"
    done = subprocess.run(
        [sys.executable, "-m", "stream.commands.cli", "worker", "--config", str(config)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "worker not started" in done.stderr
    assert "hook" in done.stderr and "HOOK_KEY" in done.stderr
    assert "Traceback" not in done.stderr
