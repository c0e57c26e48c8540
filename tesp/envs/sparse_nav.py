"""Sparse-reward 2D navigation: the goal rings and the dog-feeding house of MIME's task families.

MIME (MAML with VIME exploration and a meta-learned mixing weight; Houthooft et al. 2016 for
VIME, Finn et al. 2017 for MAML) is evaluated on navigation tasks where a policy that does not
explore never sees a reward. Both envs here share the point mass of the MAML paper's 2D
navigation (:mod:`tesp.envs.point`): it starts at a fixed point, the action is a velocity
clipped elementwise to ``[-0.1, 0.1]``, and there is no termination, only truncation at the
horizon.

**Goal rings** (:class:`SparseRingNavEnv`; registered as ``nav_wide_ring``,
``nav_hard_exploration`` and ``nav_close_ring``):

- observation: the position ``(x, y)``; start at the origin;
- reward: +1 for every step that ends within ``goal_radius`` (1) of the goal, else 0;
  ``info["success"]`` is set on those steps;
- training tasks: fresh goals ``g = N(0, I) * ring_high``, redrawn until
  ``ring_low < |g| < ring_high`` (an angle uniform, a radius with the truncated Rayleigh density
  of the Gaussian's norm);
- the fixed test pool ``"test"``: the 8 compass and diagonal directions at each of the
  ``test_radii``.

| name | ring | horizon | test goals |
|---|---|---|---|
| ``nav_wide_ring`` | 5 - 9 | 100 | 16: radii 5.5 and 8.5 |
| ``nav_hard_exploration`` | 8 - 9 | 100 | 8 at radius 8.5 |
| ``nav_close_ring`` | 5 - 5.5 | 300 | 8 at radius 5.25 |

A goal at radius 8 is at least ~50 diagonal steps away (0.1 sqrt 2 per step), so most of a
100-step episode is spent getting there.

**Dog feeding** (:class:`DogFeedingEnv`, ``nav_dog_feeding``): a robot in a 10 x 10 house of
rooms must find the dog it is asked to feed.

- observation ``(x, y, bumped)``: ``bumped`` is 1 after a step the walls blocked (the robot then
  stays where it was), else 0; start at (1.3, 2.0);
- reward: +1 for every step that ends within 0.5 of the dog; 1000 steps per episode;
- tasks: the three dogs at (2.0, 9.0), (5.3, 4.0) and (8.5, 1.3) are the training pool ``"D"``
  (so a meta-batch holds at most 3 tasks), the first and the last the test pool ``"test"``.
- the house (:data:`HOUSE_WALLS`) is this project's own floor plan: the robot starts in a
  room on the left, each dog is in a different room, and every room is reached only through
  doorways 1 unit wide. A move is blocked when the new position is within ``clearance``
  (0.1) of a wall.

Task family facts (goal rings, sizes, horizons, test goals, the dogs, the start and the
radii) as used by MIME's reference implementation (mazpie/mime, read for its facts).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from tesp.envs.base import Task, TaskEnv

COMPASS = np.array([[np.cos(a), np.sin(a)] for a in np.arange(8) * np.pi / 4])  # E, NE, N, ...


class _PointMass(TaskEnv):
    """A point that moves by its clipped action, rewarded 1 per step near the goal."""

    metadata = {"render_modes": []}

    def __init__(
        self, horizon: int, goal_radius: float, start: tuple[float, float], action_bound: float = 0.1
    ):
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if goal_radius <= 0:
            raise ValueError(f"goal_radius must be > 0, got {goal_radius}")
        self.horizon = int(horizon)
        self.goal_radius = float(goal_radius)
        self.action_bound = float(action_bound)
        self.start = np.asarray(start, np.float64)
        self.action_space = gym.spaces.Box(
            -self.action_bound, self.action_bound, shape=(2,), dtype=np.float32
        )
        self._goal = np.zeros(2)
        self._pos = self.start.copy()
        self._t = 0

    def positions(self, obs: np.ndarray) -> np.ndarray:
        return obs[..., :2]

    def set_task(self, task: Task) -> None:
        self._goal = np.asarray(task["goal"], np.float64).copy()

    def get_task(self) -> Task:
        return {"goal": self._goal.copy()}

    def _observe(self) -> np.ndarray:
        return self._pos.astype(np.float32)

    def _move(self, target: np.ndarray) -> None:
        self._pos = target

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._pos = self.start.copy()
        self._t = 0
        return self._observe(), {}

    def reward(self, distance: float) -> float:
        """The reward of a step that ends ``distance`` from the goal."""
        return float(distance < self.goal_radius)

    def step(self, action):
        action = np.clip(np.asarray(action, np.float64), -self.action_bound, self.action_bound)
        self._move(self._pos + action)
        self._t += 1
        distance = float(np.linalg.norm(self._pos - self._goal))
        info = self.step_info(distance)
        return self._observe(), self.reward(distance), False, self._t >= self.horizon, info

    def step_info(self, distance: float) -> dict[str, Any]:
        return {"success": distance < self.goal_radius}


class SparseRingNavEnv(_PointMass):
    def __init__(
        self,
        ring_low: float = 5.0,
        ring_high: float = 9.0,
        test_radii: tuple[float, ...] = (5.5, 8.5),
        horizon: int = 100,
        goal_radius: float = 1.0,
    ) -> None:
        if not 0 <= ring_low < ring_high:
            raise ValueError(f"need 0 <= ring_low < ring_high, got {ring_low} and {ring_high}")
        super().__init__(horizon, goal_radius, start=(0.0, 0.0))
        self.ring_low, self.ring_high = float(ring_low), float(ring_high)
        self.test_radii = tuple(float(r) for r in test_radii)
        reach = self.horizon * self.action_bound
        self.observation_space = gym.spaces.Box(-reach, reach, shape=(2,), dtype=np.float32)

    def draw_tasks(self, n: int) -> list[Task]:
        goals: list[np.ndarray] = []
        while len(goals) < n:
            g = self.np_random.standard_normal(2) * self.ring_high
            if self.ring_low < np.linalg.norm(g) < self.ring_high:
                goals.append(g)
        return [{"goal": g} for g in goals]

    def task_pools(self) -> dict[str, list[Task]]:
        return {"test": [{"goal": r * d} for r in self.test_radii for d in COMPASS]}


class WideRingNavEnv(SparseRingNavEnv):
    """``nav_wide_ring``: goals 5 - 9 from the start, 100 steps (the defaults)."""


class HardExplorationNavEnv(SparseRingNavEnv):
    """``nav_hard_exploration``: goals 8 - 9 from the start, 100 steps."""

    def __init__(self, ring_low=8.0, ring_high=9.0, test_radii=(8.5,), horizon=100, goal_radius=1.0) -> None:
        super().__init__(ring_low, ring_high, test_radii, horizon, goal_radius)


class CloseRingNavEnv(SparseRingNavEnv):
    """``nav_close_ring``: goals 5 - 5.5 from the start, 300 steps."""

    def __init__(self, ring_low=5.0, ring_high=5.5, test_radii=(5.25,), horizon=300, goal_radius=1.0) -> None:
        super().__init__(ring_low, ring_high, test_radii, horizon, goal_radius)


class SparsePointRobotEnv(_PointMass):
    """``point_robot_sparse``: PEARL's sparse 2-D navigation (Rakelly et al. 2019, §6.3).

    - Observation: the position ``(x, y)``; start at the origin; action a velocity clipped to
      ``[-0.1, 0.1]`` per axis; ``horizon`` 20 steps; no termination.
    - Reward: ``1 - d`` for a step that ends within ``goal_radius`` (0.2) of the goal, ``d`` its
      distance to it, else 0 (minus the distance, zeroed outside the radius and shifted by +1
      inside, as the authors' release makes it positive); ``info["success"]`` on those steps, and
      ``info["dense_reward"]``, minus the distance, on every step (the release meta-trains its
      actor-critic on that one, ``--set dense_critic_reward=true`` for PEARL).
    - Tasks: ``n_tasks`` (100) goals evenly spaced on the upper half of the unit circle, shuffled
      by ``task_seed``; the first ``n_train`` (80) are pool ``"D"`` (the training tasks; fresh
      training tasks are drawn from it), the other 20 pool ``"D'"``; ``"D''"`` holds 20 goals
      on the lower half of the circle, which no training task comes near.

    A goal is 10 steps from the start, so an episode leaves 10 steps to search the half circle
    before the reward comes; a policy that does not carry what it saw into the next episode
    finds it only by chance. Facts (goal layout, counts, radius, reward shift, horizon) as the
    paper's appendix and the authors' release use them.
    """

    def __init__(
        self,
        n_tasks: int = 100,
        n_train: int = 80,
        horizon: int = 20,
        goal_radius: float = 0.2,
        task_seed: int = 1337,
    ) -> None:
        if not 0 < n_train < n_tasks:
            raise ValueError(f"need 0 < n_train < n_tasks, got n_train={n_train} and n_tasks={n_tasks}")
        super().__init__(horizon, goal_radius, start=(0.0, 0.0))
        reach = self.horizon * self.action_bound
        self.observation_space = gym.spaces.Box(-reach, reach, shape=(2,), dtype=np.float32)
        angles = np.linspace(0.0, np.pi, n_tasks)
        np.random.default_rng(task_seed).shuffle(angles)
        below = np.linspace(np.pi, 2 * np.pi, n_tasks - n_train + 2)[1:-1]
        self._pools = {
            "D": [{"goal": _on_circle(a), "index": i} for i, a in enumerate(angles[:n_train])],
            "D'": [{"goal": _on_circle(a)} for a in angles[n_train:]],
            "D''": [{"goal": _on_circle(a)} for a in below],
        }

    def reward(self, distance: float) -> float:
        return 1.0 - distance if distance < self.goal_radius else 0.0

    def step_info(self, distance: float) -> dict[str, Any]:
        return super().step_info(distance) | {"dense_reward": -distance}

    def draw_tasks(self, n: int) -> list[Task]:
        train = self._pools["D"]
        return [train[i] for i in self.np_random.integers(len(train), size=n)]

    def task_pools(self) -> dict[str, list[Task]]:
        return self._pools


def _on_circle(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])


# The house: walls as rectangles (x0, y0, x1, y1) in a 10 x 10 world, 0.2 thick, doorways 1 wide.
#   room A (start, lower left) [0, 3.5] x [0, 5]     room B (middle) [3.5, 7] x [0, 5]
#   room C (upper left)        [0, 5] x [5, 10]      room D (upper right) [5, 10] x [5, 10]
#   room E (lower right)       [7, 10] x [0, 5]
# Doors: A-B at x 3.5, y 0.5-1.5; A-C at y 5, x 0.5-1.5; B-D at y 5, x 5.5-6.5;
#        C-D at x 5, y 8-9; D-E at y 5, x 8.5-9.5. Dogs: C (2, 9), B (5.3, 4), E (8.5, 1.3).
# So the upper-left and the middle dog are one doorway from the start's room, the lower-right
# dog three (A-B-D-E, through the upper right room).
HOUSE_WALLS = np.array(
    [
        (-0.2, -0.2, 10.2, 0.0),
        (-0.2, 10.0, 10.2, 10.2),
        (-0.2, 0.0, 0.0, 10.0),
        (10.0, 0.0, 10.2, 10.0),
        (3.4, 0.0, 3.6, 0.5),
        (3.4, 1.5, 3.6, 5.0),  # A | B
        (6.9, 0.0, 7.1, 5.0),  # B | E
        (0.0, 4.9, 0.5, 5.1),
        (1.5, 4.9, 5.5, 5.1),
        (6.5, 4.9, 8.5, 5.1),
        (9.5, 4.9, 10.0, 5.1),  # y = 5
        (4.9, 5.0, 5.1, 8.0),
        (4.9, 9.0, 5.1, 10.0),  # C | D
    ]  # fmt: skip
)
DOGS = np.array([(2.0, 9.0), (5.3, 4.0), (8.5, 1.3)])


class DogFeedingEnv(_PointMass):
    def __init__(self, horizon: int = 1000, goal_radius: float = 0.5, clearance: float = 0.1) -> None:
        super().__init__(horizon, goal_radius, start=(1.3, 2.0))
        if clearance < 0:
            raise ValueError(f"clearance must be >= 0, got {clearance}")
        self.clearance = float(clearance)
        self.observation_space = gym.spaces.Box(
            np.array([0, 0, 0], np.float32), np.array([10, 10, 1], np.float32), dtype=np.float32
        )
        self._bumped = 0.0

    def task_pools(self) -> dict[str, list[Task]]:
        return {
            "D": [{"goal": g, "index": i} for i, g in enumerate(DOGS)],
            "test": [{"goal": DOGS[0]}, {"goal": DOGS[2]}],
        }

    def walls(self) -> np.ndarray:
        return HOUSE_WALLS

    def blocked(self, xy: np.ndarray) -> bool:
        """Whether ``xy`` is within ``clearance`` of a wall (or outside the house)."""
        c = self.clearance
        w = HOUSE_WALLS
        inside = (
            (w[:, 0] - c <= xy[0]) & (xy[0] <= w[:, 2] + c) & (w[:, 1] - c <= xy[1]) & (xy[1] <= w[:, 3] + c)
        )
        return bool(inside.any())

    def _move(self, target: np.ndarray) -> None:
        self._bumped = float(self.blocked(target))
        if not self._bumped:
            self._pos = target

    def _observe(self) -> np.ndarray:
        return np.array([*self._pos, self._bumped], np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._bumped = 0.0
        return super().reset(seed=seed, options=options)
