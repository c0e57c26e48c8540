"""Swing-up pendulum with a family of masses and lengths: MIME's dense and sparse pendulum tasks.

The classic torque-limited pendulum (the dynamics of gymnasium's ``Pendulum-v1``: angle 0 is
upright, g = 10, ``thdot += (3 g / (2 l) sin th + 3 u / (m l^2)) dt``, then ``th += thdot dt``),
started hanging down, with the pole's mass and length as the task.

- observation ``(cos th, sin th, thdot)``; action: a torque, clipped to ``[-2, 2]``;
  ``|thdot|`` clipped to 20; dt 0.1; 50 steps; no termination;
- start: ``th ~ U[3, 3.28]`` (about pi: hanging), ``thdot ~ U[-0.01, 0.01]``;
- reward (``pendulum_dense``): minus the distance between the pole's tip and the upright tip,
  ``-sqrt(2 l^2 (1 - cos th))`` (0 upright); ``pendulum_sparse``: 1 while that distance is
  below ``5e-4 l`` (``|th|`` below ~5e-4 rad: a random policy almost never gets there), else 0;
  ``info["success"]`` is set on those steps in both;
- tasks: training draws (with replacement) from masses {0.5, 0.7} x lengths {0.4, 0.5, 0.7};
  the test pool ``"test"`` is masses {0.6, 0.8} x lengths {0.6, 0.8}. MIME's reference
  implementation (mazpie/mime, where these facts come from) never draws (0.7, 0.7) for
  training, an off-by-one in its sampling; here every one of the 6 pairs is drawn.
"""

from __future__ import annotations

from itertools import product
from typing import Any

import gymnasium as gym
import numpy as np

from tesp.envs.base import Task, TaskEnv

GRAVITY, DT, MAX_TORQUE, MAX_SPEED = 10.0, 0.1, 2.0, 20.0
TRAIN_TASKS = [{"mass": m, "length": n} for m, n in product((0.5, 0.7), (0.4, 0.5, 0.7))]
TEST_TASKS = [{"mass": m, "length": n} for m, n in product((0.6, 0.8), (0.6, 0.8))]


class PendulumEnv(TaskEnv):
    metadata = {"render_modes": []}

    def __init__(self, sparse: bool = False, horizon: int = 50, success_fraction: float = 5e-4) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.sparse = bool(sparse)
        self.horizon = int(horizon)
        self.success_fraction = float(success_fraction)
        high = np.array([1.0, 1.0, MAX_SPEED], np.float32)
        self.observation_space = gym.spaces.Box(-high, high, dtype=np.float32)
        self.action_space = gym.spaces.Box(-MAX_TORQUE, MAX_TORQUE, shape=(1,), dtype=np.float32)
        self.mass, self.length = TRAIN_TASKS[0]["mass"], TRAIN_TASKS[0]["length"]
        self._th = self._thdot = 0.0
        self._t = 0

    def draw_tasks(self, n: int) -> list[Task]:
        return [dict(TRAIN_TASKS[i]) for i in self.np_random.integers(0, len(TRAIN_TASKS), size=n)]

    def task_pools(self) -> dict[str, list[Task]]:
        return {"test": [dict(t) for t in TEST_TASKS]}

    def set_task(self, task: Task) -> None:
        self.mass, self.length = float(task["mass"]), float(task["length"])

    def get_task(self) -> Task:
        return {"mass": self.mass, "length": self.length}

    def tip_distance(self, th: float) -> float:
        """Distance between the pole's tip at angle ``th`` and the upright tip."""
        return float(np.sqrt(max(2.0 * self.length**2 * (1.0 - np.cos(th)), 0.0)))

    def _observe(self) -> np.ndarray:
        return np.array([np.cos(self._th), np.sin(self._th), self._thdot], np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._th = float(self.np_random.uniform(3.0, 3.28))
        self._thdot = float(self.np_random.uniform(-0.01, 0.01))
        self._t = 0
        return self._observe(), {}

    def step(self, action):
        u = float(np.clip(np.asarray(action, np.float64).reshape(-1)[0], -MAX_TORQUE, MAX_TORQUE))
        m, length = self.mass, self.length
        accel = 3 * GRAVITY / (2 * length) * np.sin(self._th) + 3.0 / (m * length**2) * u
        self._thdot = float(np.clip(self._thdot + accel * DT, -MAX_SPEED, MAX_SPEED))
        self._th = self._th + self._thdot * DT
        self._t += 1
        distance = self.tip_distance(self._th)
        success = distance < self.success_fraction * length
        reward = float(success) if self.sparse else -distance
        return self._observe(), reward, False, self._t >= self.horizon, {"success": success}


class SparsePendulumEnv(PendulumEnv):
    """``pendulum_sparse``: reward 1 only while the pole is within ``success_fraction`` of upright."""

    def __init__(self, sparse: bool = True, horizon: int = 50, success_fraction: float = 5e-4) -> None:
        super().__init__(sparse, horizon, success_fraction)
