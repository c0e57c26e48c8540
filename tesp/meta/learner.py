"""The meta-learner: inner adaptation and the outer (meta) update, as an RLlib TorchLearner.

The Algorithm calls two methods through ``LearnerGroup.foreach_learner``:

- :meth:`MetaLearner.adapt_tasks` takes one inner step per task on its newest batch and
  returns the adapted weights to sample the next round with (no graph is kept);
- :meth:`MetaLearner.meta_update` recomputes every task's inner loop from the
  meta-parameters on the stored batches (keeping the graph when ``second_order``), evaluates
  the outer objective on the post-adaptation batches, and steps the meta-parameters with
  PPO-clip Adam steps or one TRPO step.

All tasks are processed together (``torch.func.vmap`` over a leading task dimension). Methods
differ only through the hooks :meth:`adapted_names`, :meth:`step_sizes`,
:meth:`task_inner_loss` and :meth:`task_outer_terms`, written for a single task; the loop
itself is :mod:`tesp.meta.adaptation`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from torch.func import vmap

from tesp.meta.adaptation import Params, StepSize, adapt, per_task
from tesp.meta.batch import TaskBatch, stack_tasks
from tesp.meta.outer import masked_mean, policy_gradient_surrogate, ppo_clip_loss, trpo_step
from tesp.models.gaussian_mlp import GaussianMLPModule, gaussian_kl, gaussian_logp

logger = logging.getLogger(__name__)

TorchBatch = dict[str, torch.Tensor]
Weights = dict[str, np.ndarray]


class MetaLearner(TorchLearner):
    # -- hooks that distinguish methods (single task; vmapped over tasks) -----------------
    @property
    def policy(self) -> GaussianMLPModule:
        return self.module[DEFAULT_MODULE_ID].unwrapped()

    def meta_params(self) -> Params:
        """The parameters the inner loop starts from (theta)."""
        return self.policy.meta_params()

    def adapted_names(self) -> list[str]:
        """Which entries of :meth:`meta_params` the inner loop changes (MAML: all; AdaptSV: the latent)."""
        return self.policy.adapted_names()

    def step_sizes(self) -> dict[str, StepSize]:
        """Inner step size per adapted parameter: the fixed ``inner_lr`` or learned, clamped rates."""
        names = self.adapted_names()
        if self.config.learn_step_sizes:
            bound = self.config.step_size_bound
            return {n: torch.clamp(self.policy.step_size(n), -bound, bound) for n in names}
        return {n: self.config.inner_lr for n in names}

    def advantages(self, batch: TorchBatch) -> torch.Tensor:
        adv, mask = batch["advantages"], batch["mask"]
        if not self.config.normalize_advantages:
            return adv
        mean = masked_mean(adv, mask)
        std = torch.sqrt(masked_mean((adv - mean) ** 2, mask))
        return (adv - mean) / (std + 1e-8)

    def task_inner_loss(self, params: Params, batch: TorchBatch) -> torch.Tensor:
        """VPG (REINFORCE with GAE): ``-mean_t log pi_theta(a_t|s_t) A_t`` (spec §1.2)."""
        logp = gaussian_logp(self.policy.dist_inputs(batch["obs"], params), batch["actions"])
        return -masked_mean(logp * self.advantages(batch), batch["mask"])

    def task_embedding(self, params: Params, batch: TorchBatch) -> torch.Tensor | None:
        """The task embedding the policy is conditioned on, if any (AdaptSV: the adapted latent)."""
        return params.get("latent")

    def task_outer_terms(self, params: Params, batch: TorchBatch) -> dict[str, torch.Tensor]:
        """Outer losses of one task (PPO-clip and the plain surrogate, each plus the regulariser
        ``eta * mean_j z_j^2`` on the task embedding z, spec §1.3-1.4), and its mean KL(pi_old || pi)."""
        new = self.policy.dist_inputs(batch["obs"], params)
        logp = gaussian_logp(new, batch["actions"])
        logp_old = gaussian_logp(batch["dist_inputs"], batch["actions"])
        adv, mask = self.advantages(batch), batch["mask"]
        z = self.task_embedding(params, batch)
        reg = self.config.embedding_reg_coeff * z.pow(2).mean() if z is not None else torch.zeros(())
        terms = {
            "ppo": ppo_clip_loss(logp, logp_old, adv, self.config.clip_param, mask) + reg,
            "pg": policy_gradient_surrogate(logp, logp_old, adv, mask) + reg,
            "kl": masked_mean(gaussian_kl(batch["dist_inputs"], new), mask),
        }
        if z is not None:
            terms["regularizer"] = reg
            terms["embedding_norm"] = z.norm()
        return terms

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        # RLlib's single-level `Learner.update()` has no meaning here: the bi-level update
        # needs every task's stage batches at once (see `meta_update`).
        raise NotImplementedError("MetaLearner is updated through meta_update(), not update()")

    # -- called by the Algorithm ---------------------------------------------------------
    def runner_weights(self, params: Params) -> Weights:
        """The inference-only RLModule state an EnvRunner needs to act with ``params``.

        Copies: a view of live parameters would change under the caller at the next step.
        """
        return {k: v.detach().cpu().numpy().copy() for k, v in params.items()}

    def initial_weights(self) -> Weights:
        return self.runner_weights(self.meta_params())

    def adapt_tasks(
        self, weights: Mapping[int, Weights], batches: Mapping[int, TaskBatch]
    ) -> dict[int, Weights]:
        """One inner step per task from its current ``weights``; returns each task's new weights."""
        ids = list(batches)
        params = {
            k: torch.as_tensor(np.stack([weights[i][k] for i in ids])).requires_grad_(True)
            for k in self.meta_params()
        }
        sizes = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in self.step_sizes().items()}
        adapted, _ = adapt(
            vmap(self.task_inner_loss),
            params,
            [stack_tasks([batches[i] for i in ids])],
            self.adapted_names(),
            sizes,
            self.config.inner_grad_clip,
            create_graph=False,
        )
        return {i: self.runner_weights({k: v[row] for k, v in adapted.items()}) for row, i in enumerate(ids)}

    def meta_update(self, task_batches: Sequence[Sequence[TaskBatch]]) -> dict[str, float]:
        """Update the meta-parameters from each task's batches ``[D_0, ..., D_K]`` (D_K: post-adaptation)."""
        num_stages = len(task_batches[0])
        stages = [stack_tasks([batches[k] for batches in task_batches]) for k in range(num_stages)]
        cfg = self.config
        stats = self._trpo_update(stages) if cfg.outer_optimizer == "trpo" else self._ppo_update(stages)
        self._weights_seq_no += 1  # EnvRunners only accept weights with a newer seq no.
        if cfg.learn_step_sizes:
            sizes = torch.cat([s.reshape(-1) for s in self.step_sizes().values()])
            stats["step_size_mean"] = sizes.mean().item()
            stats["step_size_abs_max"] = sizes.abs().max().item()
        return stats

    # -- outer objectives --------------------------------------------------------------
    def _objective(
        self, stages: Sequence[TorchBatch], create_graph: bool | None = None
    ) -> dict[str, torch.Tensor]:
        """Task means of the outer losses and KL, recomputing every task's inner loop."""
        cfg = self.config
        create_graph = cfg.second_order if create_graph is None else create_graph
        theta = per_task(self.meta_params(), stages[0]["mask"].shape[0])
        adapted, inner_losses = adapt(
            vmap(self.task_inner_loss),
            theta,
            stages[:-1],
            self.adapted_names(),
            self.step_sizes(),
            cfg.inner_grad_clip,
            create_graph,
        )
        terms = vmap(self.task_outer_terms)(adapted, stages[-1])
        out = {k: v.mean() for k, v in terms.items()}
        out["inner_loss"] = torch.stack(inner_losses).mean() if inner_losses else torch.zeros(())
        return out

    def _ppo_update(self, stages) -> dict[str, float]:
        optimizer = self.get_optimizer()
        first = None
        for _ in range(self.config.num_outer_steps):
            out = self._objective(stages)
            first = first or {k: v.item() for k, v in out.items()}
            optimizer.zero_grad(set_to_none=True)
            out["ppo"].backward()
            optimizer.step()
        last = self._objective(stages, create_graph=False)
        stats = {
            "inner_loss": first["inner_loss"],
            "outer_loss_before": first["ppo"],
            "outer_loss_after": last["ppo"].item(),
            "kl": last["kl"].item(),
        }
        return stats | {k: last[k].item() for k in ("regularizer", "embedding_norm") if k in last}

    def _trpo_update(self, stages) -> dict[str, float]:
        cfg = self.config
        params = [p for p in self.policy.parameters() if p.requires_grad]
        inner_loss = []

        extra = {}

        def objective():
            out = self._objective(stages)
            inner_loss.append(out["inner_loss"].item())
            extra.update({k: out[k].item() for k in ("regularizer", "embedding_norm") if k in out})
            return out["pg"], out["kl"]

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
        } | extra
