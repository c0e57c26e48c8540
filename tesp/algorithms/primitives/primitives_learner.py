"""tesp's PPO Learner (RLlib's, with ``reward_scale``), plus keeping each primitive's acting copy equal to its trained copy."""

from __future__ import annotations

from typing import Any

from tesp.algorithms.ppo.ppo import PPOLearner
from tesp.algorithms.primitives.primitives_env import FROZEN


class PrimitivesLearner(PPOLearner):
    def after_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        super().after_gradient_based_update(timesteps=timesteps)
        # The EnvRunners receive every module's weights after this update: a primitive then acts
        # with its fine-tuned weights in and out of the transition windows alike.
        for module_id in list(self.module.keys()):
            if module_id + FROZEN in self.module and self.should_module_be_updated(module_id):
                self.module[module_id + FROZEN].load_state_dict(self.module[module_id].state_dict())
