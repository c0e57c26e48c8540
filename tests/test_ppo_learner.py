"""``--alg ppo``'s Learner: RLlib's PPO with the rewards scaled before GAE (``reward_scale``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.connectors.learner import GeneralAdvantageEstimation
from ray.rllib.core.columns import Columns

from tesp.algorithms.ppo.ppo import PPOConfig, ScaleRewards


def pipeline(scale: float) -> list[str]:
    config = PPOConfig().environment("Pendulum-v1").update_from_dict({"reward_scale": scale})
    learner = config.build_learner(env=gym.make("Pendulum-v1"))
    return [type(c).__name__ for c in learner._learner_connector.connectors]


def test_rewards_are_scaled_right_before_gae():
    names = pipeline(0.01)
    assert names.count("ScaleRewards") == 1
    assert names.index("ScaleRewards") + 1 == names.index(GeneralAdvantageEstimation.__name__)
    assert "ScaleRewards" not in pipeline(1.0)  # the default: RLlib's pipeline unchanged


def test_scale_rewards_multiplies_only_the_rewards():
    rewards, obs = torch.tensor([1.0, -2.0, 300.0]), torch.ones(3, 2)
    batch = {"default_policy": {Columns.REWARDS: rewards, Columns.OBS: obs}}
    out = ScaleRewards(scale=0.01)(rl_module=None, batch=batch, episodes=[])
    np.testing.assert_allclose(out["default_policy"][Columns.REWARDS].numpy(), [0.01, -0.02, 3.0], rtol=1e-6)
    assert out["default_policy"][Columns.OBS] is obs
    np.testing.assert_array_equal(rewards.numpy(), [1.0, -2.0, 300.0])  # the episodes' own rewards untouched


@pytest.mark.parametrize("scale", [0.0, -1.0])
def test_a_non_positive_scale_is_refused(scale):
    config = PPOConfig().environment("Pendulum-v1").update_from_dict({"reward_scale": scale})
    with pytest.raises(ValueError, match=f"reward_scale={scale!r} is invalid: must be > 0"):
        config.validate()
