"""TESP's networks (Lan et al. 2019): the shared Gaussian MLP policy reading ``[obs, z]`` and the
task encoder (``encoder``, the ``encoder`` parameter group, learner only) that computes ``z``
from a task's episode buffer. EnvRunners hold ``z`` in the ``latent`` buffer, which the learner
fills for each task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch.func import functional_call

from tesp.algorithms.tesp.episode_buffer import encoder_input_dim
from tesp.algorithms.tesp.task_encoder import TaskEncoder
from tesp.models.gaussian_policy import GaussianPolicyModule


class TESPRLModule(GaussianPolicyModule):
    DEFAULT_MODEL_CONFIG: ClassVar[dict[str, Any]] = {
        **GaussianPolicyModule.DEFAULT_MODEL_CONFIG,
        "latent_dim": 8,  # d
        "encoder_units": 256,  # GRU width
        "encoder_inputs": "distribution",  # set by TESPConfig.encoder_inputs
    }
    PARAM_GROUPS = ("policy", "encoder")

    def latent_input_dim(self, cfg: Mapping[str, Any]) -> int:
        return int(cfg["latent_dim"])

    def setup_latent(self, cfg: Mapping[str, Any]) -> None:
        self.register_buffer("latent", torch.zeros(self.latent_dim))
        self.encoder = TaskEncoder(
            encoder_input_dim(self.obs_dim, self.act_dim, cfg["encoder_inputs"]),
            int(cfg["encoder_units"]),
            self.latent_dim,
        )

    def param_group(self, name: str) -> str:
        return "encoder" if name.startswith("encoder.") else super().param_group(name)

    def task_latent(self, params, batch):
        """The encoder's embedding ``[d]`` of the task's buffer (``batch["buffer_inputs"]``,
        ``batch["buffer_mask"]``) under the encoder parameters in ``params``."""
        enc = {k[len("encoder.") :]: v for k, v in params.items() if k.startswith("encoder.")}
        return functional_call(self.encoder, enc, (batch["buffer_inputs"], batch["buffer_mask"]))

    def default_latent(self, params):
        return self.latent if params is None else params["latent"]

    def get_non_inference_attributes(self) -> list[str]:
        return [*super().get_non_inference_attributes(), "encoder"]
