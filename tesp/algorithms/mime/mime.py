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

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override

from tesp.algorithms.mime.mime_learner import MIMELearner
from tesp.algorithms.mime.mime_rl_module import MIMERLModule
from tesp.meta.meta_gradient import MetaGradientAlgorithm, MetaGradientConfig
from tesp.meta.rollout import summary_line as meta_summary
from tesp.meta.setting import Setting, above, at_least, one_of

INFORMATION_GAINS = ("adam", "second_order")


class MIMEConfig(MetaGradientConfig):
    """MIME's settings, then MAML's (``SETTINGS``; docs/settings.md)."""

    SETTINGS = (
        Setting("use_vime", True, "add VIME's information gain to the reward (MAML + expl, MIME)."),
        Setting("adapt_eta", True, "meta-learn the mixing weight from the extrinsic return (MIME)."),
        Setting(
            "reward_noise_std", 0.0, "N(0, std^2) noise added to the standardised reward (MAML + noise: 0.1).",
            "a number >= 0", at_least(0),
        ),
        Setting(
            "pre_epochs", 3, "meta-updates on the extrinsic reward alone before the mix starts.",
            "an integer >= 0", at_least(0),
        ),
        Setting(
            "eta_lr", 1000.0, "the mixing logit's step size: clip(eta_lr * grad / sigmoid(eta), +-eta_step_clip).",
            "a number >= 0", at_least(0),
        ),
        Setting("eta_step_clip", 0.3, "the bound of the mixing logit's step.", "a number > 0", above(0)),
        Setting(
            "dyn_lr", 1e-4, "the dynamics model's inner SGD step and the information gain's Adam step size.",
            "a number > 0", above(0),
        ),
        Setting(
            "dyn_outer_lr", 1e-2, "Adam step size of the dynamics model's meta-update.", "a number > 0", above(0),
        ),
        Setting("dyn_samples", 3, "Monte-Carlo draws of the model's ELBO.", "an integer >= 1", at_least(1)),
        Setting(
            "likelihood_sd", 0.1, "sigma of the model's Gaussian likelihood of the next observation.",
            "a number > 0", above(0),
        ),
        Setting(
            "information_gain", "adam",
            "\"adam\" (the reference's computation, batched) or \"second_order\" (VIME's approximation "
            "1/2 step^2 g^T H^-1 g).",
            f"one of {INFORMATION_GAINS}", one_of(*INFORMATION_GAINS),
        ),
        Setting("second_order_step", 0.01, "its step size lambda.", "a number > 0", above(0)),
    )  # fmt: skip

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class or MIME)
        self.normalize_advantages = True

    @override(AlgorithmConfig)
    def validate(self) -> None:
        if self.adapted_params != ["policy"]:
            self.invalid(f"adapted_params={self.adapted_params!r} is invalid for mime: it adapts ['policy']")
        self.check(
            [
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
