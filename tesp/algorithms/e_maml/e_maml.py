"""E-MAML (Stadie et al. 2018, "Some Considerations on Learning to Explore via
Meta-Reinforcement Learning", arXiv 1803.01118): MAML plus the term of the meta-gradient that
MAML drops, the effect of the pre-update policy's *sampling* on the post-update return.

MAML's objective ``E_{tau ~ pi_theta}[R(tau')]``, with ``tau'`` sampled by the policy adapted on
``tau``, depends on theta also through the distribution of the pre-update episodes ``tau``; its
gradient has the extra term ``E[grad log pi_theta(tau) R(tau')]`` (Stadie et al., eq. 4). It
credits pre-update episodes for how well the adapted policy then does, which is what rewards
exploring. The term is added to the outer loss of :class:`~tesp.algorithms.maml.MAMLConfig`
(see :class:`EMAMLLearner` for its estimator); everything else is MAML.

MIME's reference implementation (mazpie/mime, ``e_maml_trpo``) estimates the same term
differently: step t of pre-update episode e times the post-update advantage at the same (t, e),
which needs equally long and equally many episodes in both stages and pairs steps that are not
related. Here each task's pre-update episodes share one credit, that task's post-update return,
standardised over the meta-batch (a baseline that no episode's own actions influence).
"""

from __future__ import annotations

from typing import Self

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.utils.annotations import override

from tesp.algorithms.e_maml.e_maml_learner import EMAMLLearner
from tesp.algorithms.maml.maml import MAML, MAMLConfig
from tesp.meta.task_algorithm import set_provided


class EMAMLConfig(MAMLConfig):
    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class or EMAML)
        self.e_maml_coeff = 1.0

    @override(AlgorithmConfig)
    def training(self, *, e_maml_coeff: float = NotProvided, **kwargs) -> Self:
        """E-MAML's setting, then MAML's.

        Args:
            e_maml_coeff: weight of the exploration term in the outer loss (Stadie et al.'s
                objective: 1).
        """
        super().training(**kwargs)
        set_provided(self, e_maml_coeff=e_maml_coeff)
        return self

    @override(AlgorithmConfig)
    def validate(self) -> None:
        if not self.e_maml_coeff >= 0:
            self.invalid(f"e_maml_coeff={self.e_maml_coeff} is invalid: must be >= 0")
        super().validate()

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> type:
        return EMAMLLearner


class EMAML(MAML):
    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> EMAMLConfig:
        return EMAMLConfig()
