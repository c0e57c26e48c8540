"""Meta-SGD's policy: MAML's Gaussian MLP; the module holds one learned step size per policy
weight (``step_sizes``, created because the config sets ``learn_step_sizes``)."""

from __future__ import annotations

from tesp.models.gaussian_policy import GaussianPolicyModule


class MetaSGDRLModule(GaussianPolicyModule):
    pass
