"""MLSH (Frans et al. 2017, "Meta Learning Shared Hierarchies") on RLlib's new API stack.

Training runs ``num_parallel_tasks`` tasks at once, each in a *slot* with its own master; the
sub-policies are shared. Per slot and task (docs/mlsh_reference.md):

1. draw a task and re-initialise the slot's master (and its optimizer state);
2. ``warmup_iters`` (W) iterations that update only the master;
3. ``joint_iters`` (U) iterations that update the master and the sub-policies;

then the next task. One iteration samples ``episodes_per_task`` episodes per slot on the
EnvRunners (each slot's task and weights on the runner it is dealt to, as for the meta-learners)
and updates every slot's master on its own batch and the sub-policies on the pooled batches of
the slots in their joint phase. Slots start at staggered points of the W + U schedule, so joint-
phase data keeps arriving.

Metrics (``mlsh/``): the return after warm-up (the batch a task samples at its first joint
iteration) and after the joint phase (its last iteration), each averaged over the last 10
finished tasks; how often the masters pick each sub-policy; the PPO losses of each phase.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

from tesp.algorithms.mlsh import connectors
from tesp.algorithms.mlsh.mlsh_learner import MLSHLearner
from tesp.algorithms.mlsh.mlsh_rl_module import MACRO_START, SUB_POLICY, MLSHModule
from tesp.envs.base import Task
from tesp.meta.rollout import Rollout
from tesp.meta.sampler import SampleJob
from tesp.meta.setting import Setting, above, at_least, between, one_of
from tesp.meta.task_algorithm import TaskAlgorithm, TaskAlgorithmConfig

logger = logging.getLogger(__name__)

MLSH = "mlsh"  # metric namespace
RECENT_TASKS = 10


BASELINES = ("value_function", "linear")


class MLSHConfig(TaskAlgorithmConfig):
    """MLSH's settings, then the sampling and RLlib ones (``SETTINGS``; docs/settings.md)."""

    SETTINGS = (
        Setting("num_subs", 2, "K, the shared sub-policies.", "an integer >= 1", at_least(1)),
        Setting("macro_duration", 10, "N, env steps per master decision.", "an integer >= 1", at_least(1)),
        Setting("warmup_iters", 60, "W, master-only iterations per task.", "an integer >= 0", at_least(0)),
        Setting("joint_iters", 1, "U, master and sub-policy iterations per task.", "an integer >= 1", at_least(1)),
        Setting(
            "num_parallel_tasks", 2, "tasks trained at once, each with its own master.",
            "an integer >= 1", at_least(1),
        ),
        Setting("master_lr", 0.01, "Adam step size of the masters.", "a number > 0", above(0)),
        # the paper's value (the reference code used 3e-5, openai/mlsh#9)
        Setting("sub_lr", 3e-4, "Adam step size of the sub-policies.", "a number > 0", above(0)),
        Setting("num_epochs", 10, "PPO's passes over each batch (both phases).", "an integer >= 1", at_least(1)),
        Setting("minibatch_size", 64, "PPO's minibatch size (both phases).", "an integer >= 1", at_least(1)),
        Setting("clip_param", 0.2, "PPO's clip epsilon (both phases).", "a number > 0", above(0)),
        Setting(
            "random_sub_prob", 0.1, "probability that a master's choice is replaced by a random sub-policy.",
            "a probability in [0, 1]", between(0, 1),
        ),
        Setting(
            "sub_entropy_coeff", 0.0, "entropy bonus in the sub-policies' PPO loss.", "a number >= 0", at_least(0),
        ),
        Setting(
            "baseline", "value_function",
            "\"value_function\" (each master and sub-policy learns one, the reference's choice) or "
            "\"linear\" (the linear feature baseline refit on every batch).",
            "'value_function' or 'linear'", one_of(*BASELINES),
        ),
        Setting(
            "obs_normalization", True, "a running mean/std filter on every network's input.",
            "true or false", lambda v: isinstance(v, bool),
        ),
    )  # fmt: skip

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class or MLSHAlgorithm, connectors.env_to_module, connectors.module_to_env)
        self.episodes_per_task = 20  # episodes per slot per iteration
        self.gae_lambda = 0.98
        self.rl_module(model_config={"hidden": [64, 64], "activation": "tanh"})

    @property
    @override(AlgorithmConfig)
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {
            "num_subs": self.num_subs,
            "macro_duration": self.macro_duration,
            "random_sub_prob": self.random_sub_prob,
            "num_masters": self.num_parallel_tasks,
            "obs_normalization": self.obs_normalization,
        }

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=MLSHModule)

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> type:
        return MLSHLearner


