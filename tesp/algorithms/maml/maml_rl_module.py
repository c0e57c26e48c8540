"""MAML's policy: the engine's Gaussian MLP, every weight in the ``policy`` group that the
inner loop adapts; no task latent."""

from __future__ import annotations

from tesp.models.gaussian_policy import GaussianPolicyModule


class MAMLRLModule(GaussianPolicyModule):
    pass
