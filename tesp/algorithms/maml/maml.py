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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

from tesp.algorithms.base import TaskAlgorithm, TaskAlgorithmConfig
from tesp.envs.base import POOLS, Task
from tesp.meta.episode_buffer import EpisodeBuffer
from tesp.meta.learner import MetaLearner
from tesp.meta.sampler import SampleJob, SampleResult
from tesp.models import connectors
from tesp.models.gaussian_mlp import LATENT_KINDS, PARAM_GROUPS, GaussianMLPModule

logger = logging.getLogger(__name__)

OUTER_OPTIMIZERS = ("ppo", "trpo")
FIRST_ORDER_MODES = ("fixed", "recompute")
META = "meta"  # metric namespace
VALIDATION = "validation"  # metric namespace: validation/<pool>/return_stage_<k>, ...


@dataclass
class Rollout:
    """One adaptation pass over a list of tasks: what each stage sampled, per task."""

    index: list[int]  # each task's position in the training pool (-1: not in it)
    theta: dict[str, np.ndarray]  # the EnvRunner weights the pass started from
    stages: list[list[SampleResult]] = field(default_factory=list)  # [stage][task]
    stage_buffers: list[list[EpisodeBuffer] | None] = field(default_factory=list)  # TESP: B_k per stage
    warmup: list[SampleResult] | None = None  # TESP's warm-up round (z = 0)
    inner_grads: list[list[dict[str, np.ndarray]]] = field(default_factory=list)  # [step][task], clipped
    inner_losses: list[float] = field(default_factory=list)  # mean inner loss per step
    timings: dict[str, float] = field(default_factory=lambda: {"sample": 0.0, "adapt": 0.0})

    @property
    def num_env_steps(self) -> int:
        rounds = self.stages + ([self.warmup] if self.warmup else [])
        return sum(r.num_env_steps for stage in rounds for r in stage)

    def warmup_stats(self) -> dict[str, float]:
        return {"return_warmup": stage_mean(self.warmup, "episode_returns")} if self.warmup else {}


def stage_mean(results: Sequence[SampleResult], attr: str) -> float:
    """Mean over every episode of every task (spec §2.2: per episode, not per task)."""
    return float(np.concatenate([getattr(r.batch, attr) for r in results]).mean())


def pool_summary(rollouts: Sequence[Rollout]) -> dict[str, float]:
    """Per stage, the mean episode return and length over all tasks of ``rollouts``."""
    out = {}
    stages = [[r for ro in rollouts for r in ro.stages[k]] for k in range(len(rollouts[0].stages))]
    for k, stage in enumerate(stages):
        out[f"return_stage_{k}"] = stage_mean(stage, "episode_returns")
        out[f"length_stage_{k}"] = stage_mean(stage, "episode_lengths")
    out["return_post"] = out[f"return_stage_{len(stages) - 1}"]
    if rollouts[0].warmup:
        out["return_warmup"] = stage_mean([r for ro in rollouts for r in ro.warmup], "episode_returns")
    return out


