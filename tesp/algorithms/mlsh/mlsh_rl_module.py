"""MLSH's hierarchical policy as an RLlib RLModule (Frans et al. 2017).

A master policy picks one of ``num_subs`` sub-policies every ``macro_duration`` steps; the
chosen sub-policy acts until the next choice. Sub-policies are shared by every task; each task
has its own master.

- ``master``: a :class:`Master`, an MLP from the observation to ``num_subs`` logits and an MLP
  value function of the macro-step return (the master that EnvRunners act with; the learner
  keeps one master per concurrently trained task in ``masters``);
- ``subs``: ``num_subs`` MLPs from the observation to the action distribution's inputs:
  logits for a ``Discrete`` action space, ``[mean, log_std]`` for a ``Box`` (a state-independent
  log-std per sub-policy), and ``sub_vfs``, one MLP value function per sub-policy;
- ``obs_filter``: a running mean/std normalisation of the observation that every network reads
  (``obs_normalization``; the reference normalises each network's input the same way).

On the EnvRunner the env-to-module connector tells the module, per sub-env, the position within
the current macro step (``macro_t``) and the sub-policy in charge (``sub_policy``). At
``macro_t == 0`` the module samples a new choice from the master (replaced by a uniformly random
sub-policy with probability ``random_sub_prob``). It records with every step the sub-policy that
acted, whether a macro step started (``macro_start``) and the master's log-probability of that
choice under that exploring policy (``master_logp``); the learner builds the master's macro-step batch from these.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override
from torch import nn

from tesp.models.rl_module import StatelessModeTorchRLModule
from tesp.nn.distributions import (
    categorical_entropy,
    categorical_logp,
    gaussian_entropy,
    gaussian_logp,
    sample_categorical,
    sample_gaussian,
)
from tesp.nn.mlp import mlp
from tesp.nn.normalization import RunningMeanStd

SUB_POLICY = "sub_policy"
MACRO_T = "macro_t"
MACRO_START = "macro_start"
MASTER_LOGP = "master_logp"

MODEL_DEFAULTS = {
    "hidden": [64, 64],
    "activation": "tanh",
    "num_subs": 2,
    "macro_duration": 10,
    "random_sub_prob": 0.1,
    "num_masters": 1,  # masters kept by the learner: one per concurrently trained task
    "init_log_std": 0.0,
    "obs_normalization": True,
}


class Master(nn.Module):
    """One task's master: logits over the sub-policies and a value function, both of the
    (normalised) observation at the start of a macro step."""

    def __init__(self, obs_dim: int, hidden: list[int], num_subs: int, activation: str) -> None:
        super().__init__()
        self.pi = mlp(obs_dim, hidden, num_subs, activation)
        self.vf = mlp(obs_dim, hidden, 1, activation, head_std=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.pi(obs)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.vf(obs).squeeze(-1)


class MLSHModule(StatelessModeTorchRLModule, InferenceOnlyAPI):
    DEFAULT_MODEL_CONFIG: ClassVar[dict[str, Any]] = MODEL_DEFAULTS  # model.NAME settings

    @override(TorchRLModule)
    def setup(self) -> None:
        cfg = {**self.DEFAULT_MODEL_CONFIG, **(self.model_config or {})}
        self.num_subs = int(cfg["num_subs"])
        self.macro_duration = int(cfg["macro_duration"])
        self.random_sub_prob = float(cfg["random_sub_prob"])
        self.hidden, self.activation = list(cfg["hidden"]), cfg["activation"]
        self.obs_dim = int(np.prod(self.observation_space.shape))
        self.discrete = isinstance(self.action_space, gym.spaces.Discrete)
        self.act_dim = int(self.action_space.n) if self.discrete else int(np.prod(self.action_space.shape))
        self.master = self.new_master()
        self.subs = nn.ModuleList(
            mlp(self.obs_dim, self.hidden, self.act_dim, self.activation) for _ in range(self.num_subs)
        )
        self.sub_vfs = nn.ModuleList(
            mlp(self.obs_dim, self.hidden, 1, self.activation, head_std=1.0) for _ in range(self.num_subs)
        )
        self.obs_normalization = bool(cfg["obs_normalization"])
        self.obs_filter = RunningMeanStd(self.obs_dim)
        if not self.discrete:
            self.sub_log_std = nn.Parameter(
                torch.full((self.num_subs, self.act_dim), float(cfg["init_log_std"]))
            )
        self.masters = nn.ModuleList(self.new_master() for _ in range(int(cfg["num_masters"])))

    def new_master(self) -> Master:
        return Master(self.obs_dim, self.hidden, self.num_subs, self.activation)

    def sub_parameters(self) -> list[nn.Parameter]:
        extra = [self.sub_log_std] if not self.discrete else []
        return [*self.subs.parameters(), *self.sub_vfs.parameters(), *extra]

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return self.obs_filter(obs) if self.obs_normalization else obs

    # -- distributions and values (of raw observations) ---------------------------------
    def master_logits(self, master: Master, obs: torch.Tensor) -> torch.Tensor:
        return master(self.normalize(obs))

    def master_value(self, master: Master, obs: torch.Tensor) -> torch.Tensor:
        return master.value(self.normalize(obs))

    def sub_values(self, obs: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
        """The value function of sub-policy ``sub[i]`` at ``obs[i]``."""
        z = self.normalize(obs)
        out = torch.cat([vf(z) for vf in self.sub_vfs], dim=1)  # [B, K]
        return out.gather(1, sub.long().view(-1, 1)).squeeze(1)

    def sub_dist_inputs(self, obs: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
        """The action distribution's inputs of sub-policy ``sub[i]`` at ``obs[i]``."""
        z = self.normalize(obs)
        out = torch.stack([s(z) for s in self.subs], dim=1)  # [B, K, act_dim]
        chosen = out.gather(1, sub.long().view(-1, 1, 1).expand(-1, 1, out.shape[-1])).squeeze(1)
        if self.discrete:
            return chosen
        return torch.cat([chosen, self.sub_log_std[sub.long()]], dim=-1)

    def action_logp(self, dist_inputs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return (
            categorical_logp(dist_inputs, actions) if self.discrete else gaussian_logp(dist_inputs, actions)
        )

    def action_entropy(self, dist_inputs: torch.Tensor) -> torch.Tensor:
        """Entropy of the sub-policy action distribution with inputs ``dist_inputs``."""
        return categorical_entropy(dist_inputs) if self.discrete else gaussian_entropy(dist_inputs)

    def sample_actions(self, dist_inputs: torch.Tensor, explore: bool) -> torch.Tensor:
        if self.discrete:
            return sample_categorical(dist_inputs) if explore else dist_inputs.argmax(-1)
        return sample_gaussian(dist_inputs, explore)

    def master_logp(self, logits: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
        """log-probability of choosing ``sub`` under the master's exploring policy: the master's
        softmax mixed with the uniform choice made with probability ``random_sub_prob``. PPO's
        ratio uses this behaviour distribution, so a random choice never has probability ~0."""
        eps = self.random_sub_prob
        probs = (1 - eps) * torch.softmax(logits, -1) + eps / self.num_subs
        return torch.log(probs.gather(-1, sub.long().view(-1, 1)).squeeze(-1))

    # -- RLModule API -------------------------------------------------------------------
    def _act(self, batch, explore: bool):
        obs = batch[Columns.OBS]
        with torch.no_grad():
            logits = self.master_logits(self.master, obs)
            if explore:
                choice = sample_categorical(logits)
                swap = torch.rand(choice.shape) < self.random_sub_prob
                choice = torch.where(swap, torch.randint(0, self.num_subs, choice.shape), choice)
            else:
                choice = logits.argmax(-1)
            start = batch[MACRO_T] == 0
            sub = torch.where(start, choice, batch[SUB_POLICY].long())
            dist_inputs = self.sub_dist_inputs(obs, sub)
            actions = self.sample_actions(dist_inputs, explore)
            master_logp = self.master_logp(logits, sub) if explore else torch.zeros(sub.shape)
        return {
            Columns.ACTIONS: actions,
            Columns.ACTION_DIST_INPUTS: dist_inputs,
            Columns.ACTION_LOGP: self.action_logp(dist_inputs, actions),
            SUB_POLICY: sub,
            MACRO_START: start.float(),
            MASTER_LOGP: master_logp,
        }

    @override(TorchRLModule)
    def _forward_exploration(self, batch, **kwargs):
        return self._act(batch, explore=True)

    @override(TorchRLModule)
    def _forward_inference(self, batch, **kwargs):
        return self._act(batch, explore=False)

    @override(TorchRLModule)
    def _forward(self, batch, **kwargs):
        return self._act(batch, explore=False)

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:
        return ["masters"]
