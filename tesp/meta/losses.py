"""Policy-gradient losses, and the choice among outer iterates.

- PPO-clip surrogate (Schulman et al. 2017, eq. 7), the outer loss of Lan et al. 2019's TESP,
  and PPO's clipped value loss;
- the embedding regulariser of TESP and AdaptSV;
- TRPO's importance-sampled surrogate (Schulman et al. 2015, eq. 14), the MAML paper's outer loss;
- the TESP release's KL-gated selection of the best outer iterate (docs/original_release.md).
"""

from __future__ import annotations

from collections.abc import Sequence

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


def embedding_penalty(z: torch.Tensor, eta: float) -> dict[str, torch.Tensor]:
    """The outer-loss regulariser ``eta * mean_j z_j^2`` on a task embedding (Lan et al. 2019),
    as a learner's ``task_penalties``: the ``penalty``, and the same value and ``||z||`` logged."""
    reg = eta * z.pow(2).mean()
    return {"penalty": reg, "regularizer": reg, "embedding_norm": z.norm()}


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
