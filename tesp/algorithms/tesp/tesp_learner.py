"""TESP's losses (Lan et al. 2019): the engine's, with the task latent the encoder's embedding of
the task's episode buffer (the stage's context), plus ``eta * mean_j z_j^2`` on the embedding
under the adapted encoder. The learner also computes the ``z`` each EnvRunner samples with."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.utils.annotations import override

from tesp.algorithms.tesp.episode_buffer import EpisodeBuffer, stack_buffers
from tesp.meta.losses import embedding_penalty
from tesp.meta.meta_learner import MetaLearner, TorchBatch
from tesp.nn.params import Params


class TESPLearner(MetaLearner):
    @override(TorchLearner)
    def build(self) -> None:
        super().build()
        # The fused GRU recurrence has a first-order backward; a second-order meta-gradient
        # differentiates the inner gradient again, through the step-by-step autograd loop.
        self.policy.encoder.fused = not self.config.second_order

    def task_penalties(self, params: Params, latent: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return embedding_penalty(latent, self.config.embedding_reg_coeff)

    def context_inputs(self, contexts: Sequence[EpisodeBuffer]) -> TorchBatch:
        return stack_buffers(contexts)

    def runner_state(self, params: Params, context: EpisodeBuffer | None) -> Params:
        """The shared policy and ``latent = z(B)`` (an empty or no buffer: z = 0)."""
        if context is None or len(context) == 0:
            latent = torch.zeros(self.policy.latent_dim)
        else:
            stacked = stack_buffers([context])
            latent = self.policy.task_latent(params, {k: v[0] for k, v in stacked.items()})
        return self.policy.inference_state(params) | {"latent": latent}
