"""MIME's module: MAML's Gaussian policy (what EnvRunners sample with) plus what only the Learner
holds: VIME's Bayesian dynamics model (``dynamics``, meta-learned like the policy) and the
mixing weight's logit ``eta`` (Houthooft et al. 2016 for VIME's model; MIME's mixing). Both are in
the checkpoint; neither is adapted by the policy's inner step nor stepped by its optimiser.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from tesp.algorithms.mime.bnn import init_bnn
from tesp.models.gaussian_policy import GaussianPolicyModule
from tesp.nn.params import Params

LEARNER_ONLY = ("dynamics", "eta", "meta_updates")


class MIMERLModule(GaussianPolicyModule):
    DEFAULT_MODEL_CONFIG: ClassVar[dict[str, Any]] = {
        **GaussianPolicyModule.DEFAULT_MODEL_CONFIG,
        "dyn_hidden": [32],  # hidden widths of the dynamics model (tanh)
        "dyn_prior_sd": 0.01,  # prior N(0, sd^2) of its weights; also their initial sigma
        "dyn_drop_obs": 0,  # trailing observation dimensions the model ignores (ML10: 6 always 0)
        "init_eta": 0.1,  # sigmoid(eta) at the start
    }

    def setup_latent(self, cfg: Mapping[str, Any]) -> None:
        self.dyn_prior_sd = float(cfg["dyn_prior_sd"])
        self.dyn_obs_dim = self.obs_dim - int(cfg["dyn_drop_obs"])
        if self.inference_only:
            return
        init = init_bnn(
            self.dyn_obs_dim + self.act_dim, self.dyn_obs_dim, list(cfg["dyn_hidden"]), self.dyn_prior_sd
        )
        self.dynamics = nn.ParameterDict({k: nn.Parameter(v) for k, v in init.items()})
        p = float(cfg["init_eta"])
        self.eta = nn.Parameter(torch.tensor(math.log(p / (1 - p))))
        self.register_buffer("meta_updates", torch.zeros((), dtype=torch.long))

    def meta_params(self) -> Params:
        """The policy's parameters only (the dynamics model and eta have their own updates)."""
        return {n: p for n, p in super().meta_params().items() if not n.startswith(LEARNER_ONLY)}

    def dynamics_params(self) -> Params:
        return dict(self.dynamics.items())

    def get_non_inference_attributes(self) -> list[str]:
        return [*super().get_non_inference_attributes(), *LEARNER_ONLY]
