"""MAML for RL (Finn et al. 2017, Algorithm 3) on RLlib's new API stack: the meta-RL engine.

One ``training_step`` is one meta-iteration:

1. draw ``meta_batch_size`` tasks from the env's training distribution (driver-side rng);
2. for stage k = 0..K: sample ``episodes_per_task`` episodes per task on the EnvRunners, each
   task with its own current weights (stage 0: the meta-parameters), then take one inner VPG
   step per task on the learner (stages < K);
3. meta-update on the learner from every task's stage batches (the last one is the
   post-adaptation batch), by PPO-clip Adam steps or one TRPO step.

Meta-SGD, AdaptSV and TESP reuse this loop through their config and learner hooks.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Self

import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME
from ray.util import log_once

from tesp.envs import make_env
from tesp.meta.episode_buffer import EpisodeBuffer
from tesp.meta.learner import MetaLearner
from tesp.meta.sampler import MultiTaskSampler, SampleJob, SampleResult
from tesp.models import connectors
from tesp.models.gaussian_mlp import LATENT_KINDS, PARAM_GROUPS, GaussianMLPModule

logger = logging.getLogger(__name__)

OUTER_OPTIMIZERS = ("ppo", "trpo")
META = "meta"  # metric namespace


class MAMLConfig(AlgorithmConfig):
    """Settings of the meta-RL loop; every field below has a default and a one-line meaning."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or MAML)
        # Tasks and sampling.
        self.meta_batch_size = 20  # T: tasks per meta-iteration
        self.episodes_per_task = 20  # complete episodes per task per sampling round
        # Inner loop.
        self.num_inner_steps = 1  # K
        self.inner_lr = 0.1  # MAML's fixed step size; Meta-SGD's initial per-parameter step size
        self.adapted_params = ["policy"]  # parameter groups the inner loop adapts: policy, latent
        self.learn_step_sizes = False  # Meta-SGD: learn one step size per adapted parameter element
        self.step_size_bound = 0.1  # learned step sizes are clamped to [-bound, bound] (spec §1.2)
        self.inner_grad_clip = 60.0  # global-norm clip of each inner gradient; <= 0 disables
        self.second_order = True  # differentiate through the inner gradients (False: first order)
        self.normalize_advantages = False  # standardise advantages per batch in inner and outer losses
        self.embedding_reg_coeff = 0.0  # eta: outer-loss regulariser eta * mean_j z_j^2 on the task embedding
        self.latent_prior_coeff = 1.0  # MAESN: weight of KL(N(mu_i, sigma_i^2) || N(0, I)) in the outer loss
        self.buffer_size = 16  # TESP: M, episodes kept per task for the task encoder (spec §1.4)
        self.gae_lambda = 0.97
        self.gamma = 0.99
        # Outer loop.
        self.outer_optimizer = "ppo"  # "ppo" (clip, Adam steps) or "trpo" (MAML paper)
        self.lr = 3e-4  # outer Adam learning rate (ppo)
        self.num_outer_steps = 5  # full-batch Adam steps per meta-iteration (ppo)
        self.clip_param = 0.15  # PPO clip epsilon
        self.max_kl = 0.01  # TRPO trust region
        self.cg_iters = 10  # TRPO conjugate-gradient iterations
        self.cg_damping = 1e-5  # TRPO Fisher damping
        self.ls_backtrack_ratio = 0.8  # TRPO line-search shrink factor
        self.ls_max_steps = 15  # TRPO line-search trials
        # RLlib settings this loop relies on.
        self.num_env_runners = 0
        self.num_envs_per_env_runner = 20
        self.num_cpus_per_env_runner = 0.5
        self.batch_mode = "complete_episodes"
        self.normalize_actions = False  # envs clip their own actions; log-probs use raw actions
        self.clip_actions = False
        # Lean sampling pipelines (see tesp/models/connectors.py).
        self._env_to_module_connector = connectors.env_to_module
        self._module_to_env_connector = connectors.module_to_env
        self.add_default_connectors_to_env_to_module_pipeline = False
        self.add_default_connectors_to_module_to_env_pipeline = False
        self._model_config = {"hidden": [64, 64], "activation": "tanh", "free_log_std": True}

    @override(AlgorithmConfig)
    def training(
        self,
        *,
        meta_batch_size: int = NotProvided,
        episodes_per_task: int = NotProvided,
        num_inner_steps: int = NotProvided,
        inner_lr: float = NotProvided,
        adapted_params: list[str] = NotProvided,
        learn_step_sizes: bool = NotProvided,
        step_size_bound: float = NotProvided,
        inner_grad_clip: float = NotProvided,
        second_order: bool = NotProvided,
        normalize_advantages: bool = NotProvided,
        embedding_reg_coeff: float = NotProvided,
        latent_prior_coeff: float = NotProvided,
        buffer_size: int = NotProvided,
        gae_lambda: float = NotProvided,
        outer_optimizer: str = NotProvided,
        num_outer_steps: int = NotProvided,
        clip_param: float = NotProvided,
        max_kl: float = NotProvided,
        cg_iters: int = NotProvided,
        cg_damping: float = NotProvided,
        ls_backtrack_ratio: float = NotProvided,
        ls_max_steps: int = NotProvided,
        **kwargs: Any,
    ) -> Self:
        super().training(**kwargs)
        for name, value in list(locals().items()):
            if name not in ("self", "kwargs", "__class__") and value is not NotProvided:
                setattr(self, name, value)
        return self

    @override(AlgorithmConfig)
    def validate(self) -> None:
        # tesp only runs on the new API stack; silence RLlib's once-per-class notice about it.
        log_once(f"{self.algo_class.__name__}_on_new_api_stack")
        super().validate()
        latent = self.model_config.get("latent_dim", 0) > 0
        kind = self.model_config.get("latent_kind", "vector") if latent else None
        checks = [
            (self.meta_batch_size >= 1, "meta_batch_size", "an integer >= 1"),
            (self.episodes_per_task >= 1, "episodes_per_task", "an integer >= 1"),
            (self.num_inner_steps >= 0, "num_inner_steps", "an integer >= 0"),
            (self.outer_optimizer in OUTER_OPTIMIZERS, "outer_optimizer", f"one of {OUTER_OPTIMIZERS}"),
            (self.num_outer_steps >= 1, "num_outer_steps", "an integer >= 1"),
            (self.step_size_bound > 0, "step_size_bound", "a number > 0"),
            (self.max_kl > 0, "max_kl", "a number > 0"),
            (0 < self.ls_backtrack_ratio < 1, "ls_backtrack_ratio", "a number in (0, 1)"),
            (0 <= self.gae_lambda <= 1, "gae_lambda", "a number in [0, 1]"),
            (self.clip_param > 0, "clip_param", "a number > 0"),
            (self.embedding_reg_coeff >= 0, "embedding_reg_coeff", "a number >= 0"),
            (self.latent_prior_coeff >= 0, "latent_prior_coeff", "a number >= 0"),
            (self.buffer_size >= 1, "buffer_size", "an integer >= 1"),
            (
                bool(self.adapted_params) and set(self.adapted_params) <= set(PARAM_GROUPS),
                "adapted_params",
                f"a non-empty list of {PARAM_GROUPS}",
            ),
            (
                "latent" not in self.adapted_params or kind in ("vector", "distribution"),
                "adapted_params",
                "without 'latent' unless model.latent_dim > 0 and model.latent_kind is vector or distribution",
            ),
            (
                "encoder" not in self.adapted_params or kind == "encoder",
                "adapted_params",
                "without 'encoder' unless model.latent_dim > 0 and model.latent_kind is encoder",
            ),
        ]
        for ok, name, valid in checks:
            if not ok:
                self._value_error(f"{name}={getattr(self, name)!r} is invalid: must be {valid}")
        latent_kind = self.model_config.get("latent_kind", "vector")
        if latent_kind not in LATENT_KINDS:
            self._value_error(f"model.latent_kind={latent_kind!r} is invalid: must be one of {LATENT_KINDS}")

    @property
    @override(AlgorithmConfig)
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {
            "adapted": list(self.adapted_params),
            "learn_step_sizes": self.learn_step_sizes,
            "init_step_size": self.inner_lr,
        }

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=GaussianMLPModule)

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> type:
        return MetaLearner


