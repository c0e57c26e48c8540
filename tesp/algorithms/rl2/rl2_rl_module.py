"""RL²'s policy: a GRU over the trial's inputs (observation, previous action, previous reward,
episode-start flag; :mod:`~tesp.algorithms.rl2.trial_env`), a Gaussian policy head and a value
head on its hidden state (Duan et al. 2016, §2.2 and §3: a GRU policy, its hidden state carried
over the episodes of a trial).

An RLlib stateful RLModule: ``get_initial_state`` gives the zero hidden state RLlib starts each
of its episodes (each of our trials) with; the forward passes take ``[B, T, ...]`` inputs (RLlib's
connectors add the time axis: one step at a time while sampling, ``model.max_seq_len`` steps in
the Learner, each sequence starting from the hidden state recorded while sampling) and return
the last hidden state as ``STATE_OUT``.

``model.gru_size`` (64: garage's RL² example and Duan et al.'s smaller tasks), ``model.hiddens``
(layers between the input and the GRU, empty by default), ``model.initial_log_std`` (the
policy's initial action noise as in ``ppo_rl_module.py``; None: 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn


class RL2Module(TorchRLModule, ValueFunctionAPI):
    def setup(self) -> None:
        size = self.observation_space.shape[0]
        layers: list[nn.Module] = []
        for width in self.model_config.get("hiddens", []):
            layers += [nn.Linear(size, width), nn.Tanh()]
            size = width
        self.encoder = nn.Sequential(*layers)
        self.gru_size = int(self.model_config.get("gru_size", 64))
        self.gru = nn.GRU(size, self.gru_size, batch_first=True)
        actions = self.action_space.shape[0]
        self.pi = nn.Linear(self.gru_size, 2 * actions)
        self.vf = nn.Linear(self.gru_size, 1)
        log_std = self.model_config.get("initial_log_std")
        with torch.no_grad():
            self.pi.weight.mul_(0.01)  # near-zero initial means (Andrychowicz et al. 2021, Sec. 3.2)
            self.pi.bias.zero_()
            self.pi.weight[actions:] = 0.0
            self.pi.bias[actions:] = 0.0 if log_std is None else float(log_std)

    def get_initial_state(self) -> dict[str, np.ndarray]:
        return {"h": np.zeros(self.gru_size, dtype=np.float32)}

    def _hidden(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The GRU's outputs ``[B, T, H]`` and its last hidden state ``{"h": [B, H]}``."""
        h0 = batch[Columns.STATE_IN]["h"].unsqueeze(0)  # [1, B, H]
        out, h = self.gru(self.encoder(batch[Columns.OBS]), h0.contiguous())
        return out, {"h": h.squeeze(0)}

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        out, state = self._hidden(batch)
        return {Columns.ACTION_DIST_INPUTS: self.pi(out), Columns.STATE_OUT: state}

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        out, state = self._hidden(batch)
        return {Columns.ACTION_DIST_INPUTS: self.pi(out), Columns.STATE_OUT: state, Columns.EMBEDDINGS: out}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        if embeddings is None:
            embeddings, _ = self._hidden(batch)
        return self.vf(embeddings).squeeze(-1)
