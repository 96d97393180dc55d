"""Imports run one way: commands -> kafka -> offline | notify -> core -> settings -> ground
floor (logs, metrics, contracts) -> detectors.

A module may import its own layer and any layer below it, never one above; ``offline`` and
``notify`` stand side by side and import neither each other. The check is a walk over every
import statement of the tree (function-level and ``TYPE_CHECKING`` imports included), so it
needs no import of the code and no extra tool.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Rank of each layer: a module may import ranks below its own, and its own package.
LAYERS: dict[str, int] = {
    "stream.commands": 6,
    "stream.kafka": 5,
    "stream.offline": 4,
    "stream.notify": 4,
    "stream.core": 3,
    "stream.settings": 2,
    "stream.logs": 1,
    "stream.metrics": 1,
    "stream.contracts": 1,
    "detectors": 0,
}


def layer_of(module: str) -> str | None:
    """The layer a dotted module name belongs to (the longest matching prefix)."""
    for name in sorted(LAYERS, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    return None


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``tree``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                drop = node.level - 1 if is_package else node.level
                base = base[: len(base) - drop] if drop else base
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # `from stream import kafka` names a sub-package: judge the sub-package
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def violations(root: Path, packages: tuple[str, ...] = ("stream", "detectors")) -> list[str]:
    """Every import under ``root`` that runs up the layers or sideways between siblings."""
    found: list[str] = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(root, path)
            if module == "stream":  # the root package's empty __init__
                continue
            source = layer_of(module)
            if source is None:
                found.append(f"{path.relative_to(root)}: module {module} is in no layer")
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            seen: set[tuple[int, str]] = set()
            for line, target in imported(tree, module, path.name == "__init__.py"):
                dest = layer_of(target)
                if dest is None or dest == source or (line, dest) in seen:
                    continue
                seen.add((line, dest))
                if LAYERS[dest] >= LAYERS[source]:
                    found.append(
                        f"{path.relative_to(root)}:{line}: {source} imports {target} "
                        f"({dest} is not below {source})"
                    )
    return found


def test_every_import_points_down_the_layers() -> None:
    assert violations(REPO) == []


def test_every_stream_module_is_in_a_layer() -> None:
    stray = [
        str(p.relative_to(REPO))
        for p in (REPO / "stream").glob("*.py")
        if p.name != "__init__.py" and layer_of(module_name(REPO, p)) is None
    ]
    assert stray == []


@pytest.mark.parametrize(
    ("where", "source", "wrong"),
    [
        ("stream/core/detect.py", "", "from stream.kafka.worker import Worker\n"),
        ("stream/settings/cron.py", "", "import stream.core.events\n"),
        ("stream/notify/routing.py", "", "from stream.offline import replay\n"),
        ("stream/offline/replay.py", "", "from stream.notify.model import Notification\n"),
        ("detectors/spend_spike.py", "", "from stream.settings import Settings\n"),
        ("stream/core/pipeline.py", "def f():\n", "    from ..commands import cli\n"),
        ("stream/metrics.py", "", "from stream.core import alerts\n"),
    ],
)
def test_a_wrong_import_is_caught(tmp_path: Path, where: str, source: str, wrong: str) -> None:
    target = tmp_path / where
    target.parent.mkdir(parents=True)
    for parent in target.relative_to(tmp_path).parents:
        if str(parent) != ".":
            (tmp_path / parent / "__init__.py").touch()
    target.write_text(source + wrong)
    [found] = violations(tmp_path)
    assert where in found and "is not below" in found


def test_imports_down_and_within_a_layer_are_allowed(tmp_path: Path) -> None:
    (tmp_path / "stream" / "kafka").mkdir(parents=True)
    (tmp_path / "stream" / "__init__.py").touch()
    (tmp_path / "stream" / "kafka" / "__init__.py").touch()
    (tmp_path / "stream" / "kafka" / "worker.py").write_text(
        "from stream.kafka.state import partition_of\n"
        "from .connection import client_kwargs\n"
        "from stream.offline.replay import replay_files\n"
        "from stream.core.detect import Detector\n"
        "from stream.metrics import Metrics\n"
        "from detectors.spend_spike import SpendSpike\n"
    )
    assert violations(tmp_path) == []