class MAML(Algorithm):
    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> MAMLConfig:
        return MAMLConfig()

    @override(Algorithm)
    def setup(self, config: AlgorithmConfig) -> None:
        super().setup(config)
        # The driver's own env instance draws the tasks; its rng is part of the checkpoint.
        self.task_env = make_env(self.config.env, self.config.env_config)
        self.task_env.reset(seed=self.config.seed)
        self.sampler = MultiTaskSampler(
            self.env_runner_group,
            num_episodes=self.config.episodes_per_task,
            gamma=self.config.gamma,
            lam=self.config.gae_lambda,
        )
        self._resampled = 0

    def on_learner(self, fn):
        """Run ``fn(learner)`` on the (single) learner and return its result."""
        results = self.learner_group.foreach_learner(fn)
        return next(iter(results)).get()

    @override(Algorithm)
    def training_step(self) -> None:
        cfg = self.config
        tasks = self.task_env.sample_tasks(cfg.meta_batch_size)
        index = [int(task.get("index", -1)) for task in tasks]  # position in the training pool
        params, weights = self.on_learner(lambda learner: learner.start_tasks(index))
        theta = weights[0]

        timings = {"sample": 0.0, "adapt": 0.0}
        buffers, stats_warmup = None, {}
        if self.uses_episode_buffer:
            # TESP's warm-up round (z = 0) fills each task's buffer; no gradient is taken from it.
            t0 = time.perf_counter()
            warmup = self._sample(tasks, weights)
            timings["sample"] += time.perf_counter() - t0
            stats_warmup = {
                "return_warmup": np.concatenate([r.batch.episode_returns for r in warmup]).mean(),
                "warmup_steps": sum(r.num_env_steps for r in warmup),
            }
            buffers = self._add_to_buffers([EpisodeBuffer.empty(self.encoder_input_dim)] * len(tasks), warmup)
            params, weights = self.on_learner(lambda learner, b=buffers: learner.start_tasks(index, b))

        stages, stage_buffers = [], []
        for k in range(cfg.num_inner_steps + 1):
            t0 = time.perf_counter()
            results = self._sample(tasks, weights)
            timings["sample"] += time.perf_counter() - t0
            stages.append(results)
            stage_buffers.append(buffers)
            if k < cfg.num_inner_steps:
                t0 = time.perf_counter()
                batches = [r.batch for r in results]
                nxt = self._add_to_buffers(buffers, results) if buffers is not None else None
                params, weights = self.on_learner(
                    lambda learner, p=params, b=batches, cur=buffers, n=nxt: learner.adapt_tasks(p, b, cur, n)
                )
                buffers = nxt
                timings["adapt"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        task_batches = [[stage[i].batch for stage in stages] for i in range(len(tasks))]
        sb = stage_buffers if self.uses_episode_buffer else None
        stats = self.on_learner(lambda learner: learner.meta_update(task_batches, index, sb))
        timings["outer"] = time.perf_counter() - t0
        # Norm of the (shared) parameters this iteration started from.
        stats["param_norm"] = float(np.sqrt(sum(np.sum(v.astype(np.float64) ** 2) for v in theta.values())))
        stats["tasks_resampled"] = self._resampled  # after EnvRunner failures
        stats.update(stats_warmup)
        self._resampled = 0
        self._log_iteration(stages, stats, timings)

    @property
    def uses_episode_buffer(self) -> bool:
        return (
            self.config.model_config.get("latent_kind") == "encoder"
            and self.config.model_config.get("latent_dim", 0) > 0
        )

    @property
    def encoder_input_dim(self) -> int:
        obs = int(np.prod(self.task_env.observation_space.shape))
        return obs + 2 * int(np.prod(self.task_env.action_space.shape)) + 1

    def _sample(self, tasks, weights) -> list[SampleResult]:
        """One sampling round: every task with its own weights; results in task order."""
        results = self.sampler.sample([SampleJob(i, t, weights[i]) for i, t in enumerate(tasks)])
        self._resampled += self.sampler.last_resampled
        return [results[i] for i in range(len(tasks))]

    def _add_to_buffers(self, buffers, results) -> list[EpisodeBuffer]:
        return [b.add(r.batch, self.config.buffer_size) for b, r in zip(buffers, results, strict=True)]

    def _log_iteration(self, stages, stats: dict[str, float], timings: dict[str, float]) -> None:
        def log(key: str, value: float) -> None:
            self.metrics.log_value((META, key), float(value), window=1)

        # Mean over all episodes of all tasks, per adaptation stage (spec §2.2).
        stage_returns = [np.concatenate([r.batch.episode_returns for r in stage]).mean() for stage in stages]
        for k, value in enumerate(stage_returns):
            log(f"return_stage_{k}", value)
        log("return_pre", stage_returns[0])
        log("return_post", stage_returns[-1])
        steps = sum(r.num_env_steps for stage in stages for r in stage) + stats.pop("warmup_steps", 0)
        for key, value in stats.items():
            log(key, value)
        log("env_steps", steps)
        self.metrics.log_value((META, "env_steps_lifetime"), steps, reduce="lifetime_sum")
        # RLlib's own counter, which Tune shows and stop criteria such as
        # `num_env_steps_sampled_lifetime` read.
        self.metrics.log_value(
            (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), steps, reduce="lifetime_sum"
        )
        log("env_steps_per_s", steps / max(timings["sample"], 1e-9))
        for phase, seconds in timings.items():
            log(f"time_{phase}_s", seconds)

    # -- checkpointing of the task rng ---------------------------------------------------
    @override(Algorithm)
    def get_state(self, *args, **kwargs) -> dict:
        state = super().get_state(*args, **kwargs)
        state["task_rng"] = self.task_env.np_random.bit_generator.state
        return state

    @override(Algorithm)
    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if "task_rng" in state:
            self.task_env.np_random.bit_generator.state = state["task_rng"]
