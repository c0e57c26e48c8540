"""Name -> class registries for ``--alg`` and ``--env`` (the seed's spellings are aliases)."""

from __future__ import annotations

from ray.rllib.algorithms.algorithm import Algorithm

from tesp.algorithms.adaptsv import AdaptSV
from tesp.algorithms.maesn import MAESN
from tesp.algorithms.maml import MAML
from tesp.algorithms.meta_sgd import MetaSGD
from tesp.algorithms.mlsh import MLSHAlgorithm
from tesp.algorithms.tesp import TESP, TESPAdaptPolicy
from tesp.envs import ENV_ALIASES, ENVS, canonical_env

ALGS: dict[str, type[Algorithm]] = {
    "adaptsv": AdaptSV,
    "maesn": MAESN,
    "maml": MAML,
    "meta_sgd": MetaSGD,
    "mlsh": MLSHAlgorithm,
    "tesp": TESP,
    "tesp_adapt_policy": TESPAdaptPolicy,
}

ALIASES = {"meta-sgd": "meta_sgd", "tesp-adapt-policy": "tesp_adapt_policy"}


def canonical(name: str) -> str:
    return ALIASES.get(name, name)


__all__ = ["ALGS", "ALIASES", "ENVS", "ENV_ALIASES", "canonical", "canonical_env"]
