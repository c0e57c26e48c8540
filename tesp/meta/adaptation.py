"""The inner (fast) adaptation loop, shared by every gradient-based method, batched over tasks.

One inner step on task data ``D`` (Finn et al. 2017, eq. 1; Li et al. 2017, Meta-SGD eq. 3):

    g = clip_global_norm(grad_theta L_in(theta; D), c)
    theta' = theta - alpha (.) g

``alpha`` is a float (MAML) or a tensor per adapted parameter (Meta-SGD, AdaptSV, TESP),
clamped to ``[-bound, bound]`` by the caller (docs/original_release.md#inner-step). Which parameters are adapted is a
list of names, so MAML (all policy weights), AdaptSV (a latent vector) and TESP (the encoder)
all run this same code.

All T tasks of a meta-batch adapt at once: every parameter carries a leading task dimension
``[T, ...]`` and ``loss_fn`` returns the T per-task losses (typically a ``torch.func.vmap`` of a
single-task loss). Because task t's loss depends only on row t, the gradient of the summed
losses is every task's own gradient. With ``create_graph=True`` the meta-gradient flows
through the inner steps (second order); with ``create_graph=False`` the inner gradients are
constants (first order, the original TESP code), and only the direct paths
``theta' = theta - alpha g`` are differentiated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

Params = dict[str, torch.Tensor]
LossFn = Callable[[Params, object], torch.Tensor]
StepSize = float | torch.Tensor


def clip_by_global_norm(
    grads: Sequence[torch.Tensor], max_norm: float | None
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per task (leading dim), scale ``grads`` so their joint L2 norm is at most ``max_norm``.

    Returns the clipped gradients and the ``[T]`` norms before clipping.
    """
    squared = sum(g.pow(2).flatten(1).sum(1) for g in grads)
    if max_norm is None or max_norm <= 0:
        return list(grads), torch.sqrt(squared)
    # d sqrt(x)/dx is infinite at x = 0 (an exactly zero inner gradient, e.g. a task whose
    # advantages are all 0), and 0 * inf = NaN in a second-order meta-gradient; below the tiny
    # floor the clamp passes no gradient, and the scale is 1 there anyway.
    norm = torch.sqrt(torch.clamp(squared, min=1e-30))
    scale = torch.clamp(max_norm / norm, max=1.0)
    return [g * scale.view(-1, *([1] * (g.dim() - 1))) for g in grads], norm


def inner_step(
    loss_fn: LossFn,
    params: Params,
    batch: object,
    adapted: Sequence[str],
    step_sizes: Mapping[str, StepSize],
    grad_clip: float | None,
    create_graph: bool,
) -> tuple[Params, torch.Tensor, list[torch.Tensor]]:
    """One clipped gradient step per task on the ``adapted`` entries.

    Returns (params', the [T] losses, the clipped gradients of the ``adapted`` entries).
    """
    losses = loss_fn(params, batch)
    grads = torch.autograd.grad(losses.sum(), [params[n] for n in adapted], create_graph=create_graph)
    grads, _ = clip_by_global_norm(grads, grad_clip)
    new = dict(params)
    for name, g in zip(adapted, grads, strict=True):
        new[name] = params[name] - step_sizes[name] * g
    return new, losses, grads


def adapt(
    loss_fn: LossFn,
    params: Params,
    batches: Sequence[object],
    adapted: Sequence[str],
    step_sizes: Mapping[str, StepSize],
    grad_clip: float | None,
    create_graph: bool,
) -> tuple[Params, list[torch.Tensor]]:
    """``len(batches)`` inner steps, step k on ``batches[k]``; returns the adapted params and losses."""
    losses = []
    for batch in batches:
        params, loss, _ = inner_step(loss_fn, params, batch, adapted, step_sizes, grad_clip, create_graph)
        losses.append(loss)
    return params, losses