class MLSHAlgorithm(TaskAlgorithm):
    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> MLSHConfig:
        return MLSHConfig()

    @override(Algorithm)
    def setup(self, config: AlgorithmConfig) -> None:
        super().setup(config)
        cfg = self.config
        period = cfg.warmup_iters + cfg.joint_iters
        # Slot g starts g/G of the way into its schedule, so that the slots' joint phases spread out.
        self.slots = [
            {"task": self.task_env.sample_tasks(1)[0], "step": (g * period) // cfg.num_parallel_tasks}
            for g in range(cfg.num_parallel_tasks)
        ]
        self.finished = {"post_warmup": deque(maxlen=RECENT_TASKS), "post_joint": deque(maxlen=RECENT_TASKS)}
        self.tasks_done = 0

    @override(Algorithm)
    def training_step(self) -> None:
        cfg = self.config
        ids = list(range(len(self.slots)))
        weights = self.on_learner(lambda learner: learner.slot_weights(ids))
        t0 = time.perf_counter()
        results = self.sampler.sample([SampleJob(g, self.slots[g]["task"], weights[g]) for g in ids])
        sample_s = time.perf_counter() - t0
        batches = {g: results[g].batch for g in ids}
        joint = [g for g in ids if self.slots[g]["step"] >= cfg.warmup_iters]
        t0 = time.perf_counter()
        stats = self.on_learner(lambda learner: learner.update_mlsh(batches, joint))
        update_s = time.perf_counter() - t0

        returns = {g: float(batches[g].episode_returns.mean()) for g in ids}
        for g in ids:
            slot = self.slots[g]
            if slot["step"] == cfg.warmup_iters:
                self.finished["post_warmup"].append(returns[g])
            if slot["step"] == cfg.warmup_iters + cfg.joint_iters - 1:
                self.finished["post_joint"].append(returns[g])
            slot["step"] += 1
            if slot["step"] == cfg.warmup_iters + cfg.joint_iters:  # the task is done: the next one
                self.tasks_done += 1
                slot.update(task=self.task_env.sample_tasks(1)[0], step=0)
                self.on_learner(lambda learner, g=g: learner.reset_master(g))

        def log(key: str, value: float) -> None:
            self.metrics.log_value((MLSH, key), float(value), window=1)

        log("return", np.mean(list(returns.values())))
        for key, values in self.finished.items():
            log(f"return_{key}", np.mean(values) if values else np.nan)
        log("tasks_done", self.tasks_done)
        log("joint_slots", len(joint))
        log("num_slots", len(ids))
        # Iterations until the first return after warm-up is logged (0 once there is one).
        first = min(cfg.warmup_iters - slot["step"] for slot in self.slots) + 1
        log("iters_to_first_value", 0 if self.finished["post_warmup"] else max(first, 1))
        starts = np.concatenate([b.extras[MACRO_START][b.mask > 0] for b in batches.values()]) > 0
        chosen = np.concatenate([b.extras[SUB_POLICY][b.mask > 0] for b in batches.values()])[starts]
        for k in range(cfg.num_subs):
            log(f"sub_choice_freq_{k}", np.mean(chosen == k) if len(chosen) else np.nan)
        log("master_loss", stats["master_loss"])
        log("sub_loss", stats.get("sub_loss", np.nan))
        steps = sum(r.num_env_steps for r in results.values())
        log("env_steps", steps)
        log("env_steps_per_s", steps / max(sample_s, 1e-9))
        log("time_sample_s", sample_s)
        log("time_update_s", update_s)
        self.metrics.log_value(
            (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), steps, reduce="lifetime_sum"
        )

    @property
    def num_adaptation_steps(self) -> int:
        """Updates per task at test time: the master's warm-up."""
        return self.config.warmup_iters

    @property
    def adaptation_chunk(self) -> int:
        """Tasks adapted at a time at test time: one per slot."""
        return self.config.num_parallel_tasks

    def adapt_on_tasks(self, tasks: list[Task], warmup_iters: int | None = None) -> Rollout:
        """MLSH's adaptation to new tasks (the paper's test): each task gets a fresh master that
        trains for the warm-up, ``warmup_iters`` (default: the config's) master-only iterations
        with the sub-policies fixed; stage ``w`` is the batch sampled before update ``w`` (stage
        0: the fresh master, the last stage: after the warm-up). Tasks run ``num_parallel_tasks``
        at a time in the slots; the learner's state (masters, optimizers, observation filter) is
        restored afterwards, so training goes on as if this had not run."""
        cfg = self.config
        warmup = cfg.warmup_iters if warmup_iters is None else warmup_iters
        saved = self.on_learner(lambda learner: learner.snapshot())
        rollout = Rollout(index=[-1] * len(tasks), theta={})
        rollout.stages = [[] for _ in range(warmup + 1)]
        try:
            for start in range(0, len(tasks), cfg.num_parallel_tasks):
                chunk = tasks[start : start + cfg.num_parallel_tasks]
                ids = list(range(len(chunk)))
                for g in ids:
                    self.on_learner(lambda learner, g=g: learner.reset_master(g))
                for w in range(warmup + 1):
                    weights = self.on_learner(lambda learner, ids=ids: learner.slot_weights(ids))
                    if start == 0 and w == 0:
                        rollout.theta = weights[0]
                    t0 = time.perf_counter()
                    results = self.sampler.sample([SampleJob(g, chunk[g], weights[g]) for g in ids])
                    rollout.timings["sample"] += time.perf_counter() - t0
                    rollout.stages[w].extend(results[g] for g in ids)
                    if w < warmup:
                        t0 = time.perf_counter()
                        batches = {g: results[g].batch for g in ids}
                        self.on_learner(lambda learner, b=batches: learner.update_mlsh(b, joint=[]))
                        rollout.timings["adapt"] += time.perf_counter() - t0
        finally:
            self.on_learner(lambda learner: learner.restore(saved))
        return rollout

    # -- checkpointing of the schedule ---------------------------------------------------
    @override(Algorithm)
    def get_state(self, *args, **kwargs) -> dict:
        state = super().get_state(*args, **kwargs)
        state["mlsh"] = {
            "slots": self.slots,
            "finished": {k: list(v) for k, v in self.finished.items()},
            "tasks_done": self.tasks_done,
        }
        return state

    @override(Algorithm)
    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if "mlsh" in state:
            saved = state["mlsh"]
            self.slots = saved["slots"]
            self.finished = {k: deque(v, maxlen=RECENT_TASKS) for k, v in saved["finished"].items()}
            self.tasks_done = saved["tasks_done"]


def summary_line(result: dict) -> str:
    """The progress line of an MLSH result: the iteration's return, the returns after warm-up
    and after the joint phase (last 10 finished tasks), tasks done, sampling speed."""
    m = result.get(MLSH, {})
    phase = f"{int(m.get('joint_slots', 0))} of {int(m.get('num_slots', 0)) or '?'} tasks in the joint phase"
    if m.get("iters_to_first_value", 0) > 0:
        after = f"after warm-up: first value in {int(m['iters_to_first_value'])} iterations ({phase})"
    else:
        after = (
            f"after warm-up {m.get('return_post_warmup', float('nan')):.2f}, "
            f"after joint {m.get('return_post_joint', float('nan')):.2f} (last {RECENT_TASKS} tasks; "
            f"{int(m.get('tasks_done', 0))} done; {phase})"
        )
    return f"return {m.get('return', float('nan')):.2f} | {after} | {m.get('env_steps_per_s', 0):.0f} steps/s"
