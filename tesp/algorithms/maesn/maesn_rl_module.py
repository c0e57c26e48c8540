"""MAESN's policy (Gupta et al. 2018): the Gaussian MLP reading ``[obs, z]``, with ``z`` drawn
once per episode from the task's latent distribution.

Each of the ``num_task_latents`` training tasks has ``N(mu_i, diag(sigma_i^2))``
(``task_latent_mean`` and ``task_latent_log_std``, learner only; means drawn from N(0, I),
log-stds 0). A task's parameters hold its row as ``latent_mean`` / ``latent_log_std`` (the
``latent`` group); tasks outside the training pool start from the prior N(0, I). ``z = mu + sigma
* eps`` with ``eps ~ N(0, I)`` drawn at each episode's first step on the EnvRunner
(:class:`DrawEpisodeNoise`) and recorded with every step (``latent_noise``), so the learner
recomputes exactly the sampled ``z`` and differentiates it. EnvRunners hold the task's
``latent_mean`` and ``latent_log_std`` buffers (default: the prior).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns
from ray.rllib.utils.annotations import override
from torch import nn

from tesp.models import connectors
from tesp.models.gaussian_policy import GaussianPolicyModule
from tesp.nn.params import Params, per_task

LATENT_NOISE = "latent_noise"  # per-step batch column: the episode's eps


class MAESNRLModule(GaussianPolicyModule):
    DEFAULT_MODEL_CONFIG: ClassVar[dict[str, Any]] = {
        **GaussianPolicyModule.DEFAULT_MODEL_CONFIG,
        "latent_dim": 4,
        "num_task_latents": 0,  # set by the config: the training pool's size
    }
    PARAM_GROUPS = ("policy", "latent")

    def latent_input_dim(self, cfg: Mapping[str, Any]) -> int:
        return int(cfg["latent_dim"])

    def setup_latent(self, cfg: Mapping[str, Any]) -> None:
        num = int(cfg["num_task_latents"])
        if num < 1:
            raise ValueError("maesn needs num_task_latents >= 1 (a finite training pool)")
        self.register_buffer("latent_mean", torch.zeros(self.latent_dim))
        self.register_buffer("latent_log_std", torch.zeros(self.latent_dim))
        self.task_latent_mean = nn.Parameter(torch.randn(num, self.latent_dim))
        self.task_latent_log_std = nn.Parameter(torch.zeros(num, self.latent_dim))

    def param_group(self, name: str) -> str:
        return "latent" if name.startswith("latent_") else super().param_group(name)

    def single_task_params(self) -> Params:
        """The shared parameters and, in the per-task tables' place, the prior's shape."""
        params = {n: p for n, p in self.meta_params().items() if not n.startswith("task_latent_")}
        params["latent_mean"] = self.latent_mean
        params["latent_log_std"] = self.latent_log_std
        return params

    def task_params(self, num_tasks: int, task_index: torch.Tensor | None = None) -> Params:
        """Shared parameters broadcast; each task's latent distribution is the row
        ``task_index[t]`` of the per-task tables, or the prior N(0, I) outside the training pool."""
        shared = {n: p for n, p in self.single_task_params().items() if not n.startswith("latent_")}
        params = per_task(shared, num_tasks)
        prior = torch.zeros(num_tasks, self.latent_dim)
        if task_index is None:
            params["latent_mean"], params["latent_log_std"] = prior, prior.clone()
        else:
            known = (task_index >= 0).unsqueeze(-1)
            rows = task_index.clamp(min=0)
            params["latent_mean"] = torch.where(known, self.task_latent_mean[rows], prior)
            params["latent_log_std"] = torch.where(known, self.task_latent_log_std[rows], prior)
        return params

    def task_latent(self, params, batch):
        """``mu + sigma * eps`` per step, ``[N, d]``, with the recorded ``batch["latent_noise"]``."""
        return params["latent_mean"] + torch.exp(params["latent_log_std"]) * batch[LATENT_NOISE]

    def _forward(self, batch, **kwargs):
        noise = batch[LATENT_NOISE]
        latent = self.latent_mean + torch.exp(self.latent_log_std) * noise
        return {
            Columns.ACTION_DIST_INPUTS: self.dist_inputs(batch[Columns.OBS], latent=latent),
            LATENT_NOISE: noise,
        }

    def get_non_inference_attributes(self) -> list[str]:
        return [*super().get_non_inference_attributes(), "task_latent_mean", "task_latent_log_std"]


class DrawEpisodeNoise(ConnectorV2):
    """Env to module: each episode's ``eps ~ N(0, I)``, drawn at its first step, for every step."""

    @override(ConnectorV2)
    def __call__(self, *, rl_module, batch: dict[str, Any], episodes, **kwargs) -> dict[str, Any]:
        for ep in episodes:
            if LATENT_NOISE not in ep.custom_data:
                ep.custom_data[LATENT_NOISE] = torch.randn(rl_module.latent_dim)
        batch[LATENT_NOISE] = torch.stack([ep.custom_data[LATENT_NOISE] for ep in episodes])
        return batch


def env_to_module(env=None, spaces=None, device=None) -> list[ConnectorV2]:
    return [*connectors.env_to_module(env, spaces, device), DrawEpisodeNoise()]
