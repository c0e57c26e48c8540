"""What one adaptation pass over a list of tasks sampled, and its per-stage summaries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tesp.meta.sampler import SampleResult


@dataclass
class Rollout:
    """One adaptation pass over a list of tasks: what each stage sampled, per task."""

    index: list[int]  # each task's position in the training pool (-1: not in it)
    theta: dict[str, np.ndarray]  # the EnvRunner weights the pass started from (task 0's)
    stages: list[list[SampleResult]] = field(default_factory=list)  # [stage][task]
    # What a method carries from stage to stage per task besides the parameters (TESP: each
    # task's episode buffer), as it stood when each stage was sampled: [stage][task] or None.
    stage_contexts: list[list[Any] | None] = field(default_factory=list)
    warmup: list[SampleResult] | None = None  # a round sampled before stage 0 (TESP: z = 0)
    inner_losses: list[float] = field(default_factory=list)  # mean inner loss per step
    timings: dict[str, float] = field(default_factory=lambda: {"sample": 0.0, "adapt": 0.0})

    @property
    def num_env_steps(self) -> int:
        rounds = self.stages + ([self.warmup] if self.warmup else [])
        return sum(r.num_env_steps for stage in rounds for r in stage)

    def warmup_stats(self) -> dict[str, float]:
        return {"return_warmup": stage_mean(self.warmup, "episode_returns")} if self.warmup else {}


def stage_mean(results: Sequence[SampleResult], attr: str) -> float:
    """Mean over every episode of every task: each episode weighs the same, as in the TESP
    release's reports (docs/original_release.md)."""
    return float(np.concatenate([getattr(r.batch, attr) for r in results]).mean())


def pool_summary(rollouts: Sequence[Rollout], success_reward: float | None = None) -> dict[str, float]:
    """Per stage, the mean episode return and length over all tasks of ``rollouts``; with
    ``success_reward`` (the env's :attr:`~tesp.envs.base.TaskEnv.success_reward`), also the
    fraction of tasks with a step rewarded above it in any episode (MIME's success rate)."""
    out = {}
    stages = [[r for ro in rollouts for r in ro.stages[k]] for k in range(len(rollouts[0].stages))]
    for k, stage in enumerate(stages):
        out[f"return_stage_{k}"] = stage_mean(stage, "episode_returns")
        out[f"length_stage_{k}"] = stage_mean(stage, "episode_lengths")
        if success_reward is not None:
            out[f"success_stage_{k}"] = float(np.mean([task_success(r.batch, success_reward) for r in stage]))
    out["return_post"] = out[f"return_stage_{len(stages) - 1}"]
    if success_reward is not None:
        out["success_post"] = out[f"success_stage_{len(stages) - 1}"]
    if rollouts[0].warmup:
        out["return_warmup"] = stage_mean([r for ro in rollouts for r in ro.warmup], "episode_returns")
    return out


def task_success(batch, success_reward: float) -> bool:
    """Whether any real step of any episode of a task's batch was rewarded above ``success_reward``."""
    return bool(((batch.rewards > success_reward) & (batch.mask > 0)).any())


def summary_line(result: dict) -> str:
    """The progress line of a gradient meta-learner's result: the return at each stage, the
    env steps, and the validation pools' returns when the iteration validated."""
    meta = result.get("meta", {})
    line = f"return {stage_returns(meta)} | {meta.get('env_steps', 0) / 1e3:.0f}k steps"
    for pool, values in result.get("validation", {}).items():
        line += f"\n  validation {pool:<3} | return {stage_returns(values)}"
    return line


def stage_returns(metrics: dict) -> str:
    """``"r0 -> r1 -> ..."`` from ``return_stage_<k>`` keys, in stage order."""
    stages = sorted(
        (int(k.rsplit("_", 1)[1]), v) for k, v in metrics.items() if k.startswith("return_stage_")
    )
    return " -> ".join(f"{v:.2f}" for _, v in stages)
