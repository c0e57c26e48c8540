"""Small builders shared by the tests."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from tesp.models.gaussian_policy import GaussianPolicyModule


def make_policy(
    obs_dim=2, act_dim=2, hidden=(8, 8), seed=0, inference_only=False, **model_config
) -> GaussianPolicyModule:
    torch.manual_seed(seed)
    return GaussianPolicyModule(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
        action_space=gym.spaces.Box(-1, 1, (act_dim,), np.float32),
        inference_only=inference_only,
        model_config={"hidden": list(hidden), **model_config},
    )


def random_batch(n=32, obs_dim=2, act_dim=2, seed=0, dtype=torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.randn(n, obs_dim, generator=g, dtype=dtype),
        "actions": torch.randn(n, act_dim, generator=g, dtype=dtype),
        "advantages": torch.randn(n, generator=g, dtype=dtype),
        "dist_inputs": 0.1 * torch.randn(n, 2 * act_dim, generator=g, dtype=dtype),
    }


def local_learner(algo):
    """The algorithm's (local, in-process) learner object."""
    return algo.on_learner(lambda learner: learner)
