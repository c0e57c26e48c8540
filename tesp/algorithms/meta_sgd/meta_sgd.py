"""Meta-SGD (Li et al. 2017): MAML whose inner step size is a learned tensor per parameter.

The step sizes ``alpha`` start at ``inner_lr``, are clamped to ``[-step_size_bound,
step_size_bound]`` in the inner step and are updated by the outer optimiser with the policy
(spec §1.2-1.4). It is the same inner loop as MAML with ``learn_step_sizes=True``.
"""

from __future__ import annotations

from ray.rllib.utils.annotations import override

from tesp.algorithms.maml.maml import MAML, MAMLConfig


class MetaSGDConfig(MAMLConfig):
    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or MetaSGD)
        self.learn_step_sizes = True

    def validate(self) -> None:
        super().validate()
        if not self.learn_step_sizes:
            self._value_error("learn_step_sizes=False is invalid for meta_sgd: use --alg maml")


class MetaSGD(MAML):
    @classmethod
    @override(MAML)
    def get_default_config(cls) -> MetaSGDConfig:
        return MetaSGDConfig()