class MAMLConfig(TaskAlgorithmConfig):
    """Settings of the meta-RL loop; every field below has a default and a one-line meaning."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class or MAML, connectors.env_to_module, connectors.module_to_env)
        # Tasks and sampling (episodes_per_task, gamma, gae_lambda: see TaskAlgorithmConfig).
        self.meta_batch_size = 20  # T: tasks per meta-iteration
        # Inner loop.
        self.num_inner_steps = 1  # K
        self.inner_lr = 0.1  # MAML's fixed step size; Meta-SGD's initial per-parameter step size
        self.adapted_params = ["policy"]  # parameter groups the inner loop adapts: policy, latent
        self.learn_step_sizes = False  # Meta-SGD: learn one step size per adapted parameter element
        self.step_size_bound = 0.1  # learned step sizes are clamped to [-bound, bound] (spec §1.2)
        self.inner_grad_clip = 60.0  # global-norm clip of each inner gradient; <= 0 disables
        self.second_order = True  # differentiate through the inner gradients (False: first order)
        # First order only: "fixed" keeps each task's inner gradients G from its adaptation and
        # re-evaluates theta - alpha * G at every outer step (Lan et al. 2019's release, Meta-SGD's
        # alpha gradient); "recompute" takes them again, as constants, at the current theta.
        self.first_order_mode = "fixed"
        # > 0: after the outer PPO steps keep the iterate with the lowest surrogate among those
        # whose mean KL(pi_old || pi) is below this (the TESP release's selection); 0: the last.
        self.best_iterate_kl_target = 0.0
        self.normalize_advantages = False  # standardise advantages per batch in inner and outer losses
        self.embedding_reg_coeff = 0.0  # eta: outer-loss regulariser eta * mean_j z_j^2 on the task embedding
        self.latent_prior_coeff = 1.0  # MAESN: weight of KL(N(mu_i, sigma_i^2) || N(0, I)) in the outer loss
        self.buffer_size = 16  # TESP: M, episodes kept per task for the task encoder (spec §1.4)
        # Validation (spec §2.3): every N iterations adapt to the pools' tasks (D, D', D'').
        self.validation_freq = 25  # 0 disables
        self.validation_pool_size = 0  # tasks per pool to validate on; 0: all
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
        self._model_config = {"hidden": [64, 64], "activation": "tanh", "free_log_std": True}

    @override(AlgorithmConfig)
    def validate(self) -> None:
        super().validate()
        latent = self.model_config.get("latent_dim", 0) > 0
        kind = self.model_config.get("latent_kind", "vector") if latent else None
        checks = [
            (self.meta_batch_size >= 1, "meta_batch_size", "an integer >= 1"),
            (self.num_inner_steps >= 0, "num_inner_steps", "an integer >= 0"),
            (self.outer_optimizer in OUTER_OPTIMIZERS, "outer_optimizer", f"one of {OUTER_OPTIMIZERS}"),
            (self.num_outer_steps >= 1, "num_outer_steps", "an integer >= 1"),
            (self.first_order_mode in FIRST_ORDER_MODES, "first_order_mode", f"one of {FIRST_ORDER_MODES}"),
            (self.best_iterate_kl_target >= 0, "best_iterate_kl_target", "a number >= 0 (0: off)"),
            (self.step_size_bound > 0, "step_size_bound", "a number > 0"),
            (self.max_kl > 0, "max_kl", "a number > 0"),
            (0 < self.ls_backtrack_ratio < 1, "ls_backtrack_ratio", "a number in (0, 1)"),
            (self.lr > 0, "lr", "a number > 0"),
            (self.cg_iters >= 1, "cg_iters", "an integer >= 1"),
            (self.cg_damping >= 0, "cg_damping", "a number >= 0"),
            (self.ls_max_steps >= 1, "ls_max_steps", "an integer >= 1"),
            (self.clip_param > 0, "clip_param", "a number > 0"),
            (self.embedding_reg_coeff >= 0, "embedding_reg_coeff", "a number >= 0"),
            (self.latent_prior_coeff >= 0, "latent_prior_coeff", "a number >= 0"),
            (self.buffer_size >= 1, "buffer_size", "an integer >= 1"),
            (self.validation_freq >= 0, "validation_freq", "an integer >= 0 (0: never)"),
            (self.validation_pool_size >= 0, "validation_pool_size", "an integer >= 0 (0: whole pools)"),
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
        self.check(checks)
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


class MAML(TaskAlgorithm):
    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> MAMLConfig:
        return MAMLConfig()

    @override(Algorithm)
    def setup(self, config: AlgorithmConfig) -> None:
        super().setup(config)
        self._resampled = 0

    @override(Algorithm)
    def training_step(self) -> None:
        cfg = self.config
        tasks = self.task_env.sample_tasks(cfg.meta_batch_size)
        rollout = self.adapt_on_tasks(tasks)

        t0 = time.perf_counter()
        task_batches = [[stage[i].batch for stage in rollout.stages] for i in range(len(tasks))]
        buffers = rollout.stage_buffers if self.uses_episode_buffer else None
        stats = self.on_learner(
            lambda learner: learner.meta_update(
                task_batches,
                rollout.index,
                buffers,
                rollout.inner_grads,
                float(np.mean(rollout.inner_losses)) if rollout.inner_losses else float("nan"),
            )
        )
        rollout.timings["outer"] = time.perf_counter() - t0
        # Norm of the (shared) parameters this iteration started from.
        theta = rollout.theta
        stats["param_norm"] = float(np.sqrt(sum(np.sum(v.astype(np.float64) ** 2) for v in theta.values())))
        stats["tasks_resampled"] = self._resampled  # after EnvRunner failures
        stats["sampler_nodes"] = len({r.node_id for stage in rollout.stages for r in stage})
        self._resampled = 0
        stats.update(rollout.warmup_stats())
        self._log_iteration(rollout, stats)
        # The iteration counter is incremented after training_step returns.
        if cfg.validation_freq and (self.iteration + 1) % cfg.validation_freq == 0:
            self._validation = self.validate_pools()

    def adapt_on_tasks(self, tasks: list[Task]) -> Rollout:
        """Adapt to each task from the current meta-parameters (TESP: after its warm-up round)
        and sample every stage, K inner steps and the post-adaptation round; no meta-update."""
        cfg = self.config
        index = [int(task.get("index", -1)) for task in tasks]  # position in the training pool
        params, weights = self.on_learner(lambda learner: learner.start_tasks(index))
        rollout = Rollout(index=index, theta=weights[0])
        buffers = None
        if self.uses_episode_buffer:
            # TESP's warm-up round (z = 0) fills each task's buffer; no gradient is taken from it.
            t0 = time.perf_counter()
            rollout.warmup = self._sample(tasks, weights)
            rollout.timings["sample"] += time.perf_counter() - t0
            empty = [EpisodeBuffer.empty(self.encoder_input_dim)] * len(tasks)
            buffers = self._add_to_buffers(empty, rollout.warmup)
            params, weights = self.on_learner(lambda learner, b=buffers: learner.start_tasks(index, b))

        for k in range(cfg.num_inner_steps + 1):
            t0 = time.perf_counter()
            results = self._sample(tasks, weights)
            rollout.timings["sample"] += time.perf_counter() - t0
            rollout.stages.append(results)
            rollout.stage_buffers.append(buffers)
            if k < cfg.num_inner_steps:
                t0 = time.perf_counter()
                batches = [r.batch for r in results]
                nxt = self._add_to_buffers(buffers, results) if buffers is not None else None
                params, weights, grads, loss = self.on_learner(
                    lambda learner, p=params, b=batches, cur=buffers, n=nxt: learner.adapt_tasks(p, b, cur, n)
                )
                rollout.inner_grads.append(grads)
                rollout.inner_losses.append(loss)
                buffers = nxt
                rollout.timings["adapt"] += time.perf_counter() - t0
        return rollout

    def evaluate_adaptation(
        self, tasks: list[Task], chunk: int | None = None, progress: Callable[[int], None] | None = None
    ) -> list[Rollout]:
        """Adapt to ``tasks`` in chunks of ``chunk`` (default ``meta_batch_size``) tasks at a time."""
        chunk = chunk or self.config.meta_batch_size
        out = []
        for start in range(0, len(tasks), chunk):
            out.append(self.adapt_on_tasks(tasks[start : start + chunk]))
            if progress is not None:
                progress(len(tasks[start : start + chunk]))
        return out

    def validate_pools(
        self, pools: Sequence[str] | None = None, size: int | None = None, obs_noise_std: float = 0.0
    ) -> dict[str, dict[str, float]]:
        """Adapt to the first ``size`` tasks of each pool (default: ``validation_pool_size``;
        every task when 0) and return, per pool, the mean episode return and length per stage."""
        cfg = self.config
        size = cfg.validation_pool_size if size is None else size
        out = {}
        for name in pools or POOLS:
            tasks = self.task_env.task_pools().get(name, [])
            tasks = [dict(t, obs_noise_std=obs_noise_std) for t in (tasks[:size] if size else tasks)]
            if not tasks:
                continue
            out[name] = pool_summary(self.evaluate_adaptation(tasks))
        return out

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

    def _log_iteration(self, rollout: Rollout, stats: dict[str, float]) -> None:
        def log(key: str, value: float) -> None:
            self.metrics.log_value((META, key), float(value), window=1)

        # Mean over all episodes of all tasks, per adaptation stage (spec §2.2).
        stage_returns = [stage_mean(stage, "episode_returns") for stage in rollout.stages]
        for k, value in enumerate(stage_returns):
            log(f"return_stage_{k}", value)
        log("return_pre", stage_returns[0])
        log("return_post", stage_returns[-1])
        for key, value in stats.items():
            log(key, value)
        steps = rollout.num_env_steps
        log("env_steps", steps)
        self.metrics.log_value((META, "env_steps_lifetime"), steps, reduce="lifetime_sum")
        # RLlib's own counter, which Tune shows and stop criteria such as
        # `num_env_steps_sampled_lifetime` read.
        self.metrics.log_value(
            (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), steps, reduce="lifetime_sum"
        )
        log("env_steps_per_s", steps / max(rollout.timings["sample"], 1e-9))
        for phase, seconds in rollout.timings.items():
            log(f"time_{phase}_s", seconds)

    @override(Algorithm)
    def step(self) -> dict:
        # Validation results go into the result of the iterations that ran one only (metrics
        # logged through self.metrics would show as NaN in every other iteration).
        self._validation = None
        result = super().step()
        if self._validation:
            result[VALIDATION] = self._validation
        return result
