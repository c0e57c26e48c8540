"""AdaptSV's losses: the engine's, plus ``eta * mean_j z'_j^2`` on each task's adapted latent."""

from __future__ import annotations

import torch

from tesp.meta.losses import embedding_penalty
from tesp.meta.meta_learner import MetaLearner
from tesp.nn.params import Params


class AdaptSVLearner(MetaLearner):
    def task_penalties(self, params: Params, latent: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return embedding_penalty(latent, self.config.embedding_reg_coeff)
