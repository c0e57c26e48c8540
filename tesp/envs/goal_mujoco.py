"""The TESP task suite (docs/original_release.md#environments): reach a 2D goal with a wheeled car, an ant or a planar arm.

Common to all four envs (docs/original_release.md#environments):

- MuJoCo through gymnasium's ``MujocoEnv`` (official ``mujoco`` bindings), timestep 0.01 and
  frame skip 5 (0.05 s per step); the models in ``assets/`` are written from the spec.
- Action: ``a`` in R^|A|; the env clips it to [-1, 1] and scales it to the actuators' range
  (velocity servos, ``kv = 1``): ``ctrl = clip(a, -1, 1) * ctrl_max``.
- Reward: ``-|p - g| - ctrl_cost_coeff * 0.5 * |clip(a, -1, 1)|^2`` with ``p`` the agent's
  (locomotion) or fingertip's (reacher) xy and ``g`` the goal; the goal is not observed.
- Termination: ``|p - g| < done_distance`` (and, for the ant, a non-finite state, and with
  ``terminate_when_unhealthy`` a torso out of its height range, as the original had it);
  truncation after ``horizon`` (200) steps. Reset is deterministic (the model's initial state).
- Tasks: the goal. The pools D, D', D'' (docs/original_release.md#task-pools, :func:`tesp.envs.pools.goal_pools`) are
  drawn once from ``pool_seed``; training tasks come from D.
- Test-time noise (docs/original_release.md#evaluation): with ``obs_noise_std`` = sigma > 0 (an env option, or a task's
  ``"obs_noise_std"``, which the evaluation sets for D' and D'' only), every returned
  observation gets N(0, sigma^2) noise; rewards and termination use the true state.
- ``info``: ``goal``, ``dist_reward`` (= ``-|p - g|``) and ``ctrl_cost``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

from tesp.envs.base import StepBatch, Task, TaskEnv
from tesp.envs.pools import goal_pools

ASSETS = Path(__file__).resolve().parent / "assets"


@functools.lru_cache(maxsize=16)
def _pools(seed: int, size: int, threshold: float) -> dict[str, list[Task]]:
    pools = goal_pools(seed=seed, size=size, threshold=threshold).as_dict()
    return {
        name: [{"goal": g, "index": i} if name == "D" else {"goal": g} for i, g in enumerate(goals)]
        for name, goals in pools.items()
    }


class GoalMujocoEnv(MujocoEnv, TaskEnv):
    """Base class: subclasses set the model file, the observation and the tracked point."""

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 20}
    model_file: str
    tracked_body: str  # the body whose frame origin is the agent's / fingertip's position p
    obs_dim: int
    done_distance: float
    pool_threshold = 0.1  # minimum goal spacing in the pools (docs/original_release.md#task-pools)

    def __init__(
        self,
        ctrl_cost_coeff: float = 1e-3,
        horizon: int = 200,
        obs_noise_std: float = 0.0,
        pool_size: int = 100,
        pool_seed: int = 1,
        render_mode: str | None = None,
    ) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if ctrl_cost_coeff < 0:
            raise ValueError(f"ctrl_cost_coeff must be >= 0, got {ctrl_cost_coeff}")
        self.init_noise(obs_noise_std)
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        obs_space = spaces.Box(-np.inf, np.inf, shape=(self.obs_dim,), dtype=np.float64)
        MujocoEnv.__init__(
            self,
            str(ASSETS / self.model_file),
            frame_skip=5,
            observation_space=obs_space,
            render_mode=render_mode,
        )
        with contextlib.suppress(KeyError):  # a model's own start pose (the ant's), else its qpos0
            self.init_qpos = self.model.numeric("init_qpos").data.copy()
        self.ctrl_max = self.model.actuator_ctrlrange[:, 1].copy()
        self.ctrl_cost_coeff = float(ctrl_cost_coeff)
        self.horizon = int(horizon)
        self._pools = _pools(int(pool_seed), int(pool_size), self.pool_threshold)
        self._goal = np.zeros(2)
        self._t = 0
        self.tracked = self.model.body(self.tracked_body).id  # the body whose xy is p

    def _set_action_space(self) -> spaces.Box:
        # The policy acts in [-1, 1]^|A|; step() scales to the actuators' ranges (docs/original_release.md#environments).
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self.model.nu,), dtype=np.float32)
        return self.action_space

    def _step_mujoco_simulation(self, ctrl, n_frames) -> None:
        # gymnasium's version also runs mj_rnePostConstraint (contact forces for its envs'
        # cfrc_ext observations); these envs do not read them (benchmarks/env_throughput.py).
        self.data.ctrl[:] = ctrl
        mujoco.mj_step(self.model, self.data, nstep=n_frames)

    # -- tasks -------------------------------------------------------------------------
    def task_pools(self) -> dict[str, list[Task]]:
        return self._pools

    def set_task(self, task: Task) -> None:
        """Switch goal (and, if the task says so, the observation noise); takes effect at once."""
        self._goal = np.asarray(task["goal"], dtype=np.float64).copy()
        self.set_task_noise(task)

    def get_task(self) -> Task:
        return {"goal": self._goal.copy(), "obs_noise_std": self.obs_noise_std}

    # -- dynamics ----------------------------------------------------------------------
    def position(self) -> np.ndarray:
        """The tracked xy point (agent or fingertip): the origin of ``tracked_body``'s frame."""
        return self.data.xpos[self.tracked, :2].copy()

    def true_obs(self) -> np.ndarray:
        raise NotImplementedError

    def unhealthy(self) -> bool:
        """Whether the agent's state ends the episode (besides reaching the goal)."""
        return False

    def _observe(self) -> np.ndarray:
        return self.noisy(self.true_obs())

    def reset_model(self) -> np.ndarray:
        self.set_state(self.init_qpos, self.init_qvel)
        self._t = 0
        return self._observe()

    @staticmethod
    def step_batch(envs: Sequence[GoalMujocoEnv], actions: np.ndarray) -> StepBatch:
        """:meth:`step` for several envs at once: the same numbers, with the clipping, control
        cost, distances and flags computed as arrays and no ``info`` dicts (the sampler's path;
        about half of ``step``'s time on the cheap models was Python around ``mj_step``)."""
        a = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
        ctrl = a * envs[0].ctrl_max
        positions = np.empty((len(envs), 2))
        for i, env in enumerate(envs):
            env.data.ctrl[:] = ctrl[i]
            mujoco.mj_step(env.model, env.data, nstep=env.frame_skip)
            env._t += 1
            positions[i] = env.data.xpos[env.tracked, :2]
        goals = np.stack([env._goal for env in envs])
        delta = positions - goals
        dist = np.sqrt(np.einsum("ij,ij->i", delta, delta))
        ctrl_cost = envs[0].ctrl_cost_coeff * 0.5 * np.einsum("ij,ij->i", a, a)
        done = np.array([env.done_distance for env in envs])
        unhealthy = np.array([env.unhealthy() for env in envs])
        terminated = (dist < done) | unhealthy
        truncated = np.array([env._t >= env.horizon for env in envs]) & ~terminated
        return StepBatch([env._observe() for env in envs], -dist - ctrl_cost, terminated, truncated)

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self.do_simulation(a * self.ctrl_max, self.frame_skip)
        self._t += 1
        dist = float(np.linalg.norm(self.position() - self._goal))
        ctrl_cost = self.ctrl_cost_coeff * 0.5 * float(a @ a)
        terminated = dist < self.done_distance or self.unhealthy()
        truncated = self._t >= self.horizon and not terminated
        info = {"goal": self._goal.copy(), "dist_reward": -dist, "ctrl_cost": ctrl_cost}
        return self._observe(), -dist - ctrl_cost, terminated, truncated, info


