"""What every tesp algorithm shares: tasks drawn on the driver, sampled on EnvRunners.

- :class:`TaskAlgorithmConfig`: the RLlib settings the multi-task sampler relies on (complete
  episodes, raw actions, lean connector pipelines), ``training(**kwargs)`` for the subclass's
  own fields, and one-line validation errors;
- :class:`TaskAlgorithm`: the driver's task env (whose rng draws the tasks and is checkpointed),
  the :class:`~tesp.meta.sampler.MultiTaskSampler`, and ``on_learner`` to call the (single,
  local) learner.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any, Self

import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.utils.annotations import override
from ray.util import log_once

from tesp.envs import make_env
from tesp.meta.env_runner import TaskEnvRunner
from tesp.meta.finite import NonFiniteError
from tesp.meta.sampler import MultiTaskSampler


class TaskAlgorithmConfig(AlgorithmConfig):
    def __init__(self, algo_class: type, env_to_module, module_to_env) -> None:
        super().__init__(algo_class=algo_class)
        self.episodes_per_task = 20  # complete episodes per task per sampling round
        self.gamma = 0.99
        self.gae_lambda = 0.97
        self.num_env_runners = 0
        self.num_envs_per_env_runner = 20
        self.num_cpus_per_env_runner = 0.5
        self.env_runner_cls = TaskEnvRunner  # samples whole episodes of one task per job
        # Seeded by default, so that a run repeats exactly; `--seed S` picks another stream.
        self.seed = 0
        self.batch_mode = "complete_episodes"
        self.normalize_actions = False  # envs clip their own actions; log-probs use raw actions
        self.clip_actions = False
        self._env_to_module_connector = env_to_module
        self._module_to_env_connector = module_to_env
        self.add_default_connectors_to_env_to_module_pipeline = False
        self.add_default_connectors_to_module_to_env_pipeline = False

    @override(AlgorithmConfig)
    def training(self, **kwargs: Any) -> Self:
        """RLlib's training settings, plus any setting this config class defines itself."""
        rllib = inspect.signature(AlgorithmConfig.training).parameters
        own = {k: kwargs.pop(k) for k in list(kwargs) if k not in rllib and hasattr(self, k)}
        super().training(**kwargs)
        for name, value in own.items():
            if value is not NotProvided:
                setattr(self, name, value)
        return self

    @override(AlgorithmConfig)
    def validate(self) -> None:
        # tesp only runs on the new API stack; silence RLlib's once-per-class notice about it.
        log_once(f"{self.algo_class.__name__}_on_new_api_stack")
        self.check(
            [
                (self.episodes_per_task >= 1, "episodes_per_task", "an integer >= 1"),
                (0 <= self.gamma <= 1, "gamma", "a number in [0, 1]"),
                (0 <= self.gae_lambda <= 1, "gae_lambda", "a number in [0, 1]"),
                (self.num_env_runners >= 0, "num_env_runners", "an integer >= 0"),
                (self.num_envs_per_env_runner >= 1, "num_envs_per_env_runner", "an integer >= 1"),
                (self.num_cpus_per_env_runner > 0, "num_cpus_per_env_runner", "a number > 0"),
                (self.seed is None or self.seed >= 0, "seed", "an integer >= 0"),
            ]
        )
        super().validate()

    def check(self, checks: Iterable[tuple[bool, str, str]]) -> None:
        """``(ok, name, valid)`` triples: the first failing one raises a one-line error."""
        for ok, name, valid in checks:
            if not ok:
                self._value_error(f"{name}={getattr(self, name)!r} is invalid: must be {valid}")


class TaskAlgorithm(Algorithm):
    @override(Algorithm)
    def setup(self, config: AlgorithmConfig) -> None:
        super().setup(config)
        cfg = self.config
        # The driver's own env instance draws the tasks; its rng is part of the checkpoint.
        self.task_env = make_env(cfg.env, cfg.env_config)
        self.task_env.reset(seed=cfg.seed)
        self.sampler = MultiTaskSampler(
            self.env_runner_group,
            num_episodes=cfg.episodes_per_task,
            gamma=cfg.gamma,
            lam=cfg.gae_lambda,
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

    def on_learner(self, fn):
        """Run ``fn(learner)`` on the (single) learner and return its result."""
        return next(iter(self.learner_group.foreach_learner(fn))).get()

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
