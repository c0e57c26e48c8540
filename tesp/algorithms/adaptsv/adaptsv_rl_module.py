"""AdaptSV's policy: the Gaussian MLP reading ``[obs, z]``, with ``z`` (``latent``, the
``latent`` parameter group) a meta-learned vector initialised to a random direction of norm
``latent_init_norm`` (normc(0.01), as the TESP release initialises it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from tesp.models.gaussian_policy import GaussianPolicyModule


class AdaptSVRLModule(GaussianPolicyModule):
    DEFAULT_MODEL_CONFIG: ClassVar[dict[str, Any]] = {
        **GaussianPolicyModule.DEFAULT_MODEL_CONFIG,
        "latent_dim": 8,
        "latent_init_norm": 0.01,
    }
    PARAM_GROUPS = ("policy", "latent")

    def latent_input_dim(self, cfg: Mapping[str, Any]) -> int:
        return int(cfg["latent_dim"])

    def setup_latent(self, cfg: Mapping[str, Any]) -> None:
        latent = torch.randn(self.latent_dim)
        self.latent = nn.Parameter(latent * float(cfg["latent_init_norm"]) / latent.norm())

    def param_group(self, name: str) -> str:
        return "latent" if name == "latent" else super().param_group(name)

    def task_latent(self, params, batch):
        return params["latent"]

    def default_latent(self, params):
        return self.latent if params is None else params["latent"]