class WheeledEnv(GoalMujocoEnv):
    """Wheeled robot (docs/original_release.md#environments): a differential-drive car driving to a goal on the floor.

    - Observation (9): ``[x, y, z, sin(yaw), cos(yaw), dx, dy, dz, dyaw]`` (no wheel state).
    - Action (2): the two wheels' target velocities, scaled to +-50 rad/s.
    - Reward: ``-|(x, y) - g| - c/2 |a|^2``; done within 0.02 of the goal.
    - Tasks: goals in D, D' (0.2 < |g| < 1.1) and D'' (1.1 < |g| < 1.5); the car starts at the origin.
    """

    model_file, tracked_body, obs_dim, done_distance = "wheeled.xml", "chassis", 9, 0.02

    def true_obs(self) -> np.ndarray:
        q, v = self.data.qpos, self.data.qvel
        return np.array([q[0], q[1], q[2], np.sin(q[3]), np.cos(q[3]), v[0], v[1], v[2], v[3]])


class AntEnv(GoalMujocoEnv):
    """Ant (docs/original_release.md#environments): a half-size quadruped walking to a goal.

    - Observation (29): the full ``qpos`` (torso xyz, quaternion, 8 joint angles) and ``qvel`` (14).
    - Action (8): joint target velocities (hip4, ankle4, hip1, ankle1, hip2, ankle2, hip3,
      ankle3), scaled to +-50.
    - Reward: ``-|torso xy - g| - c/2 |a|^2``; done within 0.03 of the goal, or when the
      state is not finite.
    - ``terminate_when_unhealthy`` (default False): also end the episode when the torso height
      leaves [0.15, 0.45], as the original did. With a reward that is negative at every step and
      no bonus for staying alive, that rule pays for ending the episode: TESP on the laptop
      scale learnt to do so within ~10-20 steps (every episode, before and after adaptation;
      docs/supplement_first_scale.md), scoring above the paper's numbers without walking anywhere. Without
      it a fallen ant keeps paying its distance until the horizon.
    - Tasks: as for the wheeled robot; the ant starts at the origin.
    """

    model_file, tracked_body, obs_dim, done_distance = "ant.xml", "torso", 29, 0.03
    healthy_z = (0.15, 0.45)

    def __init__(self, terminate_when_unhealthy: bool = False, **kwargs) -> None:
        self.terminate_when_unhealthy = bool(terminate_when_unhealthy)
        super().__init__(**kwargs)

    def true_obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel])

    def unhealthy(self) -> bool:
        if not (np.isfinite(self.data.qpos).all() and np.isfinite(self.data.qvel).all()):
            return True
        lo, hi = self.healthy_z
        return self.terminate_when_unhealthy and not lo <= self.data.qpos[2] <= hi


