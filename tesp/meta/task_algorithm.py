"""What every tesp algorithm shares: tasks drawn on the driver, sampled on EnvRunners.

- :class:`TaskAlgorithmConfig`: the RLlib settings the multi-task sampler relies on (complete
  episodes, raw actions, lean connector pipelines), the sampling settings every method has, and
  one-line validation errors;
- :class:`TaskAlgorithm`: the driver's task env (whose rng draws the tasks and is checkpointed),
  the :class:`~tesp.meta.sampler.MultiTaskSampler`, and ``on_learner`` to call the (single,
  local) learner.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import NoReturn

import numpy as np
import ray
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.utils.annotations import override
from ray.util import log_once

from tesp.checkpoints.resume import CompleteCheckpoints
from tesp.envs import make_env
from tesp.meta.env_runner import TaskEnvRunner
from tesp.meta.finite import NonFiniteError
from tesp.meta.rollout import Staged
from tesp.meta.sampler import MultiTaskSampler
from tesp.meta.setting import DeclaredSettings, Setting, at_least, between


class TaskAlgorithmConfig(DeclaredSettings, AlgorithmConfig):
    """Settings every tesp method shares; a subclass declares its own in ``SETTINGS``
    (:mod:`tesp.meta.setting`), which become its attributes, ``training()`` keywords, range
    checks and documentation."""

    shards_tasks = False  # True: the method's update runs over several Learners, tasks sharded
    SETTINGS = (
        Setting(
            "episodes_per_task", 20,
            "complete episodes sampled per task in each sampling round, one per sub-env (more "
            "episodes than sub-envs run in several rounds).",
            "an integer >= 1", at_least(1),
        ),
        Setting(
            "gae_lambda", 0.97, "GAE's lambda (Schulman et al. 2016) for the advantages of every batch.",
            "a number in [0, 1]", between(0, 1),
        ),
        Setting(
            "learner_num_threads", 0,
            "torch threads of the trial's process, where the (local) learner works while the "
            "EnvRunners wait for it. 0: inside a Tune trial, every CPU the trial reserves (its main "
            "process and its EnvRunners), at most the node's; elsewhere torch's own setting.",
            "an integer >= 0 (0: auto)", at_least(0),
        ),
    )  # fmt: skip

    def __init__(self, algo_class: type, env_to_module, module_to_env) -> None:
        super().__init__(algo_class=algo_class)
        self.set_declared_defaults()
        self.gamma = 0.99
        self.num_env_runners = 0
        self.num_envs_per_env_runner = 20
        self.num_cpus_per_env_runner = 0.5
        self.env_runner_cls = TaskEnvRunner  # samples whole episodes of one task per job
        # A runner holds the job it samples and the next one (tesp.meta.sampler).
        self.max_requests_in_flight_per_env_runner = 2
        # Seeded by default, so that a run repeats exactly; `--seed S` picks another stream.
        self.seed = 0
        self.batch_mode = "complete_episodes"
        self.normalize_actions = False  # envs clip their own actions; log-probs use raw actions
        self.clip_actions = False
        self.env_runners(
            env_to_module_connector=env_to_module,
            module_to_env_connector=module_to_env,
            add_default_connectors_to_env_to_module_pipeline=False,
            add_default_connectors_to_module_to_env_pipeline=False,
        )

    @override(AlgorithmConfig)
    def validate(self) -> None:
        # tesp only runs on the new API stack; silence RLlib's once-per-class notice about it.
        log_once(f"{self.algo_class.__name__}_on_new_api_stack")
        self.check(
            [
                *self.declared_checks(),
                (0 <= self.gamma <= 1, "gamma", "a number in [0, 1]"),
                (self.num_env_runners >= 0, "num_env_runners", "an integer >= 0"),
                (self.num_envs_per_env_runner >= 1, "num_envs_per_env_runner", "an integer >= 1"),
                (self.num_cpus_per_env_runner > 0, "num_cpus_per_env_runner", "a number > 0"),
                (self.seed is None or self.seed >= 0, "seed", "an integer >= 0"),
                (
                    self.num_learners <= 1 or self.shards_tasks,
                    "num_learners",
                    f"0 or 1 ({self.algo_class.__name__}'s update runs on one Learner)",
                ),
            ]
        )
        super().validate()

    def learner_threads(self) -> int | None:
        """The torch threads for the trial's process (None: leave torch's setting alone)."""
        if self.learner_num_threads:
            return self.learner_num_threads
        if not ray.is_initialized() or ray.get_runtime_context().worker.mode != ray.WORKER_MODE:
            return None  # not a Ray actor: a script's or test's own process
        # Ray gives an actor OMP_NUM_THREADS = its CPUs; the synchronous loop leaves the
        # EnvRunners' CPUs idle while the learner works.
        reserved = self.num_cpus_for_main_process + self.num_env_runners * self.num_cpus_per_env_runner
        return max(1, min(int(reserved), os.cpu_count() or 1))

    def check(self, checks: Iterable[tuple[bool, str, str]]) -> None:
        """``(ok, name, valid)`` triples: the first failing one raises a one-line error."""
        for ok, name, valid in checks:
            if not ok:
                self.invalid(f"{name}={getattr(self, name)!r} is invalid: must be {valid}")

    @staticmethod
    def invalid(message: str) -> NoReturn:
        """A bad setting: one line naming the value and what is allowed."""
        raise ValueError(message)


class TaskAlgorithm(CompleteCheckpoints, Algorithm):
    @override(Algorithm)
    def setup(self, config: AlgorithmConfig) -> None:
        super().setup(config)
        cfg = self.config
        threads = cfg.learner_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        # The driver's own env instance draws the tasks; its rng is part of the checkpoint.
        self.task_env = make_env(cfg.env, cfg.env_config)
        self.task_env.reset(seed=cfg.seed)
        self.sampler = MultiTaskSampler(
            self.env_runner_group,
            num_episodes=cfg.episodes_per_task,
            gamma=cfg.gamma,
            lam=cfg.gae_lambda,
            calls_per_runner=cfg.max_requests_in_flight_per_env_runner,
            # Its own stream (the tasks come from task_env's), derived from the same seed.
            seed=None if cfg.seed is None else [cfg.seed, 1],
        )

    @override(Algorithm)
    def step(self) -> dict:
        try:
            return super().step()
        except NonFiniteError as e:
            # Raised before the bad value was applied; Tune ends the trial without another
            # checkpoint, so the last one on disk holds the last good state.
            raise NonFiniteError(f"iteration {self.iteration + 1}: {e}") from None

    def evaluate_adaptation(
        self,
        tasks: list,
        chunk: int | None = None,
        progress=None,
        num_inner_steps: int | None = None,
    ) -> list:
        """The method's ``adapt_on_tasks`` over ``tasks``, ``chunk`` (default its
        ``adaptation_chunk``) at a time, with ``num_inner_steps`` adaptation steps (default its
        own: inner steps, MLSH's warm-up), as ``main_test.py`` evaluates every method;
        ``progress(n)`` after each chunk."""
        chunk = chunk or self.adaptation_chunk
        out = []
        for start in range(0, len(tasks), chunk):
            out.append(self.adapt_on_tasks(tasks[start : start + chunk], num_inner_steps))
            if progress is not None:
                progress(len(tasks[start : start + chunk]))
        return out

    def on_learner(self, fn):
        """Run ``fn(learner)`` on the (first) learner and return its result."""
        return next(iter(self.learner_group.foreach_learner(fn))).get()

    @property
    def num_learner_shards(self) -> int:
        return max(1, len(self.learner_group))  # 0 remote Learners: the local one

    def task_shards(self, n: int) -> list[slice]:
        """The contiguous slices of ``n`` tasks the Learners hold, in rank order."""
        bounds = np.linspace(0, n, self.num_learner_shards + 1).round().astype(int)
        return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def on_learner_shards(self, fn, n: int, *per_task: list | Staged | None) -> list:
        """``fn(learner, *shard)`` on every Learner, where ``shard`` holds that Learner's slice
        (:meth:`task_shards`) of each per-task list in ``per_task`` (None stays None; a
        :class:`Staged` list ``[stage][task]`` is sliced stage by stage); the results in rank
        order. With one Learner, ``fn(learner, *per_task)``."""
        shards = self.task_shards(n)
        if len(shards) == 1:
            return [self.on_learner(lambda learner: fn(learner, *per_task))]
        # Each Learner fetches only its own shard from the object store.
        refs = [ray.put([_shard(x, s) for x in per_task]) for s in shards]

        def call(learner):
            from tesp.meta.outer import world_rank

            rank = world_rank()
            return rank, fn(learner, *ray.get(refs[rank]))

        results = [r.get() for r in self.learner_group.foreach_learner(call)]
        return [out for _, out in sorted(results, key=lambda x: x[0])]

    @override(Algorithm)
    def get_state(self, *args, **kwargs) -> dict:
        state = super().get_state(*args, **kwargs)
        state["task_rng"] = self.task_env.np_random.bit_generator.state
        state["sampler"] = self.sampler.get_state()
        # The (local) learner's own draws, e.g. MLSH's minibatch order and fresh masters.
        state["torch_rng"] = torch.get_rng_state()
        return state

    @override(Algorithm)
    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if "task_rng" in state:
            self.task_env.np_random.bit_generator.state = state["task_rng"]
        if "sampler" in state:
            self.sampler.set_state(state["sampler"])
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])


def _shard(x: list | Staged | None, tasks: slice) -> list | Staged | None:
    if x is None:
        return None
    if isinstance(x, Staged):
        return Staged(stage[tasks] for stage in x)
    return x[tasks]
