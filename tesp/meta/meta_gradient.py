"""The engine of every gradient-based meta-learner (MAML, Meta-SGD, AdaptSV, MAESN, TESP).

One ``training_step`` is one meta-iteration (Finn et al. 2017, Algorithm 3):

1. draw ``meta_batch_size`` tasks from the env's training distribution (driver-side rng);
2. for stage k = 0..K: sample ``episodes_per_task`` episodes per task on the EnvRunners, each
   task with its own current weights (stage 0: the meta-parameters), then take one inner step
   per task on the learner (stages < K), which keeps every task's adapted parameters;
3. meta-update on the learner from every task's stage batches (the last one is the
   post-adaptation batch), by PPO-clip Adam steps or one TRPO step.

A method is a subclass of :class:`MetaGradientConfig` (its own settings and defaults), of
:class:`MetaGradientAlgorithm` (the two hooks below, when it carries more than parameters from
stage to stage), of :class:`~tesp.meta.meta_learner.MetaLearner` (its losses) and of
:class:`~tesp.models.gaussian_policy.GaussianPolicyModule` (its networks):

- :meth:`MetaGradientAlgorithm.initial_contexts`: before stage 0, each task's starting context
  (TESP: a warm-up round fills each task's episode buffer); None: no context;
- :meth:`MetaGradientAlgorithm.next_contexts`: between stages, the context of the next stage
  from the one just sampled (TESP: the buffer updated with the new episodes).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

from tesp.envs.base import Task
from tesp.meta import mechanism, validation
from tesp.meta.rollout import Rollout, Staged, stage_mean, task_success
from tesp.meta.sampler import SampleJob, SampleResult
from tesp.meta.setting import Setting, above, at_least, one_of
from tesp.meta.task_algorithm import TaskAlgorithm, TaskAlgorithmConfig
from tesp.meta.validation import PoolValidation
from tesp.models import connectors

logger = logging.getLogger(__name__)

OUTER_OPTIMIZERS = ("ppo", "trpo")
FIRST_ORDER_MODES = ("fixed", "recompute")
META = "meta"  # metric namespace


class MetaGradientConfig(TaskAlgorithmConfig):
    """Settings of the gradient-based meta-learning loop (``SETTINGS``; docs/settings.md)."""

    shards_tasks = True  # several Learners split the meta-batch (tesp.meta.meta_learner)
    SETTINGS = (
        Setting("meta_batch_size", 20, "T, tasks per meta-iteration.", "an integer >= 1", at_least(1)),
        Setting(
            "num_inner_steps", 1, "K, inner steps per task (K + 1 sampling stages).",
            "an integer >= 0", at_least(0),
        ),
        Setting("inner_lr", 0.1, "the inner step size (MAML), or the initial value of every learned step size."),
        Setting(
            "adapted_params", ["policy"],
            "the parameter groups the inner loop adapts (the module's PARAM_GROUPS).",
        ),
        Setting(
            "learn_step_sizes", False,
            "learn one inner step size per adapted parameter element (Li et al. 2017).",
        ),
        Setting(
            "step_size_bound", 0.1, "learned step sizes are clamped to [-bound, bound] in the inner step.",
            "a number > 0", above(0),
        ),
        Setting("inner_grad_clip", 60.0, "global-norm clip of each task's inner gradient; <= 0 disables."),
        Setting(
            "second_order", True,
            "differentiate the outer loss through the inner gradients (Finn et al. 2017).",
        ),
        Setting(
            "first_order_mode", "fixed",
            "without second_order, \"fixed\" keeps each task's inner gradients G from its adaptation "
            "and re-evaluates theta - alpha G at every outer step (the TESP release's update; alpha "
            "still gets a gradient), \"recompute\" takes them again, as constants, at the current theta.",
            f"one of {FIRST_ORDER_MODES}", one_of(*FIRST_ORDER_MODES),
        ),
        Setting(
            "best_iterate_kl_target", 0.0,
            "> 0: after the outer PPO steps keep the iterate with the lowest surrogate among those "
            "whose mean KL(pi_old || pi) is below this; 0: the last iterate.",
            "a number >= 0 (0: off)", at_least(0),
        ),
        Setting(
            "normalize_advantages", False, "standardise advantages per batch in the inner and outer losses.",
        ),
        *validation.SETTINGS,
        Setting(
            "outer_optimizer", "ppo",
            "\"ppo\" (clipped surrogate, Adam steps) or \"trpo\" (one TRPO step).",
            f"one of {OUTER_OPTIMIZERS}", one_of(*OUTER_OPTIMIZERS),
        ),
        Setting(
            "num_outer_steps", 5, "full-batch Adam steps per meta-iteration (ppo).",
            "an integer >= 1", at_least(1),
        ),
        Setting(
            "outer_task_chunk", 5,
            "the ppo loss and its gradient are evaluated this many tasks at a time and summed (the "
            "same full-batch step, smaller intermediate tensors); 0: all at once.",
            "an integer >= 0 (0: all tasks at once)", at_least(0),
        ),
        Setting("clip_param", 0.15, "PPO's clip epsilon.", "a number > 0", above(0)),
        Setting("max_kl", 0.01, "TRPO's trust region (mean KL of a step).", "a number > 0", above(0)),
        Setting("cg_iters", 10, "TRPO's conjugate-gradient iterations.", "an integer >= 1", at_least(1)),
        Setting("cg_damping", 1e-5, "TRPO's Fisher damping.", "a number >= 0", at_least(0)),
        Setting(
            "ls_backtrack_ratio", 0.8, "TRPO's line-search shrink factor.",
            "a number in (0, 1)", lambda v: 0 < v < 1,
        ),
        Setting("ls_max_steps", 15, "TRPO's line-search trials.", "an integer >= 1", at_least(1)),
    )  # fmt: skip

    def __init__(self, algo_class: type, env_to_module=connectors.env_to_module) -> None:
        super().__init__(algo_class, env_to_module, connectors.module_to_env)
        self.lr = 3e-4
        self.rl_module(model_config={"hidden": [64, 64], "activation": "tanh", "free_log_std": True})

    @override(AlgorithmConfig)
    def validate(self) -> None:
        super().validate()
        groups = self.get_default_rl_module_spec().module_class.PARAM_GROUPS
        self.check(
            [
                (self.lr > 0, "lr", "a number > 0"),
                (
                    self.num_learners <= max(1, self.meta_batch_size),
                    "num_learners",
                    f"at most meta_batch_size ({self.meta_batch_size}): every Learner needs a task",
                ),
                (
                    self.num_learners <= 1 or self.outer_optimizer != "trpo",
                    "num_learners",
                    "0 or 1 with outer_optimizer='trpo' (TRPO's step runs on one Learner)",
                ),
                (
                    bool(self.adapted_params) and set(self.adapted_params) <= set(groups),
                    "adapted_params",
                    f"a non-empty list of {groups}",
                ),
            ]
        )

    @property
    @override(AlgorithmConfig)
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {
            "adapted": list(self.adapted_params),
            "learn_step_sizes": self.learn_step_sizes,
            "init_step_size": self.inner_lr,
        }


class MetaGradientAlgorithm(PoolValidation, TaskAlgorithm):
    @override(Algorithm)
    def setup(self, config: AlgorithmConfig) -> None:
        super().setup(config)
        self._resampled = 0

    # -- hooks -----------------------------------------------------------------------------
    def initial_contexts(self, tasks: list[Task], rollout: Rollout, weights: list) -> list[Any] | None:
        """Each task's context before stage 0 (may sample, e.g. a warm-up round into ``rollout``);
        None: the method carries nothing but parameters from stage to stage."""
        return None

    def next_contexts(self, contexts: list[Any] | None, results: list[SampleResult]) -> list[Any] | None:
        """The context of the next stage, from the current one and the stage just sampled."""
        return contexts

    # -- the loop --------------------------------------------------------------------------
    @override(Algorithm)
    def training_step(self) -> None:
        tasks = self.task_env.sample_tasks(self.config.meta_batch_size)
        rollout = self.adapt_on_tasks(tasks)
        t0 = time.perf_counter()
        stages = Staged([r.batch for r in stage] for stage in rollout.stages)
        inner_loss = float(np.mean(rollout.inner_losses)) if rollout.inner_losses else float("nan")
        contexts = rollout.stage_contexts
        contexts = Staged(contexts) if contexts and contexts[0] is not None else None
        stats = self.on_learner_shards(
            lambda learner, b, i, c: learner.meta_update(b, i, c, inner_loss),
            len(tasks),
            stages,
            rollout.index,
            contexts,
        )[0]  # every Learner took the same step
        rollout.timings["outer"] = time.perf_counter() - t0
        # Norm of the (shared) parameters this iteration started from.
        theta = rollout.theta
        stats["param_norm"] = float(np.sqrt(sum(np.sum(v.astype(np.float64) ** 2) for v in theta.values())))
        stats["tasks_resampled"] = self._resampled  # after EnvRunner failures
        stats["sampler_nodes"] = len({r.node_id for stage in rollout.stages for r in stage})
        self._resampled = 0
        stats.update(rollout.warmup_stats())
        stats.update(mechanism.summarize(rollout.adaptation))
        self._log_iteration(rollout, stats)
        self.validate_if_due()

    def adapt_on_tasks(self, tasks: list[Task], num_inner_steps: int | None = None) -> Rollout:
        """Adapt to each task from the current meta-parameters and sample every stage: K inner
        steps (default ``num_inner_steps`` of the config) and the post-adaptation round; no
        meta-update. The learner keeps each task's adapted parameters and inner gradients for
        the meta-update that may follow."""
        cfg = self.config
        steps = cfg.num_inner_steps if num_inner_steps is None else num_inner_steps
        index = [int(task.get("index", -1)) for task in tasks]  # position in the training pool
        weights = self._start_tasks(index, None)
        rollout = Rollout(index=index, theta=weights[0])
        contexts = self.initial_contexts(tasks, rollout, weights)
        if contexts is not None:
            weights = self._start_tasks(index, contexts)
        for k in range(steps + 1):
            t0 = time.perf_counter()
            results = self.sample_round(tasks, weights)
            rollout.timings["sample"] += time.perf_counter() - t0
            rollout.stages.append(results)
            rollout.stage_contexts.append(contexts)
            if k < steps:
                t0 = time.perf_counter()
                batches = [r.batch for r in results]
                nxt = self.next_contexts(contexts, results)
                weights, loss = self._adapt_tasks(batches, contexts, nxt)
                rollout.inner_losses.append(loss)
                contexts = nxt
                rollout.timings["adapt"] += time.perf_counter() - t0
        rollout.adaptation = self._adaptation_measures([r.batch for r in results], contexts)
        return rollout

    def _start_tasks(self, index: list[int], contexts: list | None) -> list:
        """Every task's EnvRunner weights at theta (each Learner starts its shard)."""
        shards = self.on_learner_shards(
            lambda learner, i, c: learner.start_tasks(i, c), len(index), index, contexts
        )
        return [w for shard in shards for w in shard]

    def _adapt_tasks(self, batches: list, contexts: list | None, nxt: list | None) -> tuple[list, float]:
        """One inner step on every task (each Learner its shard): the next weights and the mean
        inner loss over the tasks."""
        shards = self.on_learner_shards(
            lambda learner, b, c, n: learner.adapt_tasks(b, c, n), len(batches), batches, contexts, nxt
        )
        sizes = [s.stop - s.start for s in self.task_shards(len(batches))]
        loss = sum(size * loss for size, (_, loss) in zip(sizes, shards, strict=True) if size) / len(batches)
        return [w for weights, _ in shards for w in weights], loss

    def _adaptation_measures(self, batches: list, contexts: list | None) -> dict[str, np.ndarray]:
        """Per task, the mechanism measures of its adaptation on its post-adaptation batch
        (each Learner its shard), in task order."""
        shards = self.on_learner_shards(
            lambda learner, b, c: learner.adaptation_measures(b, c), len(batches), batches, contexts
        )
        return mechanism.concat(shards)

    @property
    def num_adaptation_steps(self) -> int:
        """Updates per task at test time: the inner steps."""
        return self.config.num_inner_steps

    @property
    def adaptation_chunk(self) -> int:
        """Tasks adapted at a time at test time: a meta-batch."""
        return self.config.meta_batch_size

    def sample_round(self, tasks: list[Task], weights: list) -> list[SampleResult]:
        """One sampling round: every task with its own weights; results in task order."""
        results = self.sampler.sample([SampleJob(i, t, weights[i]) for i, t in enumerate(tasks)])
        self._resampled += self.sampler.last_resampled
        return [results[i] for i in range(len(tasks))]

    def _log_iteration(self, rollout: Rollout, stats: dict[str, float]) -> None:
        def log(key: str, value: float) -> None:
            self.metrics.log_value((META, key), float(value), window=1)

        stage_returns = [stage_mean(stage, "episode_returns") for stage in rollout.stages]
        for k, value in enumerate(stage_returns):
            log(f"return_stage_{k}", value)
        log("return_pre", stage_returns[0])
        log("return_post", stage_returns[-1])
        if "success" in rollout.stages[0][0].batch.extras:  # sparse tasks: the share solved
            for k, stage in enumerate(rollout.stages):
                log(f"success_stage_{k}", np.mean([task_success(r.batch) for r in stage]))
            log("success_post", np.mean([task_success(r.batch) for r in rollout.stages[-1]]))
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
