"""MAESN (Gupta et al. 2018, "Meta-Reinforcement Learning of Structured Exploration Strategies").

Each training task ``i`` (a member of the env's finite training pool D) has a latent
distribution ``N(mu_i, diag(sigma_i^2))``. The policy reads ``[obs, z]``, and ``z`` is drawn
once per episode, ``z = mu_i + sigma_i * eps`` with ``eps ~ N(0, I)`` fixed for the episode
(drawn on the EnvRunner and recorded with every step). The inner loop adapts only the task's
``(mu_i, log sigma_i)``, with learned per-element step sizes; gradients reach them through
the recorded ``eps`` (the reparameterisation). The meta-update optimises the policy, every
task's ``(mu_i, log sigma_i)`` and the step sizes, adding
``latent_prior_coeff * KL(N(mu_i, sigma_i^2) || N(0, I))`` on the *pre-adaptation*
distributions, so that starting from the prior N(0, I) (what unseen tasks do) is a good
exploration strategy.

This is the method the original TESP release named ``maesn`` but did not train (its training
script replaced the latent model, so it trained Meta-SGD; docs/original_release.md); the latent
*vector* baseline that release intended is ``adaptsv`` here.

Defaults, checked against the authors' release (russellmendonca/maesn_suite: its MAESN policy
and launchers): the inner loop adapts the latent distributions only (their policy-parameter step
is multiplied by a ``param_deg`` of 0 unless asked for; here ``adapted_params=["latent",
"policy"]``); the latent step sizes are learned, one per latent dimension shared by the tasks,
initialised to the launchers' fast learning rate (0.5 and 1 were swept; 0.5 here) and not clipped;
the prior KL weight was swept over 0.1 and 0.5 (0.1 here); the latent means start from N(0, 1)
per task and the log-stds from 0; advantages are standardised per batch (rllab's
``center_adv``). Choices of this implementation: the inner loop is the engine's VPG with GAE on a
linear baseline, the outer step PPO-clip or TRPO (the release: TRPO), and any number of inner
steps (the release: one).
"""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override

from tesp.algorithms.maesn.maesn_learner import MAESNLearner
from tesp.algorithms.maesn.maesn_rl_module import MAESNRLModule, env_to_module
from tesp.envs import make_env
from tesp.meta.meta_gradient import MetaGradientAlgorithm, MetaGradientConfig
from tesp.meta.setting import Setting, at_least


class MAESNConfig(MetaGradientConfig):
    SETTINGS = (
        Setting(
            "latent_prior_coeff", 0.1,
            "weight of KL(N(mu_i, sigma_i^2) || N(0, I)) on the pre-adaptation latent distributions "
            "in the outer loss.",
            "a number >= 0", at_least(0),
        ),
    )  # fmt: skip

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class or MAESN, env_to_module=env_to_module)
        self.adapted_params = ["latent"]
        self.learn_step_sizes = True
        self.inner_lr = 0.5  # initial step size of every mu and log-sigma element
        self.step_size_bound = float("inf")  # the release does not clip its latent step sizes
        self.normalize_advantages = True

    def train_pool_size(self) -> int:
        """The number of training tasks (each gets its own latent distribution)."""
        if not isinstance(self.env, str):
            return 0
        try:
            return len(make_env(self.env, self.env_config).task_pools().get("D", []))
        except (KeyError, TypeError, ValueError):
            return 0  # unknown env or bad options: reported by validate / env creation

    @property
    @override(AlgorithmConfig)
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {"num_task_latents": self.train_pool_size()}

    @override(AlgorithmConfig)
    def validate(self) -> None:
        # Method-specific checks first, so their messages name this method's valid choices.
        if self.train_pool_size() < 1:
            self.invalid(
                f"env={self.env!r} with env_config={dict(self.env_config)!r} has no finite training pool, "
                "which maesn needs (one latent distribution per training task): set env_config.pool_size > 0"
            )
        if "latent" not in self.adapted_params or not set(self.adapted_params) <= {"latent", "policy"}:
            self.invalid(
                f"adapted_params={self.adapted_params!r} is invalid for maesn: "
                "must be ['latent'] or ['latent', 'policy']"
            )
        super().validate()

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=MAESNRLModule)

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> type:
        return MAESNLearner


class MAESN(MetaGradientAlgorithm):
    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> MAESNConfig:
        return MAESNConfig()
