"""The meta-learner: inner adaptation and the outer (meta) update, as an RLlib TorchLearner.

The Algorithm calls two methods through ``LearnerGroup.foreach_learner``:

- :meth:`MetaLearner.adapt_tasks` takes one inner step per task on its newest batch and
  returns the adapted weights to sample the next round with (no graph is kept);
- :meth:`MetaLearner.meta_update` recomputes, for each task, the whole inner loop from the
  meta-parameters on the stored batches (keeping the graph when ``second_order``), evaluates
  the outer objective on the post-adaptation batch, and steps the meta-parameters with
  PPO-clip Adam steps or one TRPO step.

Methods differ only through the hooks :meth:`adapted_names`, :meth:`step_sizes`,
:meth:`inner_loss` and :meth:`outer_terms`; the loop itself is :mod:`tesp.meta.adaptation`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

from tesp.meta.adaptation import Params, StepSize, adapt
from tesp.meta.batch import TaskBatch
from tesp.meta.outer import policy_gradient_surrogate, ppo_clip_loss, trpo_step
from tesp.models.gaussian_mlp import GaussianMLPModule, gaussian_kl, gaussian_logp

logger = logging.getLogger(__name__)

TorchBatch = dict[str, torch.Tensor]


def normalize(adv: torch.Tensor) -> torch.Tensor:
    return (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)


class MetaLearner(TorchLearner):
    # -- hooks that distinguish methods --------------------------------------------------
    @property
    def policy(self) -> GaussianMLPModule:
        return self.module[DEFAULT_MODULE_ID].unwrapped()

    def meta_params(self) -> Params:
        """The parameters the inner loop starts from (theta)."""
        return self.policy.policy_params()

    def adapted_names(self) -> list[str]:
        """Which entries of :meth:`meta_params` the inner loop changes (MAML: all)."""
        return list(self.meta_params())

    def step_sizes(self) -> dict[str, StepSize]:
        """Inner step size per adapted parameter: the fixed ``inner_lr`` or learned, clamped rates."""
        names = self.adapted_names()
        if self.config.learn_step_sizes:
            bound = self.config.step_size_bound
            return {n: torch.clamp(self.policy.step_size(n), -bound, bound) for n in names}
        return {n: self.config.inner_lr for n in names}

    def _advantages(self, batch: TorchBatch) -> torch.Tensor:
        adv = batch["advantages"]
        return normalize(adv) if self.config.normalize_advantages else adv

    def inner_loss(self, params: Params, batch: TorchBatch) -> torch.Tensor:
        """VPG (REINFORCE with GAE): ``-mean_t log pi_theta(a_t|s_t) A_t`` (spec §1.2)."""
        logp = gaussian_logp(self.policy.dist_inputs(batch["obs"], params), batch["actions"])
        return -(logp * self._advantages(batch)).mean()

    def outer_terms(
        self, params: Params, batch: TorchBatch
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log pi_new, log pi_old, KL(pi_old || pi_new) per step) on the post-adaptation batch."""
        new = self.policy.dist_inputs(batch["obs"], params)
        logp = gaussian_logp(new, batch["actions"])
        logp_old = gaussian_logp(batch["dist_inputs"], batch["actions"])
        return logp, logp_old, gaussian_kl(batch["dist_inputs"], new)

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        # RLlib's single-level `Learner.update()` has no meaning here: the bi-level update
        # needs every task's stage batches at once (see `meta_update`).
        raise NotImplementedError("MetaLearner is updated through meta_update(), not update()")

    # -- called by the Algorithm ---------------------------------------------------------
    def runner_weights(self, params: Params) -> dict[str, np.ndarray]:
        """The inference-only RLModule state an EnvRunner needs to act with ``params``.

        Copies: a view of live parameters would change under the caller at the next step.
        """
        return {f"pi.{k}": v.detach().cpu().numpy().copy() for k, v in params.items()}

    def initial_weights(self) -> dict[str, np.ndarray]:
        return self.runner_weights(self.meta_params())

    def adapt_tasks(
        self, weights: Mapping[int, Mapping[str, np.ndarray]], batches: Mapping[int, TaskBatch]
    ) -> tuple[dict[int, dict[str, np.ndarray]], float]:
        """One inner step per task from its current ``weights``; returns new weights and mean inner loss."""
        out, losses = {}, []
        sizes = self.step_sizes()
        for task_id, batch in batches.items():
            params = {
                k: torch.as_tensor(weights[task_id][f"pi.{k}"]).requires_grad_(True)
                for k in self.meta_params()
            }
            adapted, step_losses = adapt(
                self.inner_loss,
                params,
                [batch.to_torch()],
                self.adapted_names(),
                {k: (v.detach() if torch.is_tensor(v) else v) for k, v in sizes.items()},
                self.config.inner_grad_clip,
                create_graph=False,
            )
            out[task_id] = self.runner_weights(adapted)
            losses.append(step_losses[0].item())
        return out, float(np.mean(losses))

    def meta_update(self, task_batches: Sequence[Sequence[TaskBatch]]) -> dict[str, float]:
        """Update the meta-parameters from each task's batches ``[D_0, ..., D_K]`` (D_K: post-adaptation)."""
        data = [[b.to_torch() for b in batches] for batches in task_batches]
        cfg = self.config
        stats = self._trpo_update(data) if cfg.outer_optimizer == "trpo" else self._ppo_update(data)
        self._weights_seq_no += 1  # EnvRunners only accept weights with a newer seq no.
        if cfg.learn_step_sizes:
            sizes = torch.cat([s.reshape(-1) for s in self.step_sizes().values()])
            stats["step_size_mean"] = float(sizes.mean())
            stats["step_size_abs_max"] = float(sizes.abs().max())
        return stats

    # -- outer objectives --------------------------------------------------------------
    def _objective(self, data, surrogate: str, create_graph: bool | None = None) -> dict[str, torch.Tensor]:
        """Mean over tasks of the outer loss and KL, recomputing each task's inner loop."""
        cfg = self.config
        create_graph = cfg.second_order if create_graph is None else create_graph
        theta, names, sizes = self.meta_params(), self.adapted_names(), self.step_sizes()
        losses, kls, inner = [], [], []
        for batches in data:
            adapted, inner_losses = adapt(
                self.inner_loss, theta, batches[:-1], names, sizes, cfg.inner_grad_clip, create_graph
            )
            logp, logp_old, kl = self.outer_terms(adapted, batches[-1])
            adv = self._advantages(batches[-1])
            if surrogate == "ppo":
                losses.append(ppo_clip_loss(logp, logp_old, adv, cfg.clip_param))
            else:
                losses.append(policy_gradient_surrogate(logp, logp_old, adv))
            kls.append(kl.mean())
            inner.extend(inner_losses)
        return {
            "loss": torch.stack(losses).mean(),
            "kl": torch.stack(kls).mean(),
            "inner_loss": torch.stack(inner).mean() if inner else torch.zeros(()),
        }

    def _ppo_update(self, data) -> dict[str, float]:
        optimizer = self.get_optimizer()
        first = None
        for _ in range(self.config.num_outer_steps):
            out = self._objective(data, "ppo")
            first = first or {k: v.item() for k, v in out.items()}
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            optimizer.step()
        last = self._objective(data, "ppo", create_graph=False)
        return {
            "inner_loss": first["inner_loss"],
            "outer_loss_before": first["loss"],
            "outer_loss_after": last["loss"].item(),
            "kl": last["kl"].item(),
        }

    def _trpo_update(self, data) -> dict[str, float]:
        cfg = self.config
        params = [p for p in self.policy.parameters() if p.requires_grad]
        inner_loss = []

        def objective():
            out = self._objective(data, "pg")
            inner_loss.append(out["inner_loss"].item())
            return out["loss"], out["kl"]

        result = trpo_step(
            params,
            objective,
            max_kl=cfg.max_kl,
            damping=cfg.cg_damping,
            cg_iters=cfg.cg_iters,
            backtrack_ratio=cfg.ls_backtrack_ratio,
            max_backtracks=cfg.ls_max_steps,
        )
        return {
            "inner_loss": inner_loss[0],
            "outer_loss_before": result.loss_before,
            "outer_loss_after": result.loss_after,
            "kl": result.kl,
            "trpo_step_fraction": result.step_fraction,
        }
