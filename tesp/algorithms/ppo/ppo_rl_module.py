"""RLlib's default PPO RLModule with the policy head's initial action noise as a setting.

``model.initial_log_std`` (None: RLlib's initialisation): the Gaussian head starts with this
log standard deviation for every action dimension and with near-zero means, its last layer's
weights scaled by ``model.pi_last_layer_scale``. Andrychowicz et al. 2021 ("What matters in
on-policy reinforcement learning? A large-scale empirical study", ICLR, Sec. 3.2) found the
initial action noise and a last policy layer 100x smaller among the choices that matter most for
PPO on MuJoCo locomotion: RLlib's default starts every torque at a standard deviation of 1 on an
action range of [-1, 1]. Only for Gaussian (``Box``) actions.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule


class PPOModule(DefaultPPOTorchRLModule):
    def setup(self) -> None:
        super().setup()
        log_std = self.model_config.get("initial_log_std")
        if log_std is None or not hasattr(self, "pi") or not isinstance(self.action_space, gym.spaces.Box):
            return  # RLlib's initialisation (also for discrete actions: the head holds logits)
        last = [m for m in self.pi.modules() if isinstance(m, torch.nn.Linear)][-1]
        n = last.out_features // 2  # the head's outputs: the means, then the log-stds
        scale = float(self.model_config.get("pi_last_layer_scale", 0.01))
        with torch.no_grad():
            last.weight.mul_(scale)
            last.bias[:n] = 0.0
            last.weight[n:] = 0.0
            last.bias[n:] = float(log_std)
