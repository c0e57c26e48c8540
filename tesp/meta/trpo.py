"""TRPO's step (Schulman et al. 2015, appendix C), the MAML paper's outer update.

The search direction solves ``F x = g`` by conjugate gradient with Hessian-vector products of the
mean KL (Pearlmutter's trick), then a backtracking line search keeps the first step whose
surrogate improves and whose KL stays below ``max_kl``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


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
    loss_before = float(loss.detach())
    fraction = 1.0
    # No torch.no_grad() here: a second-order objective differentiates its inner loop.
    for _ in range(max_backtracks):
        _assign(params, old - fraction * full_step)
        new_loss, new_kl = (float(v.detach()) for v in objective())
        if new_loss < loss_before and new_kl <= max_kl:
            return TRPOResult(loss_before, new_loss, new_kl, fraction)
        fraction *= backtrack_ratio
    _assign(params, old)
    return TRPOResult(loss_before, loss_before, 0.0, 0.0)
