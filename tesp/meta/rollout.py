"""What one adaptation pass over a list of tasks sampled, and its per-stage summaries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tesp.meta import mechanism
from tesp.meta.sampler import SampleResult


class Staged(list):
    """Per-task values of every stage, ``[stage][task]``: the order the stages are sampled in
    and the learner reads them in. A Learner's shard of it is ``[stage][its tasks]``."""


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
    # Per task, how far the inner steps moved the policy (tesp.meta.mechanism.task_adaptation).
    adaptation: dict[str, np.ndarray] = field(default_factory=dict)
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


def pool_summary(rollouts: Sequence[Rollout]) -> dict[str, float]:
    """Per stage, the mean episode return and length over all tasks of ``rollouts``; for envs
    that report ``info["success"]``, also the fraction of tasks solved (:func:`task_success`,
    MIME's and Meta-World's success rate); and the adaptation's mechanism measures
    (:mod:`tesp.meta.mechanism`) where the method has them."""
    out = {}
    stages = [stage_results(rollouts, k) for k in range(len(rollouts[0].stages))]
    tracked = "success" in stages[0][0].batch.extras
    for k, stage in enumerate(stages):
        out[f"return_stage_{k}"] = stage_mean(stage, "episode_returns")
        out[f"length_stage_{k}"] = stage_mean(stage, "episode_lengths")
        if tracked:
            out[f"success_stage_{k}"] = float(np.mean([task_success(r.batch) for r in stage]))
    out["return_post"] = out[f"return_stage_{len(stages) - 1}"]
    if tracked:
        out["success_post"] = out[f"success_stage_{len(stages) - 1}"]
    if rollouts[0].warmup:
        out["return_warmup"] = stage_mean([r for ro in rollouts for r in ro.warmup], "episode_returns")
    return out | mechanism.summarize(mechanism.concat([ro.adaptation for ro in rollouts]))


def stage_results(rollouts: Sequence[Rollout], k: int) -> list:
    """Stage ``k``'s results of every task, in task order (``rollouts`` cover the tasks in
    chunks)."""
    return [r for ro in rollouts for r in ro.stages[k]]


def task_success(batch) -> bool:
    """Whether any real step of any episode of a task's batch succeeded (the env's
    ``info["success"]``, recorded as the batch's extra ``"success"``)."""
    return bool(((batch.extras["success"] > 0) & (batch.mask > 0)).any())


def summary_line(result: dict) -> str:
    """The progress line of a gradient meta-learner's result: the return at each stage, the
    success rate at each stage where the env has one, the env steps, and the validation pools'
    returns (and success rates) when the iteration validated."""
    meta = result.get("meta", {})
    line = (
        f"return {stage_returns(meta)}{success_rates(meta)} | {format_steps(meta.get('env_steps', 0))} steps"
    )
    for pool, values in result.get("validation", {}).items():
        line += f"\n  validation {pool:<3} | return {stage_returns(values)}{success_rates(values)}"
    return line


def format_steps(n: float) -> str:
    """``850``, ``3.2k``, ``40k``, ``1.5M``: a count of env steps, short."""
    if n < 1e3:
        return f"{n:.0f}"
    if n < 1e4:
        return f"{n / 1e3:.1f}k"
    if n < 1e6:
        return f"{n / 1e3:.0f}k"
    return f"{n / 1e6:.1f}M"


def success_rates(metrics: dict) -> str:
    """``" | success 0.10 -> 0.40"`` from ``success_stage_<k>`` keys (empty without them)."""
    stages = sorted(
        (int(k.rsplit("_", 1)[1]), v) for k, v in metrics.items() if k.startswith("success_stage_")
    )
    return " | success " + " -> ".join(f"{v:.2f}" for _, v in stages) if stages else ""


def stage_returns(metrics: dict) -> str:
    """``"r0 -> r1 -> ..."`` from ``return_stage_<k>`` keys, in stage order."""
    stages = sorted(
        (int(k.rsplit("_", 1)[1]), v) for k, v in metrics.items() if k.startswith("return_stage_")
    )
    return " -> ".join(f"{v:.2f}" for _, v in stages)
