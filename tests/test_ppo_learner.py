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
    with pytest.raises(ValueError, match=f"reward_scale={scale!r} is invalid: must be a number > 0"):
        config.validate()


def build_module(env_id: str = "Pendulum-v1", **model):
    env = gym.make(env_id)
    config = PPOConfig().environment(env_id)
    config.update_model_config(**model)
    spec = config.get_default_rl_module_spec()
    spec.observation_space, spec.action_space = env.observation_space, env.action_space
    spec.model_config = config.model_config
    return spec.build()


def test_initial_log_std_sets_the_policys_starting_noise():
    torch.manual_seed(0)
    obs = {Columns.OBS: torch.randn(64, 3) * 3}
    out = build_module(initial_log_std=-0.7)._forward_inference(obs)[Columns.ACTION_DIST_INPUTS]
    mean, log_std = out[:, 0], out[:, 1]
    assert torch.allclose(log_std, torch.full_like(log_std, -0.7))  # the same for every observation
    assert mean.abs().max() < 0.05 and mean.std() > 0  # near zero, yet still a function of the input
    # RLlib's own initialisation without the setting: noise near std 1, state-dependent.
    default = build_module()._forward_inference(obs)[Columns.ACTION_DIST_INPUTS][:, 1]
    assert default.std() > 1e-3 and default.abs().mean() < 0.5


def test_initial_log_std_leaves_discrete_heads_alone():
    torch.manual_seed(0)
    module = build_module("CartPole-v1", initial_log_std=-0.7)
    logits = module._forward_inference({Columns.OBS: torch.randn(16, 4)})[Columns.ACTION_DIST_INPUTS]
    assert logits.shape == (16, 2) and not torch.any(logits == -0.7) and logits.std() > 1e-3


@pytest.mark.parametrize(
    "model, message",
    [
        ({"initial_log_std": "low"}, "model.initial_log_std='low' is invalid: must be a number or null"),
        ({"pi_last_layer_scale": 0}, "model.pi_last_layer_scale=0 is invalid: must be > 0"),
    ],
)
def test_bad_initial_noise_settings_are_refused(model, message):
    config = PPOConfig().environment("Pendulum-v1")
    config.update_model_config(**model)
    with pytest.raises(ValueError, match=message):
        config.validate()
