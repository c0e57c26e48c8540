"""Outer (meta) objectives and the TRPO step.

- PPO-clip surrogate (Schulman et al. 2017, eq. 7), the TESP reference's outer loss (spec §1.3),
  and PPO's clipped value loss.
- TRPO (Schulman et al. 2015, appendix C), the MAML paper's outer step: the search direction
  solves ``F x = g`` by conjugate gradient with Hessian-vector products of the mean KL, then a
  backtracking line search keeps the step whose surrogate improves and whose KL stays below
  ``max_kl``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    return x.mean() if mask is None else (x * mask).sum() / mask.sum()


def ppo_clip_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    adv: torch.Tensor,
    clip: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``-mean(min(rho A, clip(rho, 1-eps, 1+eps) A))`` with ``rho = exp(logp - logp_old)``."""
    ratio = torch.exp(logp - logp_old)
    return -masked_mean(torch.min(ratio * adv, torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * adv), mask)


def clipped_value_loss(
    values: torch.Tensor, values_old: torch.Tensor, targets: torch.Tensor, clip: float
) -> torch.Tensor:
    """PPO's value loss with the prediction's change clipped to ``+-clip`` (the OpenAI baselines
    form): ``0.5 mean(max((v - R)^2, (v_old + clip(v - v_old) - R)^2))``."""
    clipped = values_old + torch.clamp(values - values_old, -clip, clip)
    return 0.5 * torch.max((values - targets).pow(2), (clipped - targets).pow(2)).mean()


def policy_gradient_surrogate(
    logp: torch.Tensor, logp_old: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """TRPO's importance-sampled surrogate ``-mean(rho A)``."""
    return -masked_mean(torch.exp(logp - logp_old) * adv, mask)


def best_iterate(kls: Sequence[float], losses: Sequence[float], kl_target: float) -> int:
    """The TESP release's choice among the outer iterates w_0..w_S (Lan et al. 2019): the one with
    the lowest surrogate loss among those whose mean KL(pi_old || pi_w) is below ``kl_target``.
    w_0, the start, has KL 0 and always qualifies; so the choice can undo every step."""
    ok = [i for i, kl in enumerate(kls) if kl < kl_target] or [0]
    return min(ok, key=lambda i: losses[i])


def flat_grad(
    output: torch.Tensor,
    params: Sequence[torch.Tensor],
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> torch.Tensor:
    grads = torch.autograd.grad(
        output, params, create_graph=create_graph, retain_graph=retain_graph, allow_unused=True
    )
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads, strict=True)]
    )


def hessian_vector_product(
    output: torch.Tensor, params: Sequence[torch.Tensor], damping: float = 0.0
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return ``v -> (H + damping I) v`` with ``H`` the Hessian of ``output`` w.r.t. ``params``.

    The gradient graph is built once and reused for every product (Pearlmutter's trick).
    """
    grad = flat_grad(output, params, create_graph=True)

    def hvp(vector: torch.Tensor) -> torch.Tensor:
        return flat_grad(grad @ vector, params, retain_graph=True) + damping * vector

    return hvp


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int = 10, tol: float = 1e-10
) -> torch.Tensor:
    """Approximately solve ``A x = b`` for symmetric positive-definite ``A`` given as ``matvec``."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < tol:
            break
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


@dataclass
class TRPOResult:
    loss_before: float
    loss_after: float
    kl: float
    step_fraction: float  # 0 when the line search rejected every step


@torch.no_grad()
def _assign(params: Sequence[torch.Tensor], flat: torch.Tensor) -> None:
    i = 0
    for p in params:
        n = p.numel()
        p.copy_(flat[i : i + n].view_as(p))
        i += n


def trpo_step(
    params: Sequence[torch.Tensor],
    objective: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    max_kl: float,
    damping: float = 1e-5,
    cg_iters: int = 10,
    backtrack_ratio: float = 0.5,
    max_backtracks: int = 15,
) -> TRPOResult:
    """One TRPO update of ``params`` in place.

    ``objective()`` returns ``(loss, kl)`` at the current parameters; ``loss`` is minimised
    subject to ``kl <= max_kl``, with ``kl`` measured from the sampling policy (so it is 0,
    with zero gradient, before the step).
    """
    loss, kl = objective()
    grad = flat_grad(loss, params, retain_graph=True)
    fvp = hessian_vector_product(kl, params, damping)
    direction = conjugate_gradient(fvp, grad, iters=cg_iters).detach()
    shs = 0.5 * (direction @ fvp(direction))
    # The largest step along `direction` whose quadratic KL model equals max_kl.
    full_step = torch.sqrt(max_kl / (shs + 1e-12)) * direction
    old = torch.cat([p.detach().reshape(-1) for p in params])
    loss_before = float(loss)
    fraction = 1.0
    # No torch.no_grad() here: a second-order objective differentiates its inner loop.
    for _ in range(max_backtracks):
        _assign(params, old - fraction * full_step)
        new_loss, new_kl = (float(v) for v in objective())
        if new_loss < loss_before and new_kl <= max_kl:
            return TRPOResult(loss_before, new_loss, new_kl, fraction)
        fraction *= backtrack_ratio
    _assign(params, old)
    return TRPOResult(loss_before, loss_before, 0.0, 0.0)
