"""Settings written once: each setting of a tesp config class is one :class:`Setting` (name,
default, one-line doc, what a valid value is and the check), declared in the class's
``SETTINGS``. From that one declaration come the config's attribute and default
(:class:`~tesp.meta.task_algorithm.TaskAlgorithmConfig.__init__`), the ``training(**kwargs)``
keyword, the range check in ``validate``, ``main_train.py --alg ALG --help`` and the generated
``docs/settings.md`` (:mod:`tesp.commands.settings_doc`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    doc: str  # one line (the --help and docs/settings.md text)
    valid: str = ""  # what a valid value is, for the one-line error, e.g. "an integer >= 1"
    ok: Callable[[Any], bool] | None = None  # the check of a value (None: any)


def own(cls: type) -> tuple[Setting, ...]:
    """The settings ``cls`` itself declares."""
    return tuple(vars(cls).get("SETTINGS", ()))


def declared(cls: type) -> dict[str, Setting]:
    """Every setting declared along ``cls``'s class hierarchy, base classes first (a subclass
    that declares a name again replaces its declaration)."""
    out: dict[str, Setting] = {}
    for klass in reversed(cls.__mro__):
        out |= {s.name: s for s in own(klass)}
    return out


def at_least(low: float) -> Callable[[Any], bool]:
    return lambda v: v >= low


def above(low: float) -> Callable[[Any], bool]:
    return lambda v: v > low


def between(low: float, high: float) -> Callable[[Any], bool]:
    return lambda v: low <= v <= high


def one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda v: v in choices
