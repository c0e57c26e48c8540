"""PEARL's networks (Rakelly et al. 2019, §4): RLlib's SAC module (policy, twin Q and their
targets) over the observation followed by z, and the context encoder
(:class:`~tesp.algorithms.pearl.context_encoder.ContextEncoder`).

Sampling: the env appends z to the observation (:class:`~tesp.algorithms.pearl.latent_env.LatentEnv`),
so the SAC module acts on it as on any observation. Training (:meth:`PEARLModule._forward_train`):
the batch holds the raw observations, a context ``[T, N, dim]`` per task of the meta-batch and
each row's task; z is drawn from each task's posterior and appended here, with the gradient
paths of the paper (§4.2 and the authors' release): the critic's inputs carry z with its
gradient (the Bellman error trains the encoder), the actor's and the target's a detached z."""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.algorithms.sac.sac_learner import ACTION_DIST_INPUTS_NEXT, QF_PREDS, QF_TWIN_PREDS
from ray.rllib.algorithms.sac.torch.default_sac_torch_rl_module import DefaultSACTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.core.models.base import ENCODER_OUT
from torch import nn

from tesp.algorithms.pearl.context_encoder import ContextEncoder, kl_to_prior, sample

CONTEXT = "context"  # [T, N, transition dim]: the meta-batch's tasks' context transitions
TASK = "task"  # [B]: each row's task in the meta-batch
KL = "kl"  # sum over the meta-batch's tasks of KL(q(z | c) || N(0, I))


class ConcatQEncoder(nn.Module):
    """The release's critic body: one MLP on the concatenated (s, z) and a, instead of RLlib's
    two streams fused by more layers (1.2M parameters at 3 x 300, 2.4 s per gradient step
    against 1.4 s with this body, measured here; its head maps the last layer to Q)."""

    def __init__(self, in_dim: int, hidden: list[int], activation: str) -> None:
        super().__init__()
        act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
        layers, width = [], in_dim
        for size in hidden:
            layers += [nn.Linear(width, size), act()]
            width = size
        self.net = nn.Sequential(*layers)

    def forward(self, batch: dict) -> dict:
        return {ENCODER_OUT: self.net(torch.cat([batch[Columns.OBS], batch[Columns.ACTIONS]], dim=-1))}


class PEARLModule(DefaultSACTorchRLModule):
    def setup(self) -> None:
        super().setup()
        cfg = self.model_config
        if not self.inference_only:
            q_in = self.observation_space.shape[0] + self.action_space.shape[0]
            hidden, activation = list(cfg["fcnet_hiddens"]), cfg.get("fcnet_activation", "relu")
            self.qf_encoder = ConcatQEncoder(q_in, hidden, activation)
            if self.twin_q:
                self.qf_twin_encoder = ConcatQEncoder(q_in, hidden, activation)
        self.latent_dim = int(cfg["latent_size"])
        self.obs_dim = self.observation_space.shape[0] - self.latent_dim
        act = self.action_space.shape[0]
        transition = self.obs_dim + act + 1 + (self.obs_dim if cfg["next_obs_in_context"] else 0)
        self.context_encoder = ContextEncoder(transition, self.latent_dim, list(cfg["encoder_hiddens"]))

    @torch.no_grad()
    def infer_latent(self, context: torch.Tensor | None, n: int) -> torch.Tensor:
        """``n`` draws of z: from the prior N(0, I) without context, else from the posterior of
        the one task's ``context [N, dim]``."""
        if context is None or len(context) == 0:
            return torch.randn(n, self.latent_dim)
        mean, var = self.context_encoder.posterior(context[None])
        return sample(mean.expand(n, -1), var.expand(n, -1))

    def _forward_train(self, batch: dict[str, Any]) -> dict[str, Any]:
        mean, var = self.context_encoder.posterior(batch[CONTEXT])
        z = sample(mean, var)[batch[TASK]]
        obs, next_obs, actions = batch[Columns.OBS], batch[Columns.NEXT_OBS], batch[Columns.ACTIONS]
        with_z = torch.cat([obs, z], dim=-1)  # the critic's: trains the encoder
        obs_pi = torch.cat([obs, z.detach()], dim=-1)
        next_pi = torch.cat([next_obs, z.detach()], dim=-1)
        out = {KL: kl_to_prior(mean, var).sum()}

        q_in = {Columns.OBS: with_z, Columns.ACTIONS: actions}
        out[QF_PREDS] = self._qf_forward_train_helper(q_in, self.qf_encoder, self.qf)
        if self.twin_q:
            out[QF_TWIN_PREDS] = self._qf_forward_train_helper(q_in, self.qf_twin_encoder, self.qf_twin)

        logits = self.pi(self.pi_encoder({Columns.OBS: obs_pi})[ENCODER_OUT])
        logits_next = self.pi(self.pi_encoder({Columns.OBS: next_pi})[ENCODER_OUT])
        out[Columns.ACTION_DIST_INPUTS] = logits
        out[ACTION_DIST_INPUTS_NEXT] = logits_next
        dist_cls = self.get_train_action_dist_cls()
        resampled, out["logp_resampled"] = dist_cls.from_logits(logits).rsample_and_logp()
        next_actions, logp_next = dist_cls.from_logits(logits_next).sample_and_logp()
        out["logp_next_resampled"] = logp_next.detach()

        # The actor's Q: gradients into the resampled actions only (RLlib's SAC does the same).
        critics = [*self.qf.parameters(), *self.qf_encoder.parameters()]
        if self.twin_q:
            critics += [*self.qf_twin.parameters(), *self.qf_twin_encoder.parameters()]
        for p in critics:
            p.requires_grad = False
        out["q_curr"] = self.compute_q_values({Columns.OBS: obs_pi, Columns.ACTIONS: resampled})
        for p in critics:
            p.requires_grad = True
        target_in = {Columns.OBS: next_pi, Columns.ACTIONS: next_actions.detach()}
        out["q_target_next"] = self.forward_target(target_in).detach()
        return out
