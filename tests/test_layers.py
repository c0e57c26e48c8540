"""The package's layers, read from its source: no import cycle among its modules (function-level
imports included), and no import from a lower layer into a higher one.

Layers, from the ground up (a module may import its own layer and those below):

0. ground floor: ``envs``, ``nn``, ``checkpoints``, ``viz`` (trajectory drawing, video writing),
   ``limits``, ``finite`` helpers and other modules listed in :data:`GROUND`;
1. ``models``;
2. ``meta`` (the engine);
3. ``algorithms`` (one folder per method);
4. ``registry`` (the list of methods);
5. ``commands`` (train, test, render, study, report) and the ``main_*.py`` entry points.

``report`` reads result folders: it may use the ground floor and no method, engine or RLlib code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tesp"

GROUND = {"envs", "nn", "checkpoints", "viz", "limits", "errors", "config_overrides", "settings_doc_text"}
LAYERS = {"models": 1, "meta": 2, "algorithms": 3, "registry": 4, "settings": 4, "settings_doc": 4}
COMMANDS = 5  # everything else: the commands wing and its helpers
REPORT = "report"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, name: str) -> set[str]:
    """Every tesp module ``path`` imports, at any depth of its code (function-level included)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "tesp"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "tesp":
                continue
            out.add(target)
            out |= {f"{target}.{a.name}" for a in node.names}  # `from tesp import cli` names a module
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    edges = {}
    for name, path in known.items():
        targets = set()
        for target in imports(path, name):
            while target and target not in known:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name and target != "tesp":
                targets.add(target)
        edges[name] = targets
    return edges


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    if top in GROUND:
        return 0
    return LAYERS.get(top, COMMANDS)


def test_no_module_imports_a_higher_layer():
    bad = [
        f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
        for a, targets in sorted(graph().items())
        for b in sorted(targets)
        if layer(b) > layer(a) and not a.startswith(f"tesp.{REPORT}")
    ]
    assert not bad, "\n".join(bad)


def test_the_report_reads_results_and_imports_no_engine_method_or_command():
    bad = [
        f"{a} imports {b}"
        for a, targets in sorted(graph().items())
        if a.startswith(f"tesp.{REPORT}")
        for b in sorted(targets)
        if not b.startswith(f"tesp.{REPORT}") and layer(b) != 0
    ]
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    edges = graph()
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [node, nxt]) if nxt in stack else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize(
    ("source", "edge"),
    [
        ("from tesp.meta import rollout\n", "tesp.envs.fake imports tesp.meta.rollout"),
        ("def f():\n    from tesp.commands import train\n", "tesp.envs.fake imports tesp.commands.train"),
    ],
)
def test_the_check_sees_module_and_function_level_imports(tmp_path, source, edge):
    fake = tmp_path / "fake.py"
    fake.write_text(source)
    found = {f"tesp.envs.fake imports {t}" for t in imports(fake, "tesp.envs.fake")}
    assert edge in found
