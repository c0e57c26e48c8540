"""What a method folder tells the rest of tesp about itself: one :class:`Method` per ``--alg``
name (its Algorithm class, its progress line, its own flags and aliases, its report panels, how
``main_test.py`` evaluates it), and :class:`Variant` spellings that name it through another
method's switches. Each folder under ``tesp/algorithms/`` exports ``METHODS`` (and, if it has
any, ``VARIANTS``); :mod:`tesp.registry` lists the folders. Imports nothing of tesp."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Flag:
    """A method's own command-line flag: ``names`` set the setting ``key``.

    With a ``type`` the flag takes a value of that type; without (None) it is a switch that sets
    ``value``.
    """

    names: tuple[str, ...]
    key: str
    help: str
    type: type | Callable[[str], Any] | None = int
    value: Any = None


#: How ``main_test.py`` tests a method's checkpoint: ``adaptation`` (adapt to the pools' tasks:
#: the Algorithm has ``evaluate_adaptation``), ``policy`` (run its policy: the Algorithm has
#: ``controller`` and ``policy_env``).
Evaluation = Literal["adaptation", "policy"]


@dataclass(frozen=True)
class Method:
    name: str  # the --alg name
    algo_class: type
    summary: Callable[[dict], str]  # result dict -> one progress line (more lines: indented details)
    evaluation: Evaluation = "adaptation"
    flags: tuple[Flag, ...] = ()
    aliases: tuple[str, ...] = ()  # other spellings of --alg (the original release's)
    #: the report's panels of its own: title -> (the method's runs on one env, the env) -> figure
    panels: Mapping[str, Callable] = field(default_factory=dict)


@dataclass(frozen=True)
class Variant:
    """Switches on ``--alg base`` that name another method (the MIME seed's spellings:
    ``--alg maml --use-vime --adapt-eta`` is ``--alg mime``)."""

    base: str  # the --alg the switches go with
    switches: Mapping[str, str]  # the flags set, without dashes -> their help
    alg: str
    settings: dict[str, Any]
