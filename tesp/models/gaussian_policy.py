"""The RLModule every gradient-based meta-learner adapts: a diagonal-Gaussian MLP policy with a
functional forward.

The network maps an observation (and, for methods that condition the policy on a task latent
``z``, ``[obs, z]``) to ``[mean, log_std]`` (RLlib's ``TorchDiagGaussian`` inputs). With
``free_log_std`` the log-std is a state-independent parameter vector (the MAML paper's policy);
otherwise the last layer outputs it (Lan et al. 2019's TESP policy).

Meta-learning evaluates the same network at parameters other than its own (the adapted
``theta'``): :meth:`GaussianPolicyModule.dist_inputs` does that with
``torch.func.functional_call``, so gradients flow back through ``theta'``. Parameters are named
as in the module's state dict (``pi.0.weight``, ``pi.log_std``, ...) and belong to groups
(``policy`` here; subclasses add theirs); the ``adapted`` groups are what the inner loop changes.

Learned per-parameter inner step sizes (Li et al. 2017's Meta-SGD, also used by AdaptSV, MAESN
and TESP) live here too (``step_sizes``), so they are checkpointed and optimised with the other
meta-parameters; EnvRunners' inference-only copies do not hold them.

Subclasses (one per method, in the method's folder) add a task latent through four hooks:
:meth:`latent_input_dim`, :meth:`setup_latent`, :meth:`param_group` and :meth:`task_latent`, and
may override :meth:`task_params` and :meth:`inference_state`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override
from torch import nn
from torch.func import functional_call

from tesp.models.rl_module import StatelessModeTorchRLModule
from tesp.nn.mlp import mlp
from tesp.nn.params import Params, per_task


class GaussianPolicyModule(StatelessModeTorchRLModule, InferenceOnlyAPI):
    #: model_config keys and their defaults (``model.NAME`` settings).
    DEFAULT_MODEL_CONFIG: ClassVar[dict[str, Any]] = {
        "hidden": [64, 64],
        "activation": "tanh",
        "free_log_std": True,
        "init_log_std": 0.0,
        # Set by the algorithm config: which parameter groups the inner loop adapts, and whether
        # their step sizes are learned (and from what initial value).
        "adapted": ["policy"],
        "learn_step_sizes": False,
        "init_step_size": 0.1,
    }
    #: the parameter groups of this module, the values ``adapted`` may list.
    PARAM_GROUPS: ClassVar[tuple[str, ...]] = ("policy",)

    @override(TorchRLModule)
    def setup(self) -> None:
        cfg = {**self.DEFAULT_MODEL_CONFIG, **(self.model_config or {})}
        self.obs_dim = int(np.prod(self.observation_space.shape))
        self.act_dim = int(np.prod(self.action_space.shape))
        self.free_log_std = bool(cfg["free_log_std"])
        self.latent_dim = self.latent_input_dim(cfg)
        out_dim = self.act_dim if self.free_log_std else 2 * self.act_dim
        self.pi = mlp(self.obs_dim + self.latent_dim, list(cfg["hidden"]), out_dim, cfg["activation"])
        if self.free_log_std:
            self.pi.register_parameter(
                "log_std", nn.Parameter(torch.full((self.act_dim,), float(cfg["init_log_std"])))
            )
        else:
            with torch.no_grad():
                self.pi[-1].bias[self.act_dim :] = cfg["init_log_std"]
        self.setup_latent(cfg)

        groups = set(cfg["adapted"])
        if not groups or groups - set(self.PARAM_GROUPS):
            raise ValueError(f"adapted={cfg['adapted']!r} is invalid: choose groups from {self.PARAM_GROUPS}")
        self._adapted = [n for n in self.single_task_params() if self.param_group(n) in groups]
        self.step_sizes = None
        if cfg["learn_step_sizes"] and not self.inference_only:
            self.step_sizes = nn.ParameterDict(
                {
                    _key(n): nn.Parameter(torch.full_like(p, float(cfg["init_step_size"])))
                    for n, p in self.single_task_params().items()
                    if n in self._adapted
                }
            )

    # -- hooks for methods with a task latent --------------------------------------------
    def latent_input_dim(self, cfg: Mapping[str, Any]) -> int:
        """Width of the task latent the policy reads next to the observation (0: none)."""
        return 0

    def setup_latent(self, cfg: Mapping[str, Any]) -> None:
        """Create the modules and parameters that produce the task latent."""

    def param_group(self, name: str) -> str:
        """The group of the parameter ``name`` (one of :attr:`PARAM_GROUPS`)."""
        return "policy"

    def task_latent(self, params: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]):
        """The latent ``z`` the policy reads for one task under ``params`` (None: no latent)."""
        return None

    def default_latent(self, params: Mapping[str, torch.Tensor] | None):
        """The latent :meth:`dist_inputs` uses when it is given none (None: no latent)."""
        return None

    # -- functional interface used by the meta-learner -------------------------------
    def meta_params(self) -> Params:
        """Every meta-learned parameter except the step sizes, by state-dict name."""
        return {n: p for n, p in self.named_parameters() if not n.startswith("step_sizes.")}

    def single_task_params(self) -> Params:
        """One task's starting parameters, without a task dimension."""
        return self.meta_params()

    def task_params(self, num_tasks: int, task_index: torch.Tensor | None = None) -> Params:
        """The parameters each of ``num_tasks`` tasks starts adapting from, ``[T, ...]`` (theta):
        the shared parameters broadcast (a view, so gradients reach them). ``task_index`` is each
        task's index in the training pool (-1: not in it), for methods with per-task parameters."""
        return per_task(self.single_task_params(), num_tasks)

    def adapted_names(self) -> list[str]:
        """The names (in :meth:`task_params`) of the parameters the inner loop adapts."""
        return list(self._adapted)

    def inference_state(self, params: Mapping[str, torch.Tensor]) -> Params:
        """The inference-only module state (what EnvRunners load) for one task's ``params``."""
        skip = tuple(self.get_non_inference_attributes())
        keys = {k for k in self.state_dict() if not k.startswith(skip)}
        return {k: v for k, v in params.items() if k in keys}

    def dist_inputs(
        self,
        obs: torch.Tensor,
        params: Mapping[str, torch.Tensor] | None = None,
        latent: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[mean, log_std]`` for ``obs`` under ``params`` (default: the module's own) and the
        task latent ``latent`` (``[d]`` or per step ``[..., d]``; default: :meth:`default_latent`)."""
        if latent is None:
            latent = self.default_latent(params)
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
        return {Columns.ACTION_DIST_INPUTS: self.dist_inputs(batch[Columns.OBS])}

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:
        return ["step_sizes"]


def _key(param_name: str) -> str:
    # ParameterDict keys may not contain dots.
    return param_name.replace(".", "__")
