"""The methods ``--alg`` names and the task families ``--env`` names.

The registry is the list of method folders: each exports ``METHODS`` (and maybe ``VARIANTS``),
its own description (:mod:`tesp.method`). Adding a method is a folder under
``tesp/algorithms/`` and its entry in :data:`PACKAGES`; nothing else names it.
"""

from __future__ import annotations

from tesp.algorithms import adaptsv, e_maml, maesn, maml, meta_sgd, mime, mlsh, pearl, ppo, primitives, rl2
from tesp.algorithms import tesp as tesp_methods
from tesp.envs import ENV_ALIASES, ENVS, canonical_env
from tesp.method import Flag, Method, Variant

PACKAGES = (adaptsv, e_maml, maesn, maml, meta_sgd, mime, mlsh, pearl, ppo, primitives, rl2, tesp_methods)

METHODS: dict[str, Method] = {m.name: m for package in PACKAGES for m in package.METHODS}
ALGS: dict[str, type] = {name: m.algo_class for name, m in METHODS.items()}
ALIASES: dict[str, str] = {alias: m.name for m in METHODS.values() for alias in m.aliases}
VARIANTS: tuple[Variant, ...] = tuple(v for package in PACKAGES for v in getattr(package, "VARIANTS", ()))
VARIANT_BASES = sorted({v.base for v in VARIANTS})
#: every variant switch and its help, in the order the variants declare them
VARIANT_SWITCHES: dict[str, str] = {k: h for v in VARIANTS for k, h in v.switches.items()}


def canonical(name: str) -> str:
    return ALIASES.get(name, name)


def method_of(algo_class: type) -> Method | None:
    """The method whose Algorithm class ``algo_class`` is (None: not a registered one). By the
    class's module and name: a checkpoint's class can come back as a copy (RLlib's cloudpickle
    may pickle it by value), not the very object."""
    key = (algo_class.__module__, algo_class.__qualname__)
    return next(
        (m for m in METHODS.values() if (m.algo_class.__module__, m.algo_class.__qualname__) == key), None
    )


def method_names() -> dict[str, str]:
    """Algorithm class name -> ``--alg`` name (the report names trials by their class)."""
    return {m.algo_class.__name__: name for name, m in METHODS.items()}


def report_panels() -> dict[str, dict]:
    """``--alg`` name -> its own report panels by title."""
    return {name: dict(m.panels) for name, m in METHODS.items() if m.panels}


__all__ = [
    "ALGS",
    "VARIANTS",
    "VARIANT_SWITCHES",
    "Variant",
    "ALIASES",
    "ENVS",
    "ENV_ALIASES",
    "METHODS",
    "Flag",
    "Method",
    "canonical",
    "canonical_env",
]
