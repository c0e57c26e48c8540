"""Meta-SGD (Li et al. 2017): MAML whose inner step size is a learned tensor per parameter.

The step sizes ``alpha`` start at ``inner_lr``, are clamped to ``[-step_size_bound,
step_size_bound]`` in the inner step (as the TESP release does, docs/original_release.md) and are
updated by the outer optimiser with the policy: ``theta' = theta - alpha (.) grad L(theta)``
(Li et al. 2017, eq. 3). The engine implements learned step sizes for every method that uses
them (AdaptSV, MAESN and TESP too); Meta-SGD is MAML with them switched on.
"""

from __future__ import annotations

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override

from tesp.algorithms.meta_sgd.meta_sgd_learner import MetaSGDLearner
from tesp.algorithms.meta_sgd.meta_sgd_rl_module import MetaSGDRLModule
from tesp.meta.meta_gradient import MetaGradientAlgorithm, MetaGradientConfig


class MetaSGDConfig(MetaGradientConfig):
    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class or MetaSGD)
        self.learn_step_sizes = True

    @override(AlgorithmConfig)
    def validate(self) -> None:
        if not self.learn_step_sizes:
            self.invalid("learn_step_sizes=False is invalid for meta_sgd: use --alg maml")
        if self.adapted_params != ["policy"]:
            self.invalid(
                f"adapted_params={self.adapted_params!r} is invalid for meta_sgd: it adapts ['policy']"
            )
        super().validate()

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=MetaSGDRLModule)

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> type:
        return MetaSGDLearner


class MetaSGD(MetaGradientAlgorithm):
    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> MetaSGDConfig:
        return MetaSGDConfig()
