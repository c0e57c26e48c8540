"""Meta-World's ML10 (Yu et al. 2019, "Meta-World: A Benchmark and Evaluation for Multi-Task and
Meta Reinforcement Learning", CoRL) through the ``metaworld`` package (Farama, v3 envs).

A Sawyer arm on 10 manipulation task classes for training (reach, push, pick-place, door-open,
drawer-close, button-press-topdown, peg-insert-side, window-open, sweep, basketball) and 5 for
testing (drawer-open, door-close, shelf-place, sweep-into, lever-pull), 50 goal positions per
class, the goal hidden from the observation. Success is Meta-World's ``info["success"]``; a task
is solved when any step of any episode succeeds (the sampler records it, see
:meth:`~tesp.envs.base.TaskEnv.step_batch`).

- observation: the package's 39 numbers (hand, gripper, two objects' poses, the previous
  frame's, the hidden goal: its last 6 entries are 0 on every ML10 class); action: 4 numbers in
  ``[-1, 1]``;
- tasks ``{"env_name", "split", "goal_index"}``: the benchmark's tasks, built once per process
  from ``benchmark_seed``; the training pool ``"D"`` holds the 500 training tasks, ``"test"``
  the 250 test tasks;
- episodes are truncated after ``horizon`` steps (Meta-World's own limit: 500; MIME's reference
  used 150 with the older v1 envs, whose numbers are not comparable with these).

The package pins ``mujoco==3.3.0``; returns differ between MuJoCo versions, so a Meta-World
number goes with the MuJoCo version it was measured on.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from tesp.envs.base import Task, TaskEnv

MAX_PATH_LENGTH = 500


@lru_cache(maxsize=2)
def benchmark(seed: int):
    """The ML10 benchmark of ``seed`` (its tasks take ~15 s to build; once per process)."""
    try:
        import metaworld
    except ImportError as e:  # pragma: no cover - the package is in requirements.txt
        raise ValueError("env 'ml10' needs the metaworld package (pip install metaworld==3.1.1)") from e
    return metaworld.ML10(seed=seed)


class ML10Env(TaskEnv):
    metadata = {"render_modes": []}

    def __init__(self, horizon: int = MAX_PATH_LENGTH, benchmark_seed: int = 0) -> None:
        if not 1 <= horizon <= MAX_PATH_LENGTH:
            raise ValueError(f"horizon must be in 1..{MAX_PATH_LENGTH}, got {horizon}")
        self.horizon = int(horizon)
        self.benchmark_seed = int(benchmark_seed)
        self._bench = benchmark(self.benchmark_seed)
        self._classes = {"train": self._bench.train_classes, "test": self._bench.test_classes}
        self._tasks = {"train": self._bench.train_tasks, "test": self._bench.test_tasks}
        self._envs: dict[str, Any] = {}
        self._task: Task = {}
        self.set_task(self._pool("train")[0])
        self.observation_space = self._env.observation_space
        self.action_space = self._env.action_space
        self._t = 0

    def _pool(self, split: str) -> list[Task]:
        tasks, seen, out = self._tasks[split], {}, []
        for t in tasks:
            i = seen[t.env_name] = seen.get(t.env_name, -1) + 1
            out.append({"env_name": t.env_name, "split": split, "goal_index": i})
        return out

    def task_pools(self) -> dict[str, list[Task]]:
        train = [t | {"index": i} for i, t in enumerate(self._pool("train"))]
        return {"D": train, "test": self._pool("test")}

    def set_task(self, task: Task) -> None:
        name, split, goal = task["env_name"], task["split"], int(task["goal_index"])
        if name not in self._envs:
            self._envs[name] = self._classes[split][name]()
        matches = [t for t in self._tasks[split] if t.env_name == name]
        self._env = self._envs[name]
        self._env.set_task(matches[goal])
        self._task = {"env_name": name, "split": split, "goal_index": goal}

    def get_task(self) -> Task:
        return dict(self._task)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._t = 0
        obs, info = self._env.reset(seed=seed)
        return np.asarray(obs, np.float64), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self._env.step(np.asarray(action, np.float32))
        self._t += 1
        truncated = bool(truncated or self._t >= self.horizon)
        return (
            np.asarray(obs, np.float64),
            float(reward),
            bool(terminated),
            truncated,
            {"success": bool(info["success"])},
        )
