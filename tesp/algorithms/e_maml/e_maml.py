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

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.utils.annotations import override

from tesp.algorithms.e_maml.e_maml_learner import EMAMLLearner
from tesp.algorithms.maml.maml import MAML, MAMLConfig
from tesp.meta.setting import Setting, at_least


class EMAMLConfig(MAMLConfig):
    SETTINGS = (
        Setting(
            "e_maml_coeff", 1.0,
            "weight of the exploration term in the outer loss (Stadie et al.'s objective: 1).",
            "a number >= 0", at_least(0),
        ),
    )  # fmt: skip

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class or EMAML)

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> type:
        return EMAMLLearner


class EMAML(MAML):
    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> EMAMLConfig:
        return EMAMLConfig()
