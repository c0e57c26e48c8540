"""MAESN's losses (Gupta et al. 2018, Algorithm 1): the engine's, with the task latent
``z = mu_i + sigma_i * eps`` reparameterised through the recorded per-episode noise, plus
``latent_prior_coeff * KL(N(mu_i, sigma_i^2) || N(0, I))`` on each task's *pre-adaptation*
latent distribution."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tesp.meta.meta_learner import MetaLearner, TorchBatch
from tesp.nn.distributions import gaussian_kl
from tesp.nn.params import Params


def latent_prior_kl(theta: Params) -> torch.Tensor:
    """``KL(N(mu_i, sigma_i^2) || N(0, I))`` of every task's latent distribution, ``[T]``."""
    dist = torch.cat([theta["latent_mean"], theta["latent_log_std"]], dim=-1)
    return gaussian_kl(dist, torch.zeros_like(dist))


class MAESNLearner(MetaLearner):
    def task_penalties(self, params: Params, latent: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return {"embedding_norm": params["latent_mean"].norm()}  # logged only

    def prior_terms(self, theta: Params, stages: Sequence[TorchBatch]) -> dict[str, torch.Tensor]:
        kl = latent_prior_kl(theta).mean()
        return {"latent_prior_kl": kl, "penalty": self.config.latent_prior_coeff * kl}
