"""MLSH's bandit tasks (Frans et al. 2017): two goals, one of them secretly rewarding.

:class:`MovementBanditsEnv` follows the rules of the authors' release (docs/mlsh_reference.md):

- Observation (6): the agent's xy and both goals' xy, divided by 400.
- Action: Discrete(5): stay, +20 x, -20 x, +20 y, -20 y.
- Start: (200, 200); two goals drawn uniformly in [0, 400]^2 at every reset (openai/mlsh's
  ``MovementBandits._reset``). The task is which of the two is correct (not observed), so a
  policy has to learn "go to the first/second goal" for goals anywhere.
- Reward: 1 for every step that ends within distance 50 of the correct goal, else 0.
- 50 steps per episode, no early termination.

Reference levels per episode: always to the correct goal ~43.8, always to the same goal ~23.0,
uniformly random ~2.4.

:class:`AntBanditsEnv`: the half-size ant of the TESP suite (``assets/ant.xml``) with a target at
(5, 0) or (0, 5) (the task, not observed); reward ``-|torso xy - target| / target_scale`` minus
the control cost; 1000 steps; ends early when the ant is unhealthy (``terminate_when_unhealthy``,
on here as before; with this negative reward that pays, see :class:`tesp.envs.goal_mujoco.AntEnv`).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from tesp.envs.base import Task, TaskEnv
from tesp.envs.goal_mujoco import AntEnv

MOVES = np.array([[0, 0], [20, 0], [-20, 0], [0, 20], [0, -20]], dtype=np.float64)


class MovementBanditsEnv(TaskEnv):
    metadata = {"render_modes": []}

    def __init__(self, horizon: int = 50, size: float = 400.0, radius: float = 50.0) -> None:
        if horizon < 1 or size <= 0 or radius <= 0:
            raise ValueError(f"horizon, size and radius must be positive, got {horizon}, {size}, {radius}")
        self.horizon, self.size, self.radius = int(horizon), float(size), float(radius)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(6,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(MOVES))
        self._goals = np.full((2, 2), self.size / 2)
        self._correct = 0
        self._pos = np.full(2, self.size / 2)
        self._t = 0

    def draw_tasks(self, n: int) -> list[Task]:
        return [{"correct": int(c)} for c in self.np_random.integers(0, 2, size=n)]

    def set_task(self, task: Task) -> None:
        if task.get("correct") not in (0, 1):
            raise ValueError(f"a movement_bandits task is {{'correct': 0 or 1}}, got {task!r}")
        self._correct = int(task["correct"])

    def get_task(self) -> Task:
        return {"correct": self._correct}

    @property
    def goals(self) -> np.ndarray:
        """The current episode's two goals, ``[2, 2]``."""
        return self._goals.copy()

    def positions(self, obs: np.ndarray) -> np.ndarray:
        return obs[..., :2] * self.size

    def goal_marks(self, task: Task, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The episode's two goals, read from its first observation: the correct one pays."""
        goals = obs[0, 2:6].reshape(2, 2) * self.size
        correct = int(task["correct"])
        return goals[[correct]], goals[[1 - correct]]

    def _obs(self) -> np.ndarray:
        return (np.concatenate([self._pos, self._goals.reshape(-1)]) / self.size).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._pos = np.full(2, self.size / 2)
        self._goals = self.np_random.uniform(0.0, self.size, size=(2, 2))
        self._t = 0
        return self._obs(), {}

    def step(self, action):
        self._pos = self._pos + MOVES[int(action)]
        self._t += 1
        dx, dy = self._pos - self._goals[self._correct]
        near = dx * dx + dy * dy < self.radius * self.radius
        return self._obs(), float(near), False, self._t >= self.horizon, {}


class AntBanditsEnv(AntEnv):
    """The ant walking to one of two targets, (5, 0) or (0, 5); see the module docstring."""

    TARGETS = np.array([[5.0, 0.0], [0.0, 5.0]])
    done_distance = 0.0  # only unhealthy states end an episode early

    def __init__(
        self,
        ctrl_cost_coeff: float = 1e-3,
        horizon: int = 1000,
        target_scale: float = 5.0,
        terminate_when_unhealthy: bool = True,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(
            terminate_when_unhealthy=terminate_when_unhealthy,
            ctrl_cost_coeff=ctrl_cost_coeff,
            horizon=horizon,
            render_mode=render_mode,
        )
        self.target_scale = float(target_scale)

    def task_pools(self) -> dict[str, list[Task]]:
        return {}

    def draw_tasks(self, n: int) -> list[Task]:
        return [{"goal": self.TARGETS[i].copy()} for i in self.np_random.integers(0, 2, size=n)]

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, info["dist_reward"] / self.target_scale - info["ctrl_cost"], terminated, truncated, info
