"""Settings written once: each setting of a tesp config class is one :class:`Setting` (name,
default, one-line doc, what a valid value is and the check), declared in the class's
``SETTINGS``. From that one declaration come the config's attribute and default
(:class:`~tesp.meta.task_algorithm.TaskAlgorithmConfig.__init__`), the ``training(**kwargs)``
keyword, the range check in ``validate``, ``main_train.py --alg ALG --help`` and the generated
``docs/settings.md`` (:mod:`tesp.commands.settings_doc`)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ray.rllib.algorithms.algorithm_config import NotProvided


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


class DeclaredSettings:
    """Mixin of an RLlib ``AlgorithmConfig`` (listed before it): the settings declared in
    ``SETTINGS`` along the class hierarchy become attributes with their defaults
    (:meth:`set_declared_defaults`, called in ``__init__``), ``training(**kwargs)`` keywords
    and range checks (:meth:`declared_checks`)."""

    SETTINGS: tuple[Setting, ...] = ()

    def set_declared_defaults(self) -> None:
        for setting in declared(type(self)).values():
            setattr(self, setting.name, copy.deepcopy(setting.default))

    def training(self, **kwargs):
        """The declared settings, then RLlib's own ``training`` arguments (``gamma``, ``lr``,
        ...); an unknown keyword is RLlib's error."""
        names = declared(type(self))
        mine = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        super().training(**kwargs)
        for name, value in mine.items():
            if value is not NotProvided:
                setattr(self, name, value)
        return self

    def update_model_config(self, **values: Any) -> None:
        """Add ``values`` to the user part of the RLModule's ``model_config`` (tesp's settings
        call this; RLlib's ``model_config`` property also holds the algorithm's automatic
        entries)."""
        self.rl_module(model_config={**self._model_config, **values})

    def declared_checks(self) -> Iterator[tuple[bool, str, str]]:
        """``(ok, name, valid)`` for every declared setting with a check."""
        for s in declared(type(self)).values():
            if s.ok is not None:
                yield s.ok(getattr(self, s.name)), s.name, s.valid

    def check_declared(self) -> None:
        """The first declared setting out of its range raises a one-line error."""
        for ok, name, valid in self.declared_checks():
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: must be {valid}")


def at_least(low: float) -> Callable[[Any], bool]:
    return lambda v: v >= low


def above(low: float) -> Callable[[Any], bool]:
    return lambda v: v > low


def between(low: float, high: float) -> Callable[[Any], bool]:
    return lambda v: low <= v <= high


def one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda v: v in choices


def is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def positive_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool) and v > 0)
