"""The outer optimisation of the meta-learners: the meta-objective's value and gradient over the
meta-batch in chunks of tasks, summed over the Learners, and the two optimisers that step on it
(PPO-clip with full-batch Adam steps, TRPO). The objective itself (adapt every task, evaluate
the outer loss) is :meth:`tesp.meta.meta_learner.MetaLearner.objective`; here it is a callable
``objective(create_graph=..., tasks=slice) -> {term: tensor}``.

Metric keys the learner reports, and the report and TensorBoard read, are the constants below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist

from tesp.meta.losses import best_iterate
from tesp.meta.trpo import trpo_step

# Keys of the outer objective's terms.
PPO, PPO_POLICY, PG, KL, INNER_LOSS = "ppo", "ppo_policy", "pg", "kl", "inner_loss"
CORE_TERMS = (PPO, PPO_POLICY, PG, KL, INNER_LOSS)  # other outer terms are logged as they are
# Keys of the update's statistics (``meta/...``).
OUTER_LOSS_BEFORE, OUTER_LOSS_AFTER = "outer_loss_before", "outer_loss_after"
BEST_ITERATE, TRPO_STEP_FRACTION = "best_iterate", "trpo_step_fraction"

Objective = Callable[..., dict[str, torch.Tensor]]


def world_size() -> int:
    """Learners in the meta-update's process group (1: a single Learner)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def world_rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


def global_count(n: int) -> int:
    """``n`` summed over the Learners."""
    if world_size() == 1:
        return n
    count = torch.tensor([n], dtype=torch.int64)
    dist.all_reduce(count)
    return int(count.item())


def all_reduce_gradients(params: Sequence[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over the Learners, in one flat buffer. A parameter no
    Learner has a gradient for (e.g. the latent of a task in no shard) keeps ``None``, so Adam
    leaves it alone exactly as with one Learner."""
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float64)
    flat = torch.cat(
        [has] + [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).double() for p in params]
    )
    dist.all_reduce(flat)
    offset = len(params)
    for i, p in enumerate(params):
        n = p.numel()
        grad = flat[offset : offset + n].view_as(p).to(p.dtype)
        p.grad = grad.clone() if flat[i] > 0 else None
        offset += n


def chunked(
    objective: Objective,
    params: Sequence[torch.nn.Parameter],
    num_tasks: int,
    total: int,
    chunk: int,
    backward: bool,
) -> dict[str, float]:
    """The objective's values over the meta-batch, evaluated ``chunk`` of this Learner's
    ``num_tasks`` tasks at a time (0: all at once; every term is a mean over tasks, so the
    chunks' means weighted by their share of all ``total`` tasks add up to it; several
    Learners' parts are summed by an all-reduce); with ``backward``, the gradient of the PPO
    loss is accumulated chunk by chunk. Smaller chunks keep the intermediate tensors small: on
    this project's machines freshly mapped memory for large tensors cost more than the
    arithmetic (benchmarks/README.md)."""
    size = chunk or num_tasks
    totals: dict[str, float] = {}
    for start in range(0, num_tasks, size):
        part = slice(start, min(start + size, num_tasks))
        share = (part.stop - part.start) / total
        out = objective(create_graph=None if backward else False, tasks=part)
        if backward:
            (share * out[PPO]).backward()
        for k, v in out.items():
            totals[k] = totals.get(k, 0.0) + share * v.item()
    if world_size() > 1:
        if backward:
            all_reduce_gradients(params)
        keys = sorted(totals)
        values = torch.tensor([totals[k] for k in keys], dtype=torch.float64)
        dist.all_reduce(values)
        totals = dict(zip(keys, values.tolist(), strict=True))
    return totals


def ppo_update(
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.nn.Parameter],
    num_tasks: int,
    total: int,
    *,
    num_steps: int,
    chunk: int,
    kl_target: float,
    check: Callable[[], None],
) -> dict[str, float]:
    """``num_steps`` full-batch Adam steps on the PPO-clip loss (the gradient taken in chunks of
    tasks, :func:`chunked`); with ``kl_target`` > 0, then the iterate chosen by
    :func:`~tesp.meta.losses.best_iterate` (its policy surrogate, without the regularisers),
    Adam's moments not rolled back. ``check`` runs before every step (the gradients' finiteness)."""
    selecting = kl_target > 0
    values, snapshots = [], []
    for step in range(num_steps + 1):
        final = step == num_steps
        optimizer.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(not final):  # the last evaluation only reports
            values.append(chunked(objective, params, num_tasks, total, chunk, backward=not final))
        if selecting:
            snapshots.append([p.detach().clone() for p in params])
        if final:
            break
        check()
        optimizer.step()
    chosen = len(values) - 1
    if selecting:
        kls, losses = [v[KL] for v in values], [v[PPO_POLICY] for v in values]
        chosen = best_iterate(kls, losses, kl_target)
        with torch.no_grad():
            for p, value in zip(params, snapshots[chosen], strict=True):
                p.copy_(value)
    first, last = values[0], values[chosen]
    stats = {
        INNER_LOSS: first.get(INNER_LOSS, float("nan")),
        OUTER_LOSS_BEFORE: first[PPO],
        OUTER_LOSS_AFTER: last[PPO],
        KL: last[KL],
    }
    if selecting:
        stats[BEST_ITERATE] = chosen
    return stats | {k: v for k, v in last.items() if k not in CORE_TERMS}


def trpo_update(objective: Objective, params: Sequence[torch.nn.Parameter], cfg) -> dict[str, float]:
    """One TRPO step (:func:`~tesp.meta.trpo.trpo_step`) on the policy-gradient surrogate under
    the mean-KL trust region ``cfg.max_kl``."""
    first: dict[str, float] = {}
    latest: dict[str, float] = {}  # of the last evaluation (the accepted step, if any)

    def losses():
        out = objective()
        latest.update({k: v.item() for k, v in out.items()})
        first.update({} if first else latest)
        return out[PG], out[KL]

    result = trpo_step(
        params,
        losses,
        max_kl=cfg.max_kl,
        damping=cfg.cg_damping,
        cg_iters=cfg.cg_iters,
        backtrack_ratio=cfg.ls_backtrack_ratio,
        max_backtracks=cfg.ls_max_steps,
    )
    return {
        INNER_LOSS: first.get(INNER_LOSS, float("nan")),
        OUTER_LOSS_BEFORE: result.loss_before,
        OUTER_LOSS_AFTER: result.loss_after,
        KL: result.kl,
        TRPO_STEP_FRACTION: result.step_fraction,
    } | {k: v for k, v in latest.items() if k not in CORE_TERMS}
