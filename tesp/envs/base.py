"""The task API every tesp environment implements.

A *task* is a small dict of plain values (e.g. ``{"goal": array([x, y])}``) that fully
specifies one member of an env's task family. The meta-learning loop draws tasks on the
driver with :meth:`TaskEnv.sample_tasks` and sends them to the EnvRunners, which switch
their sub-envs with :meth:`TaskEnv.set_task`. A task stays set across resets.

An env may have fixed task pools (:meth:`TaskEnv.task_pools`): the training pool D and the
test pools D' (same distribution, unseen) and D'' (out of distribution), docs/original_release.md#task-pools. Then
training tasks are drawn from D without replacement, and carry their position in D as
``"index"`` (MAESN keeps a latent distribution per training task). Without pools, every
draw is a fresh task from the training distribution (the MAML paper's setting).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

Task = dict[str, Any]


#: What an env may report in an episode's last ``info`` as its success measures (the walker
#: course's obstacles passed, a goal reached): logged per episode, printed, tested.
EPISODE_METRICS = ("obstacles_passed", "success")


class StepBatch(NamedTuple):
    """One step of several envs: observations, rewards, terminated and truncated flags, and
    for envs whose ``info`` reports it (gymnasium's and Meta-World's convention), whether each
    step reached the task's goal."""

    obs: list[np.ndarray]
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    success: np.ndarray | None = None


POOLS = ("D", "D'", "D''")


class TaskEnv(gym.Env):
    """A gymnasium env with a family of tasks.

    Subclasses implement :meth:`set_task`, :meth:`get_task`, and :meth:`draw_tasks` or
    :meth:`task_pools` (or both).
    """

    def draw_tasks(self, n: int) -> list[Task]:
        """``n`` fresh tasks from the training distribution, drawn with ``self.np_random``."""
        raise NotImplementedError(f"{type(self).__name__} has no continuous task distribution")

    def task_pools(self) -> dict[str, list[Task]]:
        """The fixed pools, e.g. ``{"D": [...], "D'": [...], "D''": [...]}`` (:data:`POOLS`) or only a
        ``"test"`` pool of fixed test tasks; empty when there are none. Training draws from ``"D"``
        where there is one, else from :meth:`draw_tasks`."""
        return {}

    def positions(self, obs: np.ndarray) -> np.ndarray | None:
        """The agent's xy ``[..., 2]`` in observations ``[..., obs_dim]``, for trajectory plots;
        None where the observation does not hold it."""
        return None

    def walls(self) -> np.ndarray:
        """Rectangles ``[n, 4]`` (x0, y0, x1, y1) the agent cannot enter, for trajectory plots."""
        return np.zeros((0, 4))

    def goal_marks(self, task: Task, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The goals to mark in a trajectory plot of one episode of ``task`` (observations
        ``obs`` ``[T, obs_dim]``): those that pay ``[n, 2]`` and those that do not ``[m, 2]``.
        By default the task's ``"goal"``."""
        return np.asarray(task["goal"], np.float64)[None, :2], np.zeros((0, 2))

    def start_from(self, obs: np.ndarray) -> None:
        """After ``reset``: put the env in the state an episode started from, given that
        episode's first observation (so that ``main_render.py`` can replay its actions). For
        envs whose reset is random but whose observation holds the state; others start the same
        way at every reset and need nothing."""

    # -- test-time observation noise (docs/original_release.md#evaluation), for envs that support it --------------------
    def init_noise(self, obs_noise_std: float) -> None:
        """The env's default noise level; a task's ``"obs_noise_std"`` overrides it while set."""
        if obs_noise_std < 0:
            raise ValueError(f"obs_noise_std must be >= 0, got {obs_noise_std}")
        self.default_noise_std = self.obs_noise_std = float(obs_noise_std)

    def set_task_noise(self, task: Task) -> None:
        self.obs_noise_std = float(task.get("obs_noise_std", self.default_noise_std))

    def noisy(self, obs: np.ndarray) -> np.ndarray:
        """``obs`` plus N(0, sigma^2) per entry when the current noise level sigma is > 0."""
        if self.obs_noise_std <= 0:
            return obs
        return obs + self.np_random.normal(0.0, self.obs_noise_std, size=obs.shape).astype(obs.dtype)

    def sample_tasks(self, n: int) -> list[Task]:
        """``n`` training tasks: distinct members of D (with their ``"index"``) if the env has
        pools, else fresh draws; both use ``self.np_random``."""
        train = self.task_pools().get("D")
        if not train:
            return self.draw_tasks(n)
        if n > len(train):
            raise ValueError(f"cannot draw {n} distinct tasks from a training pool of {len(train)}")
        picks = self.np_random.choice(len(train), size=n, replace=False)
        return [train[i] for i in picks]

    @staticmethod
    def step_batch(envs: Sequence[TaskEnv], actions: np.ndarray) -> StepBatch:
        """Step each of ``envs`` (instances of one class) with its row of ``actions``.

        Returns the new observations and the rewards, terminated and truncated flags as
        arrays, as ``env.step`` would, without the ``info`` dicts except their ``"success"``
        (recorded with the episodes: a task is solved when any step of any of its episodes
        succeeded). The sampler calls this once per step for all of a round's live episodes, so
        an env class can replace the per-env Python of ``step`` with array code; this default
        just calls ``step``."""
        out = [env.step(a) for env, a in zip(envs, actions, strict=True)]
        success = None
        if "success" in out[0][4]:
            success = np.array([bool(o[4]["success"]) for o in out], dtype=bool)
        return StepBatch(
            [o[0] for o in out],
            np.array([o[1] for o in out], dtype=np.float64),
            np.array([o[2] for o in out], dtype=bool),
            np.array([o[3] for o in out], dtype=bool),
            success,
        )

    def set_task(self, task: Task) -> None:
        """Switch to ``task``; it takes effect from the next ``reset``."""
        raise NotImplementedError

    def get_task(self) -> Task:
        """Return the current task."""
        raise NotImplementedError
