"""Diagonal-Gaussian MLP policy as an RLlib RLModule, with a functional forward.

The network maps an observation to ``[mean, log_std]`` (RLlib's ``TorchDiagGaussian``
inputs). With ``free_log_std`` the log-std is a state-independent parameter vector (the
MAML paper's policy); otherwise the last layer outputs it (the TESP reference, spec §1.1).

Meta-learning needs the same network evaluated at parameters other than its own (the
adapted ``theta'``); :meth:`GaussianMLPModule.dist_inputs` does that with
``torch.func.functional_call``, so gradients can flow back through ``theta'``.

Meta-SGD's per-parameter inner step sizes live here too (``step_sizes``), so they are
checkpointed and optimised with the rest of the meta-parameters; they are not part of the
inference-only copy that EnvRunners hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override
from torch import nn
from torch.func import functional_call

Params = dict[str, torch.Tensor]

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}

#: model_config keys and their defaults.
DEFAULT_MODEL_CONFIG = {
    "hidden": [64, 64],
    "activation": "tanh",
    "free_log_std": True,
    "init_log_std": 0.0,
    # Meta-SGD: learn one inner step size per adapted parameter element.
    "learn_step_sizes": False,
    "init_step_size": 0.1,
}


def normc_(weight: torch.Tensor, std: float) -> None:
    """'normc' init (spec §1.1): N(0, 1) entries, each output unit's weights rescaled to norm ``std``."""
    with torch.no_grad():
        weight.normal_(0.0, 1.0)
        weight.mul_(std / weight.norm(dim=1, keepdim=True))


class GaussianMLPModule(TorchRLModule, InferenceOnlyAPI):
    @override(TorchRLModule)
    def setup(self) -> None:
        cfg = {**DEFAULT_MODEL_CONFIG, **(self.model_config or {})}
        if cfg["activation"] not in ACTIVATIONS:
            raise ValueError(f"unknown activation {cfg['activation']!r}; choose from {sorted(ACTIVATIONS)}")
        obs_dim = int(np.prod(self.observation_space.shape))
        self.act_dim = int(np.prod(self.action_space.shape))
        self.free_log_std = bool(cfg["free_log_std"])

        layers: list[nn.Module] = []
        last = obs_dim
        for width in cfg["hidden"]:
            linear = nn.Linear(last, width)
            normc_(linear.weight, 1.0)
            nn.init.zeros_(linear.bias)
            layers += [linear, ACTIVATIONS[cfg["activation"]]()]
            last = width
        out_dim = self.act_dim if self.free_log_std else 2 * self.act_dim
        head = nn.Linear(last, out_dim)
        normc_(head.weight, 0.01)
        nn.init.zeros_(head.bias)
        if not self.free_log_std:
            with torch.no_grad():
                head.bias[self.act_dim :] = cfg["init_log_std"]
        layers.append(head)
        self.pi = nn.Sequential(*layers)
        if self.free_log_std:
            self.pi.register_parameter(
                "log_std", nn.Parameter(torch.full((self.act_dim,), float(cfg["init_log_std"])))
            )

        if cfg["learn_step_sizes"] and not self.inference_only:
            self.step_sizes = nn.ParameterDict(
                {
                    _key(name): nn.Parameter(torch.full_like(p, float(cfg["init_step_size"])))
                    for name, p in self.pi.named_parameters()
                }
            )
        else:
            self.step_sizes = None

    # -- functional interface used by the meta-learner -------------------------------
    def policy_params(self) -> Params:
        """The policy's own parameters, by name (the meta-parameters ``theta``)."""
        return dict(self.pi.named_parameters())

    def dist_inputs(
        self, obs: torch.Tensor, params: Mapping[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """``[mean, log_std]`` for ``obs`` under ``params`` (default: the module's own)."""
        if params is None:  # the sampling hot path: skip functional_call's re-parametrisation
            out, log_std = self.pi(obs), getattr(self.pi, "log_std", None)
        else:
            out, log_std = functional_call(self.pi, dict(params), (obs,)), params.get("log_std")
        if self.free_log_std:
            return torch.cat([out, log_std.expand_as(out)], dim=-1)
        return out

    def step_size(self, name: str) -> torch.Tensor:
        return self.step_sizes[_key(name)]

    def load_policy_params(self, params: Mapping[str, np.ndarray | torch.Tensor]) -> None:
        """Overwrite the policy's parameters in place (used for per-task weight pushes)."""
        with torch.no_grad():
            for name, p in self.pi.named_parameters():
                p.copy_(torch.as_tensor(params[name]))

    # -- RLModule API -----------------------------------------------------------------
    @override(TorchRLModule)
    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.dist_inputs(batch[Columns.OBS])}

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:
        return ["step_sizes"]


def _key(param_name: str) -> str:
    # ParameterDict keys may not contain dots.
    return param_name.replace(".", "__")


def gaussian_logp(dist_inputs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log N(a | mean, diag(exp(log_std))^2), summed over action dimensions."""
    mean, log_std = dist_inputs.chunk(2, dim=-1)
    z = (actions - mean) * torch.exp(-log_std)
    return -(0.5 * z.pow(2) + log_std).sum(-1) - 0.5 * mean.shape[-1] * math.log(2 * math.pi)


def gaussian_kl(p_inputs: torch.Tensor, q_inputs: torch.Tensor) -> torch.Tensor:
    """KL(p || q) between diagonal Gaussians given as ``[mean, log_std]``."""
    p_mean, p_log_std = p_inputs.chunk(2, dim=-1)
    q_mean, q_log_std = q_inputs.chunk(2, dim=-1)
    var_ratio = torch.exp(2 * (p_log_std - q_log_std))
    t = (p_mean - q_mean).pow(2) * torch.exp(-2 * q_log_std)
    return 0.5 * (var_ratio + t - 1).sum(-1) - (p_log_std - q_log_std).sum(-1)
