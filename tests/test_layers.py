"""The package's layers, read from its source: no import cycle among its modules (function-level
imports included), and no import from a lower layer into a higher one.

Layers, from the ground up (a module may import its own layer and those below):

0. ground floor: ``envs``, ``nn``, ``checkpoints``, ``viz`` (trajectory drawing, video writing),
   ``errors``, ``method`` (what a method folder declares), ``report`` and the other modules in
   :data:`GROUND`;
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

GROUND = {
    "envs",
    "nn",
    "checkpoints",
    "viz",
    "limits",
    "errors",
    "method",
    "config_overrides",
    REPORT_PACKAGE := "report",
}
LAYERS = {"models": 1, "meta": 2, "algorithms": 3, "registry": 4, "settings": 4, "settings_doc": 4}
COMMANDS = 5  # everything else: the commands wing and its helpers
REPORT = REPORT_PACKAGE


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, name: str, known: set[str] | None = None) -> set[str]:
    """The tesp modules ``path`` imports, at any depth of its code (function-level included).
    ``from package import submodule`` counts as importing the submodule only: Python runs the
    package's ``__init__`` first, but a package being initialised is already importable, so
    that is no cycle. Without ``known`` (the package's modules) every dotted name counts."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "tesp"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "tesp":
                continue
            submodules = {f"{target}.{a.name}" for a in node.names}
            if known is None:
                out |= {target} | submodules
                continue
            out |= submodules & known
            if submodules - known:  # a name defined in the module (or package) itself
                out.add(target)
    if known is not None:
        resolved = set()
        for target in out:
            while target and target not in known:  # e.g. `import tesp.a.b` of a name: its module
                target = target.rpartition(".")[0]
            resolved.add(target)
        out = resolved
    return out - {name, "tesp", ""}


def graph() -> dict[str, set[str]]:
    """Module -> the tesp modules it imports."""
    known = modules()
    return {name: imports(path, name, set(known)) for name, path in known.items()}


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
                cycles.append(
                    " -> ".join(stack[stack.index(nxt) :] + [node, nxt])
                    if nxt in stack
                    else f"{node} -> {nxt}"
                )
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


SHARED_EXCEPTIONS = {
    # (module, name): why the shared module may spell it
    (
        "tesp.meta.meta_gradient",
        "ppo",
    ): "the outer optimiser PPO (clipped surrogate), not the --alg ppo method",
    ("tesp.meta.outer", "ppo"): "the outer loss term of the PPO optimiser",
}


def test_no_shared_module_names_a_method():
    """A method's name or alias as a string literal appears only in its own folder and in the
    registry's list of folders: shared code asks the method's description instead."""
    from tesp.registry import METHODS

    names = set(METHODS) | {alias for m in METHODS.values() for alias in m.aliases}
    names.discard("tesp")  # also the package's and the project's name (logger, W&B project)
    bad = []
    for name, path in sorted(modules().items()):
        if name.startswith("tesp.algorithms.") or name == "tesp.registry":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Constant)
                and node.value in names
                and (name, node.value) not in SHARED_EXCEPTIONS
            ):
                bad.append(f"{name}:{node.lineno} names {node.value!r}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("tesp.cli:IterationStop", "tesp.commands.train:IterationStop"),
        ("tesp.progress:Progress", "tesp.commands.progress:Progress"),
        ("tesp.progress:JsonLogger", "tesp.commands.progress:JsonLogger"),
        ("tesp.progress:CsvLogger", "tesp.commands.progress:CsvLogger"),
        ("tesp.progress:TensorBoardLogger", "tesp.commands.progress:TensorBoardLogger"),
        ("tesp.progress:StateBackup", "tesp.commands.progress:StateBackup"),
    ],
)
def test_classes_pickled_in_experiments_from_before_the_move_still_load(old, new):
    """Tune's ``tuner.pkl`` of an experiment started before the commands moved names the
    stopper and callbacks by their old modules; ``--resume`` must still unpickle them."""
    import importlib
    import pickle

    module, _, name = old.partition(":")
    loaded = pickle.loads(f"c{module}\n{name}\n.".encode())  # a pickle's reference to a class
    new_module, _, new_name = new.partition(":")
    assert loaded is getattr(importlib.import_module(new_module), new_name)
