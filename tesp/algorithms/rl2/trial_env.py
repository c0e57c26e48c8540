"""RL²'s view of a task family (Duan et al. 2016, "RL²: Fast Reinforcement Learning via Slow
Reinforcement Learning", §2.2; Wang et al. 2016): a *trial* is ``episodes_per_trial`` episodes of
one task, presented to the learner as a single episode, so that a recurrent policy's hidden state
carries over the episode boundaries inside a trial (RLlib resets a module's state at its own
episode boundaries, which are the trials') and starts afresh with the next trial's task.

Each step's observation is the task env's, followed by the previous action, the previous reward
and a flag that is 1 at the first step of each episode of the trial (the paper's "done" input:
at that step the previous action and reward are the previous episode's last, or zeros at the
trial's start). The reward is the task env's; the trial's return is what the learner maximises.

A trial's task is drawn from the family's training tasks at the trial's reset (pool D where
the family has one, else a fresh draw) unless :meth:`set_task` fixed one (evaluation). At the
trial's end ``info["episode_returns"]`` holds its episodes' returns in order, and
``info["success"]`` per episode where the task env reports success: episode 1 is the return
before any adaptation, the last one after the trial's adaptation (the same stage names as the
gradient methods' inner steps).

``reward_input=False`` shows 0 in place of the previous reward: the control that cannot tell
the tasks apart from what it experiences where the tasks differ only in their rewards.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from tesp.envs.base import Task, TaskEnv


class TrialEnv(gym.Env):
    def __init__(self, task_env: TaskEnv, episodes_per_trial: int = 2, reward_input: bool = True) -> None:
        if episodes_per_trial < 1:
            raise ValueError(f"episodes_per_trial must be >= 1, got {episodes_per_trial}")
        self.task_env = task_env
        self.episodes_per_trial = int(episodes_per_trial)
        self.reward_input = bool(reward_input)
        inner, actions = task_env.observation_space, task_env.action_space
        if not isinstance(inner, gym.spaces.Box) or not isinstance(actions, gym.spaces.Box):
            raise ValueError("RL²'s trials need Box observation and action spaces")
        self.obs_dim, self.action_dim = inner.shape[0], actions.shape[0]
        size = self.obs_dim + self.action_dim + 2
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)
        self.action_space = actions
        self.metadata = task_env.metadata
        self._fixed: Task | None = None
        self._returns: list[float] = []
        self._successes: list[bool] = []
        self._reports_success = False  # whether the task env's info has "success" at all

    # -- tasks ------------------------------------------------------------------------------
    def set_task(self, task: Task | None) -> None:
        """Fix the task of the following trials (None: draw one per trial again)."""
        self._fixed = task

    def _next_task(self) -> Task:
        if self._fixed is not None:
            return self._fixed
        return self.task_env.sample_tasks(1)[0]

    # -- the trial --------------------------------------------------------------------------
    def _input(self, obs: np.ndarray, action: np.ndarray, reward: float, first: bool) -> np.ndarray:
        return np.concatenate(
            [
                np.asarray(obs, np.float32),
                np.asarray(action, np.float32),
                [np.float32(reward if self.reward_input else 0.0), np.float32(first)],
            ]
        )

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.task_env.np_random = np.random.default_rng(int(self.np_random.integers(2**31)))
        self.task_env.set_task(self._next_task())
        obs, info = self.task_env.reset(seed=None if seed is None else int(self.np_random.integers(2**31)))
        self._returns, self._successes = [0.0], [False]
        return self._input(obs, np.zeros(self.action_dim), 0.0, True), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.task_env.step(action)
        self._returns[-1] += float(reward)
        self._successes[-1] |= bool(info.get("success", False))
        self._reports_success |= "success" in info
        first = False
        if terminated or truncated:
            if len(self._returns) == self.episodes_per_trial:
                # the trial is over: its return is complete (a terminal state, not a cut)
                out = {"episode_returns": list(self._returns)}
                if self._reports_success:
                    out["success"] = list(self._successes)
                return self._input(obs, action, reward, False), float(reward), True, False, out
            obs, _ = self.task_env.reset()
            self._returns.append(0.0)
            self._successes.append(False)
            first = True
        return self._input(obs, action, reward, first), float(reward), False, False, {}

    def render(self):
        return self.task_env.render()

    def close(self) -> None:
        self.task_env.close()
