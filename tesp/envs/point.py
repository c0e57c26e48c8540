"""2D point navigation, the MAML paper's 2D-navigation benchmark (Finn et al. 2017, §5.3).

The agent is a point in the plane, starting at the origin each episode.

- Observation: the position ``(x, y)``, shape (2,), float32.
- Action: a velocity ``(dx, dy)``; the env clips it elementwise to
  ``[-action_bound, action_bound]`` (default 0.1) before moving. The raw action is what the
  policy sampled and what its log-probability is computed on.
- Reward: minus the L2 distance to the goal after the move.
- Termination: within ``goal_tolerance`` (default 0.01) of the goal on both axes.
- Truncation: after ``horizon`` steps (default 100).
- Task: the goal, hidden from the agent, drawn uniformly from ``[goal_low, goal_high]^2``
  (default ``[-0.5, 0.5]^2``).
- Pools (``pool_size > 0``; default none, so every iteration draws fresh goals as in the MAML
  paper): D and D' hold ``pool_size`` goals each from the training square, D'' as many from
  the twice-as-large square outside it, all drawn from ``numpy.random.default_rng(pool_seed)``.
- Test-time noise: with ``obs_noise_std`` = sigma > 0 (an option, or a task's
  ``"obs_noise_std"``), observations get N(0, sigma^2) noise; rewards use the true position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from tesp.envs.base import StepBatch, Task, TaskEnv


class PointNavEnv(TaskEnv):
    metadata = {"render_modes": []}

    def __init__(
        self,
        goal_low: float = -0.5,
        goal_high: float = 0.5,
        horizon: int = 100,
        action_bound: float = 0.1,
        goal_tolerance: float = 0.01,
        pool_size: int = 0,
        pool_seed: int = 1,
        obs_noise_std: float = 0.0,
    ) -> None:
        if not goal_low < goal_high:
            raise ValueError(f"goal_low ({goal_low}) must be below goal_high ({goal_high})")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.init_noise(obs_noise_std)
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size}")
        self.goal_low, self.goal_high = float(goal_low), float(goal_high)
        self.horizon = int(horizon)
        self.action_bound = float(action_bound)
        self.goal_tolerance = float(goal_tolerance)
        self._pools = self._make_pools(int(pool_size), int(pool_seed)) if pool_size else {}
        reach = self.horizon * self.action_bound  # the farthest the point can get from the origin
        self.observation_space = gym.spaces.Box(-reach, reach, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(
            -self.action_bound, self.action_bound, shape=(2,), dtype=np.float32
        )
        self._goal = np.zeros(2)
        self._pos = np.zeros(2)
        self._t = 0

    def draw_tasks(self, n: int) -> list[Task]:
        goals = self.np_random.uniform(self.goal_low, self.goal_high, size=(n, 2))
        return [{"goal": g} for g in goals]

    def task_pools(self) -> dict[str, list[Task]]:
        return self._pools

    def _make_pools(self, size: int, seed: int) -> dict[str, list[Task]]:
        rng = np.random.default_rng(seed)
        low, high = self.goal_low, self.goal_high
        train, test = (rng.uniform(low, high, size=(size, 2)) for _ in range(2))
        ood = []
        while len(ood) < size:  # the larger square minus the training square
            g = rng.uniform(2 * low, 2 * high, size=2)
            if not np.all((low <= g) & (g <= high)):
                ood.append(g)
        return {
            "D": [{"goal": g, "index": i} for i, g in enumerate(train)],
            "D'": [{"goal": g} for g in test],
            "D''": [{"goal": g} for g in ood],
        }

    def positions(self, obs: np.ndarray) -> np.ndarray:
        return obs[..., :2]  # the observation is the position

    def set_task(self, task: Task) -> None:
        """Takes effect at once; the sampler resets every sub-env after switching tasks."""
        self._goal = np.asarray(task["goal"], dtype=np.float64).copy()
        self.set_task_noise(task)

    def get_task(self) -> Task:
        return {"goal": self._goal.copy(), "obs_noise_std": self.obs_noise_std}

    def _observe(self) -> np.ndarray:
        return self.noisy(self._pos.astype(np.float32))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._pos = np.zeros(2)
        self._t = 0
        return self._observe(), {}

    def step(self, action):
        out = self.step_batch([self], np.asarray(action)[None])
        return out.obs[0], float(out.rewards[0]), bool(out.terminated[0]), bool(out.truncated[0]), {}

    @staticmethod
    def step_batch(envs: Sequence[PointNavEnv], actions: np.ndarray) -> StepBatch:
        """:meth:`step` for several envs at once, as arrays (``step`` is this with one env): the
        sampler's path, where the per-env Python of a cheap env is most of a step's cost."""
        bound = np.array([env.action_bound for env in envs])[:, None]
        a = np.clip(np.asarray(actions, dtype=np.float64), -bound, bound)
        pos = np.array([env._pos for env in envs]) + a
        delta = pos - np.array([env._goal for env in envs])
        rewards = -np.sqrt(delta[:, 0] * delta[:, 0] + delta[:, 1] * delta[:, 1])
        tolerance = np.array([env.goal_tolerance for env in envs])[:, None]
        terminated = np.all(np.abs(delta) < tolerance, axis=1)
        obs = list(pos.astype(np.float32))  # what _observe gives, before the noise
        for i, env in enumerate(envs):
            env._pos = pos[i]
            env._t += 1
            if env.obs_noise_std > 0:
                obs[i] = env.noisy(obs[i])
        truncated = np.array([env._t >= env.horizon for env in envs]) & ~terminated
        return StepBatch(obs, rewards, terminated, truncated)
