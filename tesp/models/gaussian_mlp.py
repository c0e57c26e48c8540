"""Diagonal-Gaussian MLP policy as an RLlib RLModule, with a functional forward.

The network maps an observation to ``[mean, log_std]`` (RLlib's ``TorchDiagGaussian``
inputs). With ``free_log_std`` the log-std is a state-independent parameter vector (the
MAML paper's policy); otherwise the last layer outputs it (the TESP reference, spec §1.1).

With ``latent_dim = d > 0`` the module also holds a latent vector ``latent`` in R^d that is
concatenated to every observation (AdaptSV, spec §1.4); its initial value is a random
direction of norm ``latent_init_norm`` (normc(0.01) in the reference).

Meta-learning needs the same network evaluated at parameters other than its own (the
adapted ``theta'``); :meth:`GaussianMLPModule.dist_inputs` does that with
``torch.func.functional_call``, so gradients can flow back through ``theta'``. Parameters
are named as in the module's state dict (``pi.0.weight``, ``pi.log_std``, ``latent``) and
come in groups (``policy``, ``latent``); the ``adapted`` groups are what the inner loop changes.

Meta-SGD-style per-parameter inner step sizes for the adapted parameters live here too
(``step_sizes``), so they are checkpointed and optimised with the rest of the
meta-parameters; they are not part of the inference-only copy that EnvRunners hold.
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
PARAM_GROUPS = ("policy", "latent")

#: model_config keys and their defaults.
DEFAULT_MODEL_CONFIG = {
    "hidden": [64, 64],
    "activation": "tanh",
    "free_log_std": True,
    "init_log_std": 0.0,
    "latent_dim": 0,
    "latent_init_norm": 0.01,
    # Set by the algorithm config: which parameter groups the inner loop adapts, and whether
    # their step sizes are learned (and from what initial value).
    "adapted": ["policy"],
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
        self.latent_dim = int(cfg["latent_dim"])

        layers: list[nn.Module] = []
        last = obs_dim + self.latent_dim
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
        if self.latent_dim:
            latent = torch.randn(self.latent_dim)
            self.latent = nn.Parameter(latent * float(cfg["latent_init_norm"]) / latent.norm())

        unknown = set(cfg["adapted"]) - set(PARAM_GROUPS)
        if unknown or not cfg["adapted"] or ("latent" in cfg["adapted"] and not self.latent_dim):
            raise ValueError(
                f"adapted={cfg['adapted']!r} is invalid: choose groups from {PARAM_GROUPS}"
                " ('latent' needs model latent_dim > 0)"
            )
        self._adapted = [n for n in self.meta_params() if self._group(n) in cfg["adapted"]]
        self.step_sizes = None
        if cfg["learn_step_sizes"] and not self.inference_only:
            self.step_sizes = nn.ParameterDict(
                {
                    _key(n): nn.Parameter(torch.full_like(p, float(cfg["init_step_size"])))
                    for n, p in self.meta_params().items()
                    if n in self._adapted
                }
            )

    # -- functional interface used by the meta-learner -------------------------------
    @staticmethod
    def _group(name: str) -> str:
        return "policy" if name.startswith("pi.") else name

    def meta_params(self) -> Params:
        """The parameters the inner loop starts from (theta), by state-dict name."""
        return {n: p for n, p in self.named_parameters() if not n.startswith("step_sizes.")}

    def adapted_names(self) -> list[str]:
        """The names of the parameters the inner loop adapts."""
        return list(self._adapted)

    def dist_inputs(
        self, obs: torch.Tensor, params: Mapping[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """``[mean, log_std]`` for ``obs`` under ``params`` (default: the module's own)."""
        if params is None:  # the sampling hot path: skip functional_call's re-parametrisation
            latent, log_std = getattr(self, "latent", None), getattr(self.pi, "log_std", None)
        else:
            latent, log_std = params.get("latent"), params.get("pi.log_std")
        x = obs if latent is None else torch.cat([obs, latent.expand(*obs.shape[:-1], -1)], dim=-1)
        if params is None:
            out = self.pi(x)
        else:
            out = functional_call(self.pi, {k[3:]: v for k, v in params.items() if k.startswith("pi.")}, (x,))
        if self.free_log_std:
            return torch.cat([out, log_std.expand_as(out)], dim=-1)
        return out

    def step_size(self, name: str) -> torch.Tensor:
        return self.step_sizes[_key(name)]

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
