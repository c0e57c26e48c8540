"""Whether a gradient meta-learner's adaptation is at work: the quantities that say so.

A meta-learner can score well with its adaptation switched off in effect (step sizes that never
grow, an inner step that moves the policy by nothing measurable, a context that carries all the
information), and then a result about the method is a result about something else. These
numbers, logged every iteration and every validation under ``meta/`` (and per pool under
``validation/<pool>/``), show whether the mechanism is active:

- ``adaptation_kl``: mean KL(pi before the inner steps || pi after the K inner steps) on the
  post-adaptation batch's observations (a context method: the same context, the latent computed
  under the parameters before vs after, Lan et al. 2019's encoder adaptation);
- ``context_kl`` (methods whose policy reads a task latent z): mean KL(pi with z = 0 || pi with
  the adapted z), both under the adapted parameters, on the same observations;
- ``z_inner_shift_ratio`` (the same methods): the mean over tasks of |z_after - z_before| (the
  inner steps' move of a task's latent) over the between-task spread of z,
  ``sqrt(sum_j Var_t z_j)`` (the RMS distance of a task's z from the mean z); below ~0.1 the
  inner step hardly tells tasks apart beyond what the context already does;
- ``step_size_q10`` / ``q50`` / ``q90``: quantiles of the inner step sizes (learned and clamped,
  Li et al. 2017; a fixed ``inner_lr`` otherwise);
- ``step_size_grad_below_eps``: the fraction of learned step-size elements whose Adam
  second-moment RMS ``sqrt(v_hat)`` is below Adam's eps: Adam's update of those elements is then
  scaled by their gradient over eps, i.e. they barely learn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from tesp.meta.losses import masked_mean
from tesp.nn.distributions import gaussian_kl

ADAPTATION_KL = "adaptation_kl"
CONTEXT_KL = "context_kl"
Z_INNER_SHIFT_RATIO = "z_inner_shift_ratio"
STEP_SIZE_QUANTILES = {"step_size_q10": 0.1, "step_size_q50": 0.5, "step_size_q90": 0.9}
STEP_SIZE_GRAD_BELOW_EPS = "step_size_grad_below_eps"
#: every mechanism metric, as logged under ``meta/`` (the report's mechanism panel reads these).
METRICS = (ADAPTATION_KL, CONTEXT_KL, Z_INNER_SHIFT_RATIO, *STEP_SIZE_QUANTILES, STEP_SIZE_GRAD_BELOW_EPS)

# Per-task values the learner returns (vmapped over tasks), summarised by :func:`summarize`.
_LATENT = "latent"
_LATENT_SHIFT = "latent_shift"


def task_adaptation(
    policy,
    theta: Mapping[str, torch.Tensor],
    adapted: Mapping[str, torch.Tensor],
    batch: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """One task's adaptation measures on its post-adaptation ``batch`` (vmapped by the caller):
    the KL of the inner steps and, when the policy reads a latent, the context's KL, the latent
    (averaged over steps when it is drawn per step) and its inner move."""
    obs, mask = batch["obs"], batch["mask"]
    z_before = policy.task_latent(theta, batch)
    z_after = policy.task_latent(adapted, batch)
    before = policy.dist_inputs(obs, theta, z_before)
    after = policy.dist_inputs(obs, adapted, z_after)
    out = {ADAPTATION_KL: masked_mean(gaussian_kl(before, after), mask)}
    if z_after is None:
        return out
    without = policy.dist_inputs(obs, adapted, torch.zeros_like(z_after))
    out[CONTEXT_KL] = masked_mean(gaussian_kl(without, after), mask)
    shift = (z_after - z_before).norm(dim=-1)
    if z_after.dim() > 1:  # a latent per step (MAESN's per-episode draw): its mean over real steps
        weights = (mask / mask.sum()).unsqueeze(-1)
        out[_LATENT] = (z_after * weights).sum(0)
        out[_LATENT_SHIFT] = masked_mean(shift, mask)
    else:
        out[_LATENT], out[_LATENT_SHIFT] = z_after, shift
    return out


def concat(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-task arrays of several shards or chunks of tasks, joined in task order."""
    parts = [p for p in parts if p]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


def summarize(per_task: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Means over tasks of :func:`task_adaptation`'s values, and the latent's shift ratio
    (NaN with fewer than two tasks or latents that do not differ)."""
    if not per_task:
        return {}
    out = {ADAPTATION_KL: float(np.mean(per_task[ADAPTATION_KL]))}
    if CONTEXT_KL in per_task:
        out[CONTEXT_KL] = float(np.mean(per_task[CONTEXT_KL]))
        latents = np.asarray(per_task[_LATENT], dtype=np.float64)
        spread = float(np.sqrt(latents.var(axis=0).sum())) if len(latents) > 1 else 0.0
        shift = float(np.mean(per_task[_LATENT_SHIFT]))
        out[Z_INNER_SHIFT_RATIO] = shift / spread if spread > 0 else float("nan")
    return out


def step_size_stats(sizes: torch.Tensor) -> dict[str, float]:
    """Quantiles of all inner step-size elements (``sizes`` flat)."""
    q = torch.quantile(
        sizes.detach().double(), torch.tensor(list(STEP_SIZE_QUANTILES.values()), dtype=torch.float64)
    )
    return {name: float(v) for name, v in zip(STEP_SIZE_QUANTILES, q, strict=True)}


def adam_rms_below_eps(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]) -> float:
    """The fraction of the elements of ``params`` whose Adam second-moment RMS (bias-corrected,
    ``sqrt(v / (1 - beta2^t))``) is below the optimizer's eps; elements Adam has not stepped yet
    count as below. NaN for no parameters."""
    below, total = 0, 0
    settings: dict[int, Any] = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    for p in params:
        group = settings[id(p)]
        state = optimizer.state.get(p, {})
        total += p.numel()
        if "exp_avg_sq" not in state:
            below += p.numel()
            continue
        step = float(state["step"])
        rms = torch.sqrt(state["exp_avg_sq"] / (1.0 - group["betas"][1] ** step))
        below += int((rms < group["eps"]).sum())
    return below / total if total else float("nan")
