"""The locomotion task families the meta-RL literature reports on (Finn et al. 2017, §5.3; the
ProMP, E-MAML and PEARL papers; tristandeleu/pytorch-maml-rl ships them): HalfCheetah with a
target velocity or a direction, Ant with a direction.

Each runs Gymnasium's own MuJoCo env (``HalfCheetah-v5``, ``Ant-v5``: their models, physics,
reset noise and observations) and replaces its reward with the task's. Sources of the numbers
(reward terms and weights, task distributions, episode length): pytorch-maml-rl's envs and
configs (``halfcheetah-vel.yaml``, ``halfcheetah-dir.yaml``, ``ant-dir.yaml``), read for their
facts. Differences from those envs, stated: Gymnasium's v5 models and observations (the
cheetah's 17 entries without its x position; the ant's 105 with the contact forces, where the
mujoco-py-era model gave 111), no observation scaling (pytorch-maml-rl multiplies by 10 for its
policy), and episodes of ``horizon`` steps (default 100 as in pytorch-maml-rl's configs; Finn
et al. used 200).

- ``half_cheetah_vel``: target velocity v* ~ U[0, 2]; reward ``-|v_x - v*| - 0.05 |a|^2``.
- ``half_cheetah_dir``: direction d in {-1, +1}, each with p = 0.5; reward ``d v_x - 0.05 |a|^2``.
- ``ant_dir``: direction d in {-1, +1} along x (``two_d``: a unit vector at an angle
  U[0, 2 pi), ProMP's ``AntRandDir2DEnv``); reward ``d . v_xy - 0.005 |a|^2 - 0.0005
  |clip(cfrc_ext, -1, 1)|^2 + 0.05``; the episode ends when the torso leaves z in [0.2, 1.0]
  (Gymnasium's healthy range, the same as pytorch-maml-rl's).

Training draws fresh tasks from the distribution every iteration (the published protocol);
``pool_size > 0`` adds a fixed training pool D of that size instead (MAESN needs one). The
test pools, drawn from ``numpy.random.default_rng(pool_seed)``: D' (``test_pool_size`` tasks of
the training distribution) and, where the family has a natural outside, D'' (velocities in
[2, 3]); the direction families' D' is their directions (two in 1-D). Test-time observation
noise as in the other envs (``obs_noise_std``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tesp.envs.base import Task, TaskEnv


class LocomotionTaskEnv(TaskEnv):
    """A Gymnasium MuJoCo locomotion env whose reward is the task's (subclasses: the model,
    :meth:`task_reward`, :meth:`draw_tasks`, :meth:`test_pools`)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    ROOT_POSITIONS_SKIPPED = 1  # leading qpos entries the observation leaves out (the root's x)

    def __init__(
        self,
        horizon: int = 100,
        pool_size: int = 0,
        test_pool_size: int = 40,
        pool_seed: int = 1,
        obs_noise_std: float = 0.0,
        render_mode: str | None = None,
    ) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if pool_size < 0 or test_pool_size < 1:
            raise ValueError(
                f"pool_size must be >= 0 and test_pool_size >= 1, got {pool_size}, {test_pool_size}"
            )
        self.init_noise(obs_noise_std)
        self.horizon = int(horizon)
        self.render_mode = render_mode
        self.env = self.make_gym_env(render_mode)
        self.observation_space = self.env.observation_space
        self.action_space = self.env.action_space
        self.metadata = dict(self.metadata, render_fps=self.env.metadata.get("render_fps", 20))
        rng = np.random.default_rng(int(pool_seed))
        self._pools = self.test_pools(rng, int(test_pool_size))
        if pool_size:
            self._pools = {
                "D": [t | {"index": i} for i, t in enumerate(self.draws(rng, int(pool_size)))]
            } | self._pools
        self._task: Task = self.draws(np.random.default_rng(0), 1)[0]
        self._t = 0

    # -- what a family defines ----------------------------------------------------------
    def make_gym_env(self, render_mode: str | None):
        raise NotImplementedError

    def draws(self, rng: np.random.Generator, n: int) -> list[Task]:
        """``n`` tasks of the training distribution drawn with ``rng``."""
        raise NotImplementedError

    def test_pools(self, rng: np.random.Generator, n: int) -> dict[str, list[Task]]:
        return {"D'": self.draws(rng, n)}

    def task_reward(self, info: dict[str, Any], action: np.ndarray) -> float:
        raise NotImplementedError

    # -- the task API ---------------------------------------------------------------------
    def draw_tasks(self, n: int) -> list[Task]:
        return self.draws(self.np_random, n)

    def task_pools(self) -> dict[str, list[Task]]:
        return self._pools

    def set_task(self, task: Task) -> None:
        self._task = {k: v for k, v in task.items() if k not in ("index", "obs_noise_std")}
        self.set_task_noise(task)

    def get_task(self) -> Task:
        return dict(self._task, obs_noise_std=self.obs_noise_std)

    def goal_marks(self, task: Task, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((0, 2)), np.zeros((0, 2))  # no goal position to draw

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        # The inner env's reset noise comes from this env's stream (seeded by the sampler).
        obs, info = self.env.reset(seed=int(self.np_random.integers(2**31)))
        self._t = 0
        return self.noisy(obs), info

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        obs, _, terminated, _, info = self.env.step(action)
        self._t += 1
        reward = self.task_reward(info, action)
        truncated = self._t >= self.horizon and not terminated
        return self.noisy(obs), float(reward), bool(terminated), bool(truncated), info

    def start_from(self, obs: np.ndarray) -> None:
        """The observation is the state without the root's horizontal position (the dynamics and
        the rewards do not depend on it; Gymnasium's v5 observations): set the rest."""
        model, skipped = self.env.model, self.ROOT_POSITIONS_SKIPPED
        nq = model.nq - skipped
        qpos = np.concatenate([np.zeros(skipped), obs[:nq]])
        self.env.set_state(qpos, np.asarray(obs[nq : nq + model.nv], dtype=np.float64))

    # -- rendering: the inner env's renderer and the body the camera follows ---------------
    tracked = 1  # the torso

    @property
    def data(self):
        return self.env.data

    @property
    def model(self):
        return self.env.model

    @property
    def frame_skip(self) -> int:
        return self.env.frame_skip

    @property
    def ctrl_max(self) -> np.ndarray:
        """The actuators' upper control bounds (the policy's actions are sent to them as they are)."""
        return self.env.model.actuator_ctrlrange[:, 1].copy()

    @property
    def mujoco_renderer(self):
        return self.env.mujoco_renderer

    def render(self):
        return self.env.render()

    def close(self) -> None:
        self.env.close()


class HalfCheetahVelEnv(LocomotionTaskEnv):
    CTRL_COST = 0.05

    def make_gym_env(self, render_mode):
        from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

        return HalfCheetahEnv(render_mode=render_mode)

    def draws(self, rng, n):
        return [{"velocity": float(v)} for v in rng.uniform(0.0, 2.0, size=n)]

    def test_pools(self, rng, n):
        return {
            "D'": self.draws(rng, n),
            "D''": [{"velocity": float(v)} for v in rng.uniform(2.0, 3.0, size=n)],
        }

    def task_reward(self, info, action):
        return -abs(info["x_velocity"] - self._task["velocity"]) - self.CTRL_COST * float(action @ action)


class HalfCheetahDirEnv(LocomotionTaskEnv):
    CTRL_COST = 0.05

    def make_gym_env(self, render_mode):
        from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

        return HalfCheetahEnv(render_mode=render_mode)

    def draws(self, rng, n):
        return [{"direction": float(d)} for d in rng.choice([-1.0, 1.0], size=n)]

    def test_pools(self, rng, n):
        return {"D'": [{"direction": -1.0}, {"direction": 1.0}]}

    def task_reward(self, info, action):
        return self._task["direction"] * info["x_velocity"] - self.CTRL_COST * float(action @ action)


class AntDirEnv(LocomotionTaskEnv):
    """``two_d``: directions are unit vectors at an angle U[0, 2 pi) (ProMP's 2-D variant)."""

    CTRL_COST, CONTACT_COST, SURVIVE = 0.005, 0.0005, 0.05
    ROOT_POSITIONS_SKIPPED = 2  # the torso's x and y

    def __init__(self, two_d: bool = False, **options: Any) -> None:
        self.two_d = bool(two_d)
        super().__init__(**options)

    def make_gym_env(self, render_mode):
        from gymnasium.envs.mujoco.ant_v5 import AntEnv

        # Gymnasium's contact cost: CONTACT_COST |clip(cfrc_ext, -1, 1)|^2 (its contact_force_range)
        return AntEnv(render_mode=render_mode, contact_cost_weight=self.CONTACT_COST)

    def draws(self, rng, n):
        if self.two_d:
            angles = rng.uniform(0.0, 2 * np.pi, size=n)
            return [{"direction": [float(np.cos(a)), float(np.sin(a))]} for a in angles]
        return [{"direction": [float(d), 0.0]} for d in rng.choice([-1.0, 1.0], size=n)]

    def test_pools(self, rng, n):
        if self.two_d:
            return {"D'": self.draws(rng, n)}
        return {"D'": [{"direction": [-1.0, 0.0]}, {"direction": [1.0, 0.0]}]}

    def task_reward(self, info, action):
        d = self._task["direction"]
        forward = d[0] * info["x_velocity"] + d[1] * info["y_velocity"]
        contact = -info["reward_contact"]  # Gymnasium's, with the weight above
        return forward - self.CTRL_COST * float(action @ action) - contact + self.SURVIVE
