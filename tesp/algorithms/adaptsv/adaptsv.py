"""AdaptSV: adapt a latent vector, share the policy (Lan et al. 2019's "MAESN with a latent
variable" baseline; docs/original_release.md).

The policy sees ``[obs, z']``, with ``z`` in R^d a meta-learned vector. Only ``z`` changes in
the inner loop, with learned per-element step sizes clamped to +-``step_size_bound``:
``z' = z - alpha (.) sum_k g_k``. The MLP, ``z`` and ``alpha`` change in the meta-update, whose
loss adds ``eta * mean_j z'_j^2`` (``embedding_reg_coeff``; equal to ``(eta/d) ||z'||^2``, the
TESP supplement's "eta <- eta/d").

This is the baseline the original TESP release meant to train as ``--alg maesn`` (its training
script replaced the latent model, so it trained Meta-SGD instead); Gupta et al. 2018's MAESN
itself is ``maesn`` here.
"""

from __future__ import annotations

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override

from tesp.algorithms.adaptsv.adaptsv_learner import AdaptSVLearner
from tesp.algorithms.adaptsv.adaptsv_rl_module import AdaptSVRLModule
from tesp.meta.meta_gradient import MetaGradientAlgorithm, MetaGradientConfig
from tesp.meta.setting import Setting, at_least


class AdaptSVConfig(MetaGradientConfig):
    SETTINGS = (
        # eta (TESP supplement: 0.01 on wheeled and ant)
        Setting(
            "embedding_reg_coeff", 0.01, "eta, the weight of mean_j z'_j^2 in the outer loss.",
            "a number >= 0", at_least(0),
        ),
    )  # fmt: skip

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class or AdaptSV)
        self.adapted_params = ["latent"]
        self.learn_step_sizes = True
        self.inner_lr = 0.001  # initial step size of every latent element (TESP supplement, Table 1)

    @override(AlgorithmConfig)
    def validate(self) -> None:
        # Method-specific checks first, so their messages name this method's valid choices.
        if self.adapted_params != ["latent"]:
            self.invalid(
                f"adapted_params={self.adapted_params!r} is invalid for adaptsv: it adapts ['latent'] only"
            )
        super().validate()

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=AdaptSVRLModule)

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> type:
        return AdaptSVLearner


class AdaptSV(MetaGradientAlgorithm):
    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> AdaptSVConfig:
        return AdaptSVConfig()
