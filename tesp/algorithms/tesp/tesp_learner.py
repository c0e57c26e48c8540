"""TESP's losses (Lan et al. 2019): the engine's, with the task latent the encoder's embedding of
the task's episode buffer (the stage's context), plus ``eta * mean_j z_j^2`` on the embedding
under the adapted encoder. The learner also computes the ``z`` each EnvRunner samples with."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.utils.annotations import override
from torch.func import vmap

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

    def runner_states(self, params: Params, contexts: Sequence[EpisodeBuffer] | None) -> list[Params]:
        """The shared policy and ``latent = z(B)`` per task, all tasks' encoders in one call
        (an empty or no buffer: z = 0)."""
        num = len(next(iter(params.values())))
        if contexts is None:
            latents = torch.zeros(num, self.policy.latent_dim)
        else:
            latents = vmap(self.policy.task_latent)(params, stack_buffers(contexts))
        return [
            self.policy.inference_state({k: v[t] for k, v in params.items()}) | {"latent": latents[t]}
            for t in range(num)
        ]
