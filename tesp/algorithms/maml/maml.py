"""MAML for RL (Finn et al. 2017, Algorithm 3): adapt every policy weight with a fixed step size.

The engine's loop (:mod:`tesp.meta.meta_gradient`) with the engine's losses: one VPG step per
task and stage (``inner_lr``), the outer step PPO-clip (Adam) or TRPO (the paper's), second order
by default. The policy is the 2x64 tanh Gaussian MLP with a state-independent log-std.
"""

from __future__ import annotations

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override

from tesp.algorithms.maml.maml_learner import MAMLLearner
from tesp.algorithms.maml.maml_rl_module import MAMLRLModule
from tesp.meta.meta_gradient import MetaGradientAlgorithm, MetaGradientConfig


class MAMLConfig(MetaGradientConfig):
    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class or MAML)

    @override(AlgorithmConfig)
    def validate(self) -> None:
        if self.adapted_params != ["policy"]:
            self.invalid(f"adapted_params={self.adapted_params!r} is invalid for maml: it adapts ['policy']")
        super().validate()

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=MAMLRLModule)

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> type:
        return MAMLLearner


class MAML(MetaGradientAlgorithm):
    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> MAMLConfig:
        return MAMLConfig()
