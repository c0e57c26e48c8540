"""The task API every tesp environment implements.

A *task* is a small dict of plain values (e.g. ``{"goal": array([x, y])}``) that fully
specifies one member of an env's task family. The meta-learning loop draws tasks on the
driver with :meth:`TaskEnv.sample_tasks` and sends them to the EnvRunners, which switch
their sub-envs with :meth:`TaskEnv.set_task`. A task stays set across resets.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

Task = dict[str, Any]


class TaskEnv(gym.Env):
    """A gymnasium env with a family of tasks; subclasses implement the three methods."""

    def sample_tasks(self, n: int) -> list[Task]:
        """Draw ``n`` tasks from the training distribution using ``self.np_random``."""
        raise NotImplementedError

    def set_task(self, task: Task) -> None:
        """Switch to ``task``; it takes effect from the next ``reset``."""
        raise NotImplementedError

    def get_task(self) -> Task:
        """Return the current task."""
        raise NotImplementedError
