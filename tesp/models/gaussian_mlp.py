"""Diagonal-Gaussian MLP policy as an RLlib RLModule, with a functional forward.

The network maps an observation to ``[mean, log_std]`` (RLlib's ``TorchDiagGaussian``
inputs). With ``free_log_std`` the log-std is a state-independent parameter vector (the
MAML paper's policy); otherwise the last layer outputs it (the TESP reference, spec §1.1).

With ``latent_dim = d > 0`` the policy also reads a task latent ``z`` in R^d, concatenated to
every observation. Where ``z`` comes from is ``latent_kind``:

- ``"vector"`` (AdaptSV, spec §1.4): ``latent`` is a meta-learned parameter, initialised to a
  random direction of norm ``latent_init_norm`` (normc(0.01) in the reference);
- ``"encoder"`` (TESP, spec §1.4): ``z`` is computed by a :class:`~tesp.models.task_encoder.TaskEncoder`
  (``encoder``, learner only) from the task's episode buffer. EnvRunners hold ``z`` in the
  ``latent`` buffer, which the learner fills for each task;
- ``"distribution"`` (MAESN, Gupta et al. 2018): each of the ``num_task_latents`` training
  tasks has a latent distribution N(mu_i, diag(sigma_i^2)) (``task_latent_mean`` and
  ``task_latent_log_std``, learner only; means drawn from N(0, I), log-stds 0). ``z = mu + sigma * eps``
  with ``eps ~ N(0, I)`` drawn once per episode on the EnvRunner (the env-to-module connector)
  and recorded with every step. EnvRunners hold the task's ``latent_mean`` and
  ``latent_log_std`` buffers (default: the prior, which is where unseen tasks start).

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

from tesp.meta.adaptation import per_task
from tesp.models.init import normc_
from tesp.models.rl_module import StatelessModeTorchRLModule
from tesp.models.task_encoder import TaskEncoder

Params = dict[str, torch.Tensor]

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
PARAM_GROUPS = ("policy", "latent", "encoder")
LATENT_KINDS = ("vector", "encoder", "distribution")
LATENT_NOISE = "latent_noise"  # per-step batch column: MAESN's per-episode eps

#: model_config keys and their defaults.
DEFAULT_MODEL_CONFIG = {
    "hidden": [64, 64],
    "activation": "tanh",
    "free_log_std": True,
    "init_log_std": 0.0,
    "latent_dim": 0,
    "latent_kind": "vector",
    "latent_init_norm": 0.01,
    "encoder_units": 64,  # TESP: GRU width
    "num_task_latents": 0,  # MAESN: training tasks with their own latent distribution
    # Set by the algorithm config: which parameter groups the inner loop adapts, and whether
    # their step sizes are learned (and from what initial value).
    "adapted": ["policy"],
    "learn_step_sizes": False,
    "init_step_size": 0.1,
}


class GaussianMLPModule(StatelessModeTorchRLModule, InferenceOnlyAPI):
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
        self.latent_kind = cfg["latent_kind"] if self.latent_dim else None
        self.latent_noise_dim = 0  # > 0: the env-to-module connector draws eps per episode
        if self.latent_kind == "vector":
            latent = torch.randn(self.latent_dim)
            self.latent = nn.Parameter(latent * float(cfg["latent_init_norm"]) / latent.norm())
        elif self.latent_kind == "encoder":
            self.register_buffer("latent", torch.zeros(self.latent_dim))
            self.encoder = TaskEncoder(
                obs_dim + 2 * self.act_dim + 1, int(cfg["encoder_units"]), self.latent_dim
            )
        elif self.latent_kind == "distribution":
            num = int(cfg["num_task_latents"])
            if num < 1:
                raise ValueError(
                    "latent_kind='distribution' needs num_task_latents >= 1 (a finite task pool)"
                )
            self.latent_noise_dim = self.latent_dim
            self.register_buffer("latent_mean", torch.zeros(self.latent_dim))
            self.register_buffer("latent_log_std", torch.zeros(self.latent_dim))
            self.task_latent_mean = nn.Parameter(torch.randn(num, self.latent_dim))
            self.task_latent_log_std = nn.Parameter(torch.zeros(num, self.latent_dim))
        elif self.latent_kind is not None:
            raise ValueError(f"latent_kind={self.latent_kind!r} is invalid: choose from {LATENT_KINDS}")

        groups = set(cfg["adapted"])
        if (
            groups - set(PARAM_GROUPS)
            or not groups
            or ("latent" in groups and self.latent_kind not in ("vector", "distribution"))
            or ("encoder" in groups and self.latent_kind != "encoder")
        ):
            raise ValueError(
                f"adapted={cfg['adapted']!r} is invalid: choose groups from {PARAM_GROUPS}"
                " ('latent' needs a vector or distribution latent, 'encoder' an encoder latent)"
            )
        self._adapted = [n for n in self._single_task_params() if self._group(n) in groups]
        self.step_sizes = None
        if cfg["learn_step_sizes"] and not self.inference_only:
            self.step_sizes = nn.ParameterDict(
                {
                    _key(n): nn.Parameter(torch.full_like(p, float(cfg["init_step_size"])))
                    for n, p in self._single_task_params().items()
                    if n in self._adapted
                }
            )

    # -- functional interface used by the meta-learner -------------------------------
    @staticmethod
    def _group(name: str) -> str:
        if name.startswith("pi."):
            return "policy"
        if name.startswith("encoder."):
            return "encoder"
        return "latent"

    def meta_params(self) -> Params:
        """Every meta-learned parameter except the step sizes, by state-dict name."""
        return {n: p for n, p in self.named_parameters() if not n.startswith("step_sizes.")}

    def _single_task_params(self) -> Params:
        """One task's starting parameters, without a task dimension (MAESN: the prior's shape)."""
        params = {n: p for n, p in self.meta_params().items() if not n.startswith("task_latent_")}
        if self.latent_kind == "distribution":
            params["latent_mean"] = self.latent_mean
            params["latent_log_std"] = self.latent_log_std
        return params

    def task_params(self, num_tasks: int, task_index: torch.Tensor | None = None) -> Params:
        """The parameters each of ``num_tasks`` tasks starts adapting from, ``[T, ...]`` (theta).

        Shared parameters are broadcast (a view, so gradients reach them). MAESN's latent
        distribution is the row ``task_index[t]`` of the per-task tables, or the prior
        N(0, I) for tasks outside the training pool (``task_index`` None or -1).
        """
        shared = {
            n: p for n, p in self._single_task_params().items() if n not in ("latent_mean", "latent_log_std")
        }
        params = per_task(shared, num_tasks)
        if self.latent_kind == "distribution":
            prior = torch.zeros(num_tasks, self.latent_dim)
            if task_index is None:
                params["latent_mean"], params["latent_log_std"] = prior, prior.clone()
            else:
                known = (task_index >= 0).unsqueeze(-1)
                rows = task_index.clamp(min=0)
                params["latent_mean"] = torch.where(known, self.task_latent_mean[rows], prior)
                params["latent_log_std"] = torch.where(known, self.task_latent_log_std[rows], prior)
        return params

    def adapted_names(self) -> list[str]:
        """The names (in :meth:`task_params`) of the parameters the inner loop adapts."""
        return list(self._adapted)

    def task_latent(self, params: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]):
        """The latent ``z`` the policy reads for one task under ``params`` (None without one).

        AdaptSV: the adapted vector, ``[d]``. TESP: the encoder's embedding of the task's
        episode buffer (``batch["buffer_inputs"]``, ``batch["buffer_mask"]``), ``[d]``. MAESN:
        ``mu + sigma * eps`` per step, ``[N, d]``, with the recorded ``batch["latent_noise"]``.
        """
        if self.latent_kind == "vector":
            return params["latent"]
        if self.latent_kind == "encoder":
            enc = {k[len("encoder.") :]: v for k, v in params.items() if k.startswith("encoder.")}
            return functional_call(self.encoder, enc, (batch["buffer_inputs"], batch["buffer_mask"]))
        if self.latent_kind == "distribution":
            return params["latent_mean"] + torch.exp(params["latent_log_std"]) * batch[LATENT_NOISE]
        return None

    def inference_state(
        self, params: Mapping[str, torch.Tensor], latent: torch.Tensor | None = None
    ) -> Params:
        """The inference-only module state (what EnvRunners load) for one task's ``params``.

        TESP's EnvRunners get the embedding ``latent`` the learner computed instead of the encoder.
        """
        state = {k: v for k, v in params.items() if k in self._inference_keys()}
        if self.latent_kind == "encoder":
            state["latent"] = self.latent if latent is None else latent
        return state

    def _inference_keys(self) -> set[str]:
        skip = tuple(self.get_non_inference_attributes())
        return {k for k in self.state_dict() if not k.startswith(skip)}

    def dist_inputs(
        self,
        obs: torch.Tensor,
        params: Mapping[str, torch.Tensor] | None = None,
        latent: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[mean, log_std]`` for ``obs`` under ``params`` (default: the module's own) and the
        task latent ``latent`` (``[d]`` or per step ``[..., d]``; default: the module's ``latent``)."""
        if latent is None and self.latent_kind in ("vector", "encoder"):
            latent = self.latent if params is None else params["latent"]
        x = obs if latent is None else torch.cat([obs, latent.expand(*obs.shape[:-1], -1)], dim=-1)
        if params is None:  # the sampling hot path: skip functional_call's re-parametrisation
            out, log_std = self.pi(x), getattr(self.pi, "log_std", None)
        else:
            pi = {k[3:]: v for k, v in params.items() if k.startswith("pi.")}
            out, log_std = functional_call(self.pi, pi, (x,)), params.get("pi.log_std")
        if self.free_log_std:
            return torch.cat([out, log_std.expand_as(out)], dim=-1)
        return out

    def step_size(self, name: str) -> torch.Tensor:
        return self.step_sizes[_key(name)]

    # -- RLModule API -----------------------------------------------------------------
    @override(TorchRLModule)
    def _forward(self, batch, **kwargs):
        if self.latent_kind == "distribution":
            noise = batch[LATENT_NOISE]
            latent = self.latent_mean + torch.exp(self.latent_log_std) * noise
            return {
                Columns.ACTION_DIST_INPUTS: self.dist_inputs(batch[Columns.OBS], latent=latent),
                LATENT_NOISE: noise,
            }
        return {Columns.ACTION_DIST_INPUTS: self.dist_inputs(batch[Columns.OBS])}

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:
        return ["step_sizes", "encoder", "task_latent_mean", "task_latent_log_std"]


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
