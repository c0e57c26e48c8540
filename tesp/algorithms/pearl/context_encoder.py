"""PEARL's inference network (Rakelly et al. 2019, §4.1, Eq. 3-4): each transition of a task's
context c = {(s, a, r, s')} is mapped to a Gaussian factor Ψ(z | c_n) = N(μ_n, σ²_n); the posterior
q(z | c) ∝ Π_n Ψ(z | c_n) is their product, a Gaussian again (permutation invariant in c), and z
is drawn from it by reparametrisation. The KL to the prior N(0, I) is the information bottleneck
of Eq. 4."""

from __future__ import annotations

import torch
from torch import nn

MIN_VARIANCE = 1e-7  # a factor's variance floor (the product divides by it)


class ContextEncoder(nn.Module):
    """An MLP from one transition to a factor's mean and variance (softplus)."""

    def __init__(self, transition_dim: int, latent_dim: int, hidden: list[int]) -> None:
        super().__init__()
        layers, width = [], transition_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.net = nn.Sequential(*layers, nn.Linear(width, 2 * latent_dim))
        self.latent_dim = latent_dim

    def factors(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``context [T, N, transition_dim]`` -> per-transition means and variances ``[T, N, L]``."""
        out = self.net(context)
        mean, raw = out[..., : self.latent_dim], out[..., self.latent_dim :]
        return mean, nn.functional.softplus(raw).clamp_min(MIN_VARIANCE)

    def posterior(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The product of the context's factors: per task the mean and variance ``[T, L]``."""
        return product_of_gaussians(*self.factors(context))


def product_of_gaussians(mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Π_n N(μ_n, σ²_n) over the second-last axis: σ² = 1 / Σ 1/σ²_n, μ = σ² Σ μ_n/σ²_n."""
    precision = (1.0 / var).sum(dim=-2)
    post_var = 1.0 / precision
    return post_var * (mean / var).sum(dim=-2), post_var


def sample(mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """z ~ N(mean, var) by reparametrisation."""
    return mean + var.sqrt() * torch.randn_like(mean)


def kl_to_prior(mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, var) ‖ N(0, I)) per row, summed over the latent dimensions."""
    return 0.5 * (var + mean**2 - 1.0 - var.log()).sum(dim=-1)
