"""EnvRunner pipelines for MLSH: the macro-step bookkeeping of each sub-env's episode.

- :class:`MacroStepInputs` (env to module): the newest observations, each episode's position
  within its current macro step (``len(episode) % macro_duration``) and the sub-policy in
  charge (kept in the episode's ``custom_data``);
- :class:`RecordSubPolicy` (module to env): stores the sub-policy that acted in each episode's
  ``custom_data`` (for the next step) and hands the module's outputs on as numpy arrays, which
  the EnvRunner records with each step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns
from ray.rllib.utils.annotations import override

from tesp.algorithms.mlsh.mlsh_rl_module import MACRO_T, SUB_POLICY


class MacroStepInputs(ConnectorV2):
    @override(ConnectorV2)
    def __call__(self, *, rl_module, batch: dict[str, Any], episodes, **kwargs) -> dict[str, Any]:
        obs = np.stack([ep.get_observations(-1) for ep in episodes]).astype(np.float32, copy=False)
        batch[Columns.OBS] = torch.from_numpy(obs)
        duration = rl_module.macro_duration
        batch[MACRO_T] = torch.tensor([len(ep) % duration for ep in episodes])
        batch[SUB_POLICY] = torch.tensor([ep.custom_data.get(SUB_POLICY, 0) for ep in episodes])
        return batch


class RecordSubPolicy(ConnectorV2):
    @override(ConnectorV2)
    def __call__(self, *, rl_module, batch: dict[str, Any], episodes, **kwargs) -> dict[str, Any]:
        out = {k: v.numpy() for k, v in batch.items()}
        for ep, sub in zip(episodes, out[SUB_POLICY], strict=True):
            ep.custom_data[SUB_POLICY] = int(sub)
        return out


def env_to_module(env=None, spaces=None, device=None) -> list[ConnectorV2]:
    return [MacroStepInputs()]


def module_to_env(env=None, spaces=None) -> list[ConnectorV2]:
    return [RecordSubPolicy()]
