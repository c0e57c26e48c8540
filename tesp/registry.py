"""The methods ``--alg`` names and the task families ``--env`` names.

A method is one :class:`Method` entry: its Algorithm class, the one-line summary of a result
that the progress output and the end-of-run report print, and the command-line flags of its own
(each sets one setting). Adding a method is a folder under ``tesp/algorithms/`` and a line here.
The original release's spellings are aliases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ray.rllib.algorithms.algorithm import Algorithm

from tesp.algorithms.adaptsv import AdaptSV
from tesp.algorithms.e_maml import EMAML
from tesp.algorithms.maesn import MAESN
from tesp.algorithms.maml import MAML
from tesp.algorithms.meta_sgd import MetaSGD
from tesp.algorithms.mime import MIME
from tesp.algorithms.mime.mime import summary_line as mime_summary
from tesp.algorithms.mlsh import MLSHAlgorithm
from tesp.algorithms.mlsh.mlsh import summary_line as mlsh_summary
from tesp.algorithms.ppo import PPO
from tesp.algorithms.ppo import summary_line as ppo_summary
from tesp.algorithms.primitives import Primitives
from tesp.algorithms.primitives import summary_line as primitives_summary
from tesp.algorithms.tesp import TESP, TESPAdaptPolicy, TESPContextOnly
from tesp.envs import ENV_ALIASES, ENVS, canonical_env
from tesp.meta.rollout import summary_line as meta_summary


@dataclass(frozen=True)
class Flag:
    """A method's own command-line flag: ``names`` set the setting ``key``.

    With a ``type`` the flag takes a value of that type; without (None) it is a switch that sets
    ``value``.
    """

    names: tuple[str, ...]
    key: str
    help: str
    type: type | None = int
    value: Any = None


@dataclass(frozen=True)
class Method:
    algo_class: type[Algorithm]
    summary: Callable[[dict], str]  # result dict -> one progress line (more lines: indented details)
    flags: tuple[Flag, ...] = ()


MLSH_FLAGS = (
    Flag(("-W", "--warmup-iters"), "warmup_iters", "master-only iterations per task (W)"),
    Flag(("-U", "--joint-iters"), "joint_iters", "master and sub-policy iterations per task (U)"),
    Flag(("--num-subs",), "num_subs", "number of shared sub-policies"),
    Flag(("--macro-duration",), "macro_duration", "steps between the master's choices"),
)
TESP_FLAGS = (
    Flag(
        ("--tesp-adapt-policy", "--tesp_adapt_policy"),
        "adapted_params",
        "adapt the shared policy too (the same as --alg tesp_adapt_policy)",
        type=None,
        value=["encoder", "policy"],
    ),
)


def primitive_checkpoints(text: str) -> dict[str, str]:
    """``--primitives walker_forward=PATH,walker_jump=PATH`` -> ``{name: path}`` (in order)."""
    pairs = [item.partition("=") for item in text.split(",") if item]
    if not pairs or any(not name or not sep or not path for name, sep, path in pairs):
        raise ValueError(f"expected NAME=CHECKPOINT[,NAME=CHECKPOINT...], got {text!r}")
    return {name: path for name, _, path in pairs}


PRIMITIVES_FLAGS = (
    Flag(
        ("--primitives",),
        "primitives",
        "the skills' checkpoints, NAME=PATH[,NAME=PATH...] (--alg ppo runs)",
        type=primitive_checkpoints,
    ),
    Flag(("--switch-period",), "switch_period", "env steps between the meta-policy's choices (N)"),
    Flag(("--finetune",), "finetune", "fine-tune the primitives: none, transitions or all", type=str),
)

METHODS: dict[str, Method] = {
    "adaptsv": Method(AdaptSV, meta_summary),
    "e_maml": Method(EMAML, meta_summary),
    "maesn": Method(MAESN, meta_summary),
    "maml": Method(MAML, meta_summary),
    "meta_sgd": Method(MetaSGD, meta_summary),
    "mime": Method(MIME, mime_summary),
    "mlsh": Method(MLSHAlgorithm, mlsh_summary, MLSH_FLAGS),
    "ppo": Method(PPO, ppo_summary),
    "primitives": Method(Primitives, primitives_summary, PRIMITIVES_FLAGS),
    "tesp": Method(TESP, meta_summary, TESP_FLAGS),
    "tesp_adapt_policy": Method(TESPAdaptPolicy, meta_summary),
    "tesp_context_only": Method(TESPContextOnly, meta_summary),
}


@dataclass(frozen=True)
class Variant:
    """Switches on ``--alg base`` that name another method: the MIME seed's spellings
    (``--alg maml --use-vime --adapt-eta`` is ``--alg mime``)."""

    switches: frozenset[str]  # the flags set, without dashes
    alg: str
    settings: dict[str, Any]


VARIANT_BASE = "maml"
VARIANT_SWITCHES = {
    "add-noise": "MAML + noise: Gaussian noise on the standardised reward (= --alg mime, no VIME)",
    "use-vime": "MAML + expl: VIME's information gain mixed into the reward, fixed weight (--alg mime)",
    "adapt-eta": "with --use-vime: meta-learn the mixing weight (= --alg mime)",
    "e-maml": "E-MAML's exploration term (= --alg e_maml)",
}
VARIANTS = (
    Variant(
        frozenset({"add-noise"}), "mime", {"use_vime": False, "adapt_eta": False, "reward_noise_std": 0.1}
    ),
    Variant(frozenset({"use-vime"}), "mime", {"use_vime": True, "adapt_eta": False}),
    Variant(frozenset({"use-vime", "adapt-eta"}), "mime", {"use_vime": True, "adapt_eta": True}),
    Variant(frozenset({"e-maml"}), "e_maml", {}),
)

ALGS: dict[str, type[Algorithm]] = {name: m.algo_class for name, m in METHODS.items()}
ALIASES = {
    "e-maml": "e_maml",
    "meta-sgd": "meta_sgd",
    "tesp-adapt-policy": "tesp_adapt_policy",
    "tesp-context-only": "tesp_context_only",
}


def canonical(name: str) -> str:
    return ALIASES.get(name, name)


__all__ = [
    "ALGS",
    "ALIASES",
    "ENVS",
    "ENV_ALIASES",
    "METHODS",
    "Flag",
    "Method",
    "canonical",
    "canonical_env",
]
