"""MIME: MAML with VIME's information gain as an exploration bonus, mixed into the reward with a
meta-learned weight (the seed system's method; VIME: Houthooft et al. 2016; MAML: Finn et al.
2017). The same method folder gives the seed's controls:

- ``use_vime=False, reward_noise_std=0.1``: "MAML + noise" (``--alg maml --add-noise``), the
  standardised reward plus Gaussian noise instead of the information gain;
- ``use_vime=True, adapt_eta=False``: "MAML + expl" (``--alg maml --use-vime``), the mix with a
  fixed weight;
- ``use_vime=True, adapt_eta=True``: MIME (``--alg mime``; ``--alg maml --use-vime --adapt-eta``).

The losses are in :mod:`~tesp.algorithms.mime.mime_learner`, the model in
:mod:`~tesp.algorithms.mime.bnn`. Defaults are the reference's settings for 2D navigation
(mazpie/mime's configs, read for their facts); ``configs/<env>/mime.yaml`` set the others.
"""

from __future__ import annotations

from typing import Self

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override

from tesp.algorithms.mime.mime_learner import MIMELearner
from tesp.algorithms.mime.mime_rl_module import MIMERLModule
from tesp.meta.meta_gradient import MetaGradientAlgorithm, MetaGradientConfig
from tesp.meta.rollout import summary_line as meta_summary
from tesp.meta.task_algorithm import set_provided

INFORMATION_GAINS = ("adam", "second_order")

SETTINGS = """
    use_vime: add VIME's information gain to the reward (MAML + expl, MIME).
    adapt_eta: meta-learn the mixing weight from the extrinsic return (MIME).
    reward_noise_std: N(0, std^2) noise added to the standardised reward (MAML + noise: 0.1).
    pre_epochs: meta-updates on the extrinsic reward alone before the mix starts.
    eta_lr, eta_step_clip: the mixing logit's step ``clip(eta_lr * grad / sigmoid(eta), +-clip)``.
    dyn_lr: the dynamics model's inner SGD step and the information gain's Adam step size.
    dyn_outer_lr: Adam step size of the dynamics model's meta-update.
    dyn_samples: Monte-Carlo draws of the model's ELBO.
    likelihood_sd: sigma of the model's Gaussian likelihood of the next observation.
    information_gain: ``"adam"`` (the reference's computation, batched) or ``"second_order"``
        (VIME's approximation ``1/2 step^2 g^T H^-1 g``).
    second_order_step: its step size lambda.
"""


class MIMEConfig(MetaGradientConfig):
    __doc__ = "MIME's settings, then MAML's.\n\nSettings:" + SETTINGS

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class or MIME)
        self.use_vime = True
        self.adapt_eta = True
        self.reward_noise_std = 0.0
        self.pre_epochs = 3
        self.eta_lr = 1000.0
        self.eta_step_clip = 0.3
        self.dyn_lr = 1e-4
        self.dyn_outer_lr = 1e-2
        self.dyn_samples = 3
        self.likelihood_sd = 0.1
        self.information_gain = "adam"
        self.second_order_step = 0.01
        self.normalize_advantages = True

    @override(AlgorithmConfig)
    def training(
        self,
        *,
        use_vime: bool = NotProvided,
        adapt_eta: bool = NotProvided,
        reward_noise_std: float = NotProvided,
        pre_epochs: int = NotProvided,
        eta_lr: float = NotProvided,
        eta_step_clip: float = NotProvided,
        dyn_lr: float = NotProvided,
        dyn_outer_lr: float = NotProvided,
        dyn_samples: int = NotProvided,
        likelihood_sd: float = NotProvided,
        information_gain: str = NotProvided,
        second_order_step: float = NotProvided,
        **kwargs,
    ) -> Self:
        super().training(**kwargs)
        set_provided(
            self, use_vime=use_vime, adapt_eta=adapt_eta, reward_noise_std=reward_noise_std,
            pre_epochs=pre_epochs, eta_lr=eta_lr, eta_step_clip=eta_step_clip, dyn_lr=dyn_lr,
            dyn_outer_lr=dyn_outer_lr, dyn_samples=dyn_samples, likelihood_sd=likelihood_sd,
            information_gain=information_gain, second_order_step=second_order_step,
        )  # fmt: skip
        return self

    training.__doc__ = "MIME's settings, then MAML's.\n\nArgs:" + SETTINGS

    @override(AlgorithmConfig)
    def validate(self) -> None:
        if self.adapted_params != ["policy"]:
            self.invalid(f"adapted_params={self.adapted_params!r} is invalid for mime: it adapts ['policy']")
        self.check(
            [
                (self.reward_noise_std >= 0, "reward_noise_std", "a number >= 0"),
                (self.pre_epochs >= 0, "pre_epochs", "an integer >= 0"),
                (self.eta_lr >= 0, "eta_lr", "a number >= 0"),
                (self.eta_step_clip > 0, "eta_step_clip", "a number > 0"),
                (self.dyn_lr > 0, "dyn_lr", "a number > 0"),
                (self.dyn_outer_lr > 0, "dyn_outer_lr", "a number > 0"),
                (self.dyn_samples >= 1, "dyn_samples", "an integer >= 1"),
                (self.likelihood_sd > 0, "likelihood_sd", "a number > 0"),
                (
                    self.information_gain in INFORMATION_GAINS,
                    "information_gain",
                    f"one of {INFORMATION_GAINS}",
                ),
                (self.second_order_step > 0, "second_order_step", "a number > 0"),
                (
                    not self.adapt_eta or self.use_vime,
                    "adapt_eta",
                    "False unless use_vime (eta mixes in the gain)",
                ),
                (
                    self.num_learners <= 1,
                    "num_learners",
                    "0 or 1 (the dynamics model's update runs on one Learner)",
                ),
            ]
        )
        super().validate()

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=MIMERLModule)

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> type:
        return MIMELearner


class MIME(MetaGradientAlgorithm):
    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> MIMEConfig:
        return MIMEConfig()


def summary_line(result: dict) -> str:
    """The gradient meta-learners' progress line plus MIME's own numbers: the mixing weight eta
    (sigmoid of the meta-learned parameter) and the mean information gain of the iteration, and
    whether the gain is mixed into the reward yet (after ``pre_epochs`` iterations)."""
    first, newline, rest = meta_summary(result).partition("\n")
    m = result.get("meta", {})
    if "eta" in m:
        mixing = "" if m.get("mixing_on", 1.0) else " (not mixed in yet)"
        gain = m.get("information_gain")
        first += f" | eta {m['eta']:.3f}" + (f", info gain {gain:.3g}{mixing}" if gain is not None else "")
    return first + newline + rest
