"""Log-probabilities, KL divergences, entropies and draws of the policies' action distributions.

A diagonal Gaussian is given by its inputs ``[mean, log_std]`` (RLlib's ``TorchDiagGaussian``
layout), a categorical by its logits; every function works on any leading batch shape.
"""

from __future__ import annotations

import math

import torch


def gaussian_logp(dist_inputs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log N(a | mean, diag(exp(log_std))^2), summed over action dimensions."""
    mean, log_std = dist_inputs.chunk(2, dim=-1)
    z = (actions - mean) * torch.exp(-log_std)
    return -(0.5 * z.pow(2) + log_std).sum(-1) - 0.5 * mean.shape[-1] * math.log(2 * math.pi)


def gaussian_kl(p_inputs: torch.Tensor, q_inputs: torch.Tensor) -> torch.Tensor:
    """KL(p || q) between diagonal Gaussians given as ``[mean, log_std]``."""
    p_mean, p_log_std = p_inputs.chunk(2, dim=-1)
    q_mean, q_log_std = q_inputs.chunk(2, dim=-1)
    var_ratio = torch.exp(2 * (p_log_std - q_log_std))
    t = (p_mean - q_mean).pow(2) * torch.exp(-2 * q_log_std)
    return 0.5 * (var_ratio + t - 1).sum(-1) - (p_log_std - q_log_std).sum(-1)


def gaussian_entropy(dist_inputs: torch.Tensor) -> torch.Tensor:
    _, log_std = dist_inputs.chunk(2, dim=-1)
    return (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)


def sample_gaussian(dist_inputs: torch.Tensor, explore: bool) -> torch.Tensor:
    """A draw from the Gaussian (its mean when not exploring)."""
    mean, log_std = dist_inputs.chunk(2, dim=-1)
    return mean + torch.exp(log_std) * torch.randn_like(mean) if explore else mean


def categorical_logp(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits, -1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum(-1)


def sample_categorical(logits: torch.Tensor) -> torch.Tensor:
    """One draw per row from softmax(logits) (torch.distributions.Categorical builds and checks a
    distribution object per call, a visible cost at one call per env step)."""
    return torch.multinomial(torch.softmax(logits, -1), 1).squeeze(-1)
