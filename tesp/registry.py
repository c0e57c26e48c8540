"""Name -> class registries for ``--alg`` and ``--env`` (the seed's spellings are aliases)."""

from __future__ import annotations

from ray.rllib.algorithms.algorithm import Algorithm

from tesp.algorithms.adaptsv import AdaptSV
from tesp.algorithms.maml import MAML
from tesp.algorithms.meta_sgd import MetaSGD
from tesp.envs import ENVS

ALGS: dict[str, type[Algorithm]] = {
    "adaptsv": AdaptSV,
    "maml": MAML,
    "meta_sgd": MetaSGD,
}

ALIASES = {"meta-sgd": "meta_sgd"}


def canonical(name: str) -> str:
    return ALIASES.get(name, name)


__all__ = ["ALGS", "ALIASES", "ENVS", "canonical"]
