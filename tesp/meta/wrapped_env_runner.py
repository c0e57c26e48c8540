"""An RLlib EnvRunner whose sub-envs are the config's task family inside a method's own wrapper
(RL²'s trials, PEARL's latent-augmented observations): RLlib's ``SingleAgentEnvRunner`` with
its env built by :meth:`WrappedEnvRunner.wrap_env` instead of from the registered env alone."""

from __future__ import annotations

from functools import partial

import gymnasium as gym
from gymnasium.wrappers.vector import DictInfoToList
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner


class WrappedEnvRunner(SingleAgentEnvRunner):
    #: the gymnasium id the wrapped env is registered under in each EnvRunner process
    ENV_ID = "tesp-wrapped-v0"

    @classmethod
    def wrap_env(cls, config, name: str, env_config: dict) -> gym.Env:
        """One sub-env: the task family ``name`` (built with ``env_config``) in the wrapper, per
        the algorithm's ``config`` (a classmethod: the vector env may pickle its entry point)."""
        raise NotImplementedError

    def make_env(self) -> None:
        if self.env is not None:
            self.env.close()
        user = {k: v for k, v in dict(self.config.env_config).items() if k != "num_envs"}
        name = self.config.env
        gym.register(self.ENV_ID, entry_point=partial(type(self).wrap_env, self.config, name, user))
        self.env = DictInfoToList(
            gym.make_vec(
                self.ENV_ID,
                num_envs=self.config.num_envs_per_env_runner,
                vectorization_mode=gym.VectorizeMode(self.config.gym_env_vectorize_mode),
            )
        )
        self.num_envs = self.env.num_envs
        self._needs_initial_reset = True

    def sub_envs(self) -> list:
        """The unwrapped sub-envs (the method's wrapper objects)."""
        return [env.unwrapped for env in self.env.unwrapped.envs]