class Reacher2LinkEnv(GoalMujocoEnv):
    """2-link reacher (docs/original_release.md#environments): a planar arm (reach 1.7) moving its fingertip to a goal.

    - Observation (8): ``[cos q (2), sin q (2), dq (2), fingertip xy (2)]``.
    - Action (2): joint target velocities, scaled to +-100.
    - Reward: ``-|tip xy - g| - c/2 |a|^2``; done within 0.06 of the goal.
    - Tasks: goals as for the wheeled robot; the tip starts at (1.7, 0).
    """

    model_file, tracked_body, obs_dim, done_distance = "reacher_2_link.xml", "fingertip", 8, 0.06

    def true_obs(self) -> np.ndarray:
        q = self.data.qpos
        return np.concatenate([np.cos(q), np.sin(q), self.data.qvel, self.position()])


class Reacher4LinkEnv(Reacher2LinkEnv):
    """4-link reacher (docs/original_release.md#environments): a planar arm (reach 2.0) moving its fingertip to a goal.

    - Observation (14): ``[cos q (4), sin q (4), dq (4), fingertip xy (2)]``.
    - Action (4): joint target velocities, scaled to +-50.
    - Reward: ``-|tip xy - g| - c/2 |a|^2``; done within 0.11 of the goal.
    - Tasks: goals as for the wheeled robot, spaced at least 0.11 apart; the tip starts at (2.0, 0).
    """

    model_file, obs_dim, done_distance = "reacher_4_link.xml", 14, 0.11
    pool_threshold = 0.11
