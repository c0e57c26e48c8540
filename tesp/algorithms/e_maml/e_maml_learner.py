"""E-MAML's outer loss: MAML's plus ``e_maml_coeff`` times the exploration term.

For task i with pre-update steps ``(s_t, a_t)`` (the first stage's episodes, the ones theta
itself sampled) and post-update episodes of mean return ``R_i``::

    term = -mean_i [ c_i * mean_t rho_t ],   rho_t = pi_theta(a_t | s_t) / pi_old(a_t | s_t),
    c_i = (R_i - mean_j R_j) / (std_j R_j + 1e-8)

At theta = theta_old its gradient is ``-mean_i c_i mean_t grad log pi_theta(a_t | s_t)``, the
score-function estimate of ``grad E[R(tau')]`` through the pre-update sampling (Stadie et al.
2018, eq. 4), per step rather than per episode (a constant factor) and with the meta-batch's
mean return as its baseline. With K > 1 inner steps the later stages, sampled by partly adapted
policies, are not scored (their sampling depends on theta only through the inner steps). The credits are computed once per meta-update from the whole
meta-batch of this Learner (:meth:`EMAMLLearner.prepare_stages`; with several Learners, of each
Learner's shard), so chunking the outer loss over tasks does not change them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.func import vmap

from tesp.meta.losses import masked_mean
from tesp.meta.meta_learner import MetaLearner, TorchBatch
from tesp.nn.distributions import gaussian_logp
from tesp.nn.params import Params

CREDIT = "e_maml_credit"  # [T, N]: the task's standardised post-update return, on every step


def post_update_credit(post: TorchBatch, episodes: int) -> torch.Tensor:
    """Each task's mean post-update episode return, standardised over the tasks, ``[T]``."""
    returns = (post["rewards"] * post["mask"]).sum(1) / episodes
    if len(returns) < 2:
        return torch.zeros_like(returns)
    return (returns - returns.mean()) / (returns.std(unbiased=False) + 1e-8)


def exploration_term(logp: torch.Tensor, logp_old: torch.Tensor, credit: torch.Tensor, mask: torch.Tensor):
    """``-mean_t(rho_t) * c`` of one task's pre-update steps (``credit`` holds c on every step)."""
    return -masked_mean(torch.exp(logp - logp_old) * credit, mask)


class EMAMLLearner(MetaLearner):
    def prepare_stages(self, stages: Sequence[TorchBatch]) -> list[TorchBatch]:
        credit = post_update_credit(stages[-1], self.config.episodes_per_task)
        first = stages[0] | {CREDIT: credit[:, None].expand_as(stages[0]["mask"])}
        return [first, *stages[1:]]

    def prior_terms(self, theta: Params, stages: Sequence[TorchBatch]) -> dict[str, torch.Tensor]:
        def task_term(params: Params, batch: TorchBatch) -> torch.Tensor:
            latent = self.policy.task_latent(params, batch)
            logp = gaussian_logp(self.policy.dist_inputs(batch["obs"], params, latent), batch["actions"])
            logp_old = gaussian_logp(batch["dist_inputs"], batch["actions"])
            return exploration_term(logp, logp_old, batch[CREDIT], batch["mask"])

        term = vmap(task_term)(theta, stages[0]).mean()
        return {"e_maml_term": term, "penalty": self.config.e_maml_coeff * term}
