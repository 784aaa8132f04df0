"""The import rules of docs/architecture.md, checked on the sources (nothing is imported).

``../shared/tools/layout-report`` checks the package-level direction; these are the
finer rules: the Redis contract and the captioner import nothing else of ours, stream
reaches the worker only through its bus and one function, nothing imports the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
OURS = ("captioner", "worker", "stream")


def _imports() -> dict[str, set[str]]:
    """Module → the modules of ours it imports (also inside functions and TYPE_CHECKING)."""
    out: dict[str, set[str]] = {}
    for package in OURS:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            found: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.update(f"{node.module}.{a.name}" for a in node.names)  # what is used
            out[name] = {m for m in found if m.split(".")[0] in OURS}
    return out


IMPORTS = _imports()


def _offenders(importers: str, allowed: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in IMPORTS.items()
        if module == importers or module.startswith(importers + ".")
        for target in targets
        if not any(target == a or target.startswith(a + ".") for a in allowed)
    )


def test_the_rules_see_every_package() -> None:
    assert {"captioner.api", "worker.bus.keys", "stream.cli.main", "stream.protocol"} <= set(
        IMPORTS
    )


def test_the_captioner_imports_nothing_else_of_ours() -> None:
    assert _offenders("captioner", ("captioner",)) == []


def test_the_redis_contract_imports_nothing_else_of_ours() -> None:
    assert _offenders("worker.bus", ("worker.bus",)) == []


def test_the_worker_imports_the_captioner_and_its_bus_only() -> None:
    assert _offenders("worker", ("worker", "captioner")) == []


def test_stream_reaches_the_worker_through_its_bus_and_one_function() -> None:
    parts = [
        m
        for m in IMPORTS
        if m.startswith("stream.") and not m.startswith(("stream.cli", "stream.bench"))
    ]
    allowed = ("stream", "worker.bus", "worker.captioning.caption_frames", "captioner")
    offenders = [o for m in parts for o in _offenders(m, allowed) if o.startswith(m + " ")]
    assert offenders == []
    internals = (
        "captioner.training",
        "captioner.model",
        "captioner.encoder",
        "captioner.search.search",
    )
    reaching_in = sorted(
        f"{m} imports {t}" for m in parts for t in IMPORTS[m] if t.startswith(internals)
    )
    assert reaching_in == []


def test_nothing_imports_the_cli() -> None:
    assert (
        sorted(
            f"{m} imports {t}"
            for m, targets in IMPORTS.items()
            if not m.startswith("stream.cli")
            for t in targets
            if t == "stream.cli" or t.startswith("stream.cli.")
        )
        == []
    )
