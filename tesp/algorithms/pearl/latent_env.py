"""PEARL's view of a task family: the task env's observation followed by the latent context z
the policy conditions on (Rakelly et al. 2019, §4.2: π(a | s, z)). The sampler fixes the task
and z of each sub-env before it collects (:meth:`LatentEnv.set_task`, :meth:`LatentEnv.set_latent`);
between collections the task is the last one set (a fresh draw from the family's training tasks
until one is)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from tesp.envs.base import Task, TaskEnv


class LatentEnv(gym.Env):
    def __init__(self, task_env: TaskEnv, latent_dim: int) -> None:
        inner = task_env.observation_space
        if not isinstance(inner, gym.spaces.Box) or not isinstance(task_env.action_space, gym.spaces.Box):
            raise ValueError("PEARL needs Box observation and action spaces")
        self.task_env = task_env
        self.obs_dim = inner.shape[0]
        self.observation_space = gym.spaces.Box(
            -np.inf, np.inf, shape=(self.obs_dim + latent_dim,), dtype=np.float32
        )
        self.action_space = task_env.action_space
        self.metadata = task_env.metadata
        self.z = np.zeros(latent_dim, dtype=np.float32)
        self._task: Task | None = None

    def set_task(self, task: Task | None) -> None:
        self._task = task

    def set_latent(self, z: np.ndarray) -> None:
        self.z = np.asarray(z, dtype=np.float32).reshape(self.z.shape)

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(obs, np.float32), self.z])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.task_env.np_random = np.random.default_rng(int(self.np_random.integers(2**31)))
        if self._task is None:
            self._task = self.task_env.sample_tasks(1)[0]
        self.task_env.set_task(self._task)
        obs, info = self.task_env.reset()
        return self._observe(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.task_env.step(action)
        return self._observe(obs), float(reward), terminated, truncated, info

    def render(self):
        return self.task_env.render()

    def close(self) -> None:
        self.task_env.close()
