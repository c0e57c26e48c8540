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

from tesp.meta.adaptation import Params, StepSize, adapt
from tesp.meta.batch import TaskBatch, stack_tasks
from tesp.meta.episode_buffer import EpisodeBuffer, stack_buffers
from tesp.meta.outer import masked_mean, policy_gradient_surrogate, ppo_clip_loss, trpo_step
from tesp.models.gaussian_mlp import GaussianMLPModule, gaussian_kl, gaussian_logp

logger = logging.getLogger(__name__)

TorchBatch = dict[str, torch.Tensor]
EXTRA_STATS = ("regularizer", "embedding_norm", "latent_prior_kl")  # logged when a method has them
Weights = dict[str, np.ndarray]


class MetaLearner(TorchLearner):
    # -- hooks that distinguish methods (single task; vmapped over tasks) -----------------
    @property
    def policy(self) -> GaussianMLPModule:
        return self.module[DEFAULT_MODULE_ID].unwrapped()

    def task_params(self, num_tasks: int, task_index: torch.Tensor | None = None) -> Params:
        """Every task's starting parameters (theta), ``[T, ...]``; see ``GaussianMLPModule.task_params``."""
        return self.policy.task_params(num_tasks, task_index)

    def adapted_names(self) -> list[str]:
        """Which entries of :meth:`task_params` the inner loop changes (MAML: the policy;
        AdaptSV and MAESN: the latent; TESP: the encoder)."""
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
        """VPG (REINFORCE with GAE): ``-mean_t log pi_theta(a_t|s_t, z) A_t`` (spec §1.2).

        The task latent ``z`` is recomputed from ``params`` (TESP: the encoder on the task's
        buffer), so the gradient reaches the encoder through ``z``.
        """
        latent = self.policy.task_latent(params, batch)
        logp = gaussian_logp(self.policy.dist_inputs(batch["obs"], params, latent), batch["actions"])
        return -masked_mean(logp * self.advantages(batch), batch["mask"])

    def task_outer_terms(self, params: Params, batch: TorchBatch) -> dict[str, torch.Tensor]:
        """Outer losses of one task (PPO-clip and the plain surrogate, each plus the regulariser
        ``eta * mean_j z_j^2`` on the task embedding z, spec §1.3-1.4), and its mean KL(pi_old || pi)."""
        latent = self.policy.task_latent(params, batch)
        new = self.policy.dist_inputs(batch["obs"], params, latent)
        logp = gaussian_logp(new, batch["actions"])
        logp_old = gaussian_logp(batch["dist_inputs"], batch["actions"])
        adv, mask = self.advantages(batch), batch["mask"]
        # The embedding: z itself (AdaptSV, TESP) or the mean of MAESN's latent distribution.
        z = params.get("latent_mean", latent)
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

    def task_prior_terms(self, theta: Params) -> dict[str, torch.Tensor]:
        """Terms on a task's *pre-adaptation* parameters: MAESN's KL(N(mu_i, sigma_i^2) || N(0, I))."""
        if "latent_mean" not in theta:
            return {}
        dist = torch.cat([theta["latent_mean"], theta["latent_log_std"]], dim=-1)
        return {"latent_prior_kl": gaussian_kl(dist, torch.zeros_like(dist))}

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        # RLlib's single-level `Learner.update()` has no meaning here: the bi-level update
        # needs every task's stage batches at once (see `meta_update`).
        raise NotImplementedError("MetaLearner is updated through meta_update(), not update()")

    # -- called by the Algorithm ---------------------------------------------------------
    def start_tasks(
        self, task_index: Sequence[int], buffers: Sequence[EpisodeBuffer] | None = None
    ) -> tuple[list[Weights], list[Weights]]:
        """Each task's starting parameters and the EnvRunner weights to sample it with.

        ``task_index`` is each task's index in the training pool (-1: not in it). Returns
        numpy copies: ``(params, runner_weights)``, one per task.
        """
        with torch.no_grad():
            theta = self.task_params(len(task_index), torch.as_tensor(task_index))
            params = [{k: v[t] for k, v in theta.items()} for t in range(len(task_index))]
            return _numpy(params), self._runner_weights(params, buffers)

    def adapt_tasks(
        self,
        params: Sequence[Weights],
        batches: Sequence[TaskBatch],
        buffers: Sequence[EpisodeBuffer] | None = None,
        next_buffers: Sequence[EpisodeBuffer] | None = None,
    ) -> tuple[list[Weights], list[Weights]]:
        """One inner step per task from its ``params`` on its newest batch (and, for TESP, the
        buffer the batch was sampled with); returns the new params and the EnvRunner weights
        for the next round (TESP: with the embedding of ``next_buffers``). No graph is kept."""
        stacked = {
            k: torch.as_tensor(np.stack([p[k] for p in params])).requires_grad_(True) for k in params[0]
        }
        sizes = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in self.step_sizes().items()}
        adapted, _ = adapt(
            vmap(self.task_inner_loss),
            stacked,
            [self._stage(batches, buffers)],
            self.adapted_names(),
            sizes,
            self.config.inner_grad_clip,
            create_graph=False,
        )
        new = [{k: v[t].detach() for k, v in adapted.items()} for t in range(len(params))]
        with torch.no_grad():
            return _numpy(new), self._runner_weights(new, next_buffers)

    def _runner_weights(
        self, params: Sequence[Params], buffers: Sequence[EpisodeBuffer] | None
    ) -> list[Weights]:
        """The inference-only RLModule state of each task (TESP: with z computed here from the
        task's buffer, so EnvRunners sample with exactly the learner's z)."""
        out = []
        for t, p in enumerate(params):
            p = {k: torch.as_tensor(v) for k, v in p.items()}
            latent = None
            if self.policy.latent_kind == "encoder":
                if buffers is None or len(buffers[t]) == 0:
                    latent = torch.zeros(self.policy.latent_dim)  # empty buffer: z = 0 (spec §1.4)
                else:
                    latent = self._embed(p, buffers[t])
            out.append(self.policy.inference_state(p, latent))
        return _numpy(out)

    def _embed(self, params: Params, buffer: EpisodeBuffer) -> torch.Tensor:
        stacked = stack_buffers([buffer])
        return self.policy.task_latent(params, {k: v[0] for k, v in stacked.items()})

    def _stage(self, batches: Sequence[TaskBatch], buffers: Sequence[EpisodeBuffer] | None) -> TorchBatch:
        stage = stack_tasks(batches)
        return stage | stack_buffers(buffers) if buffers is not None else stage

    def meta_update(
        self,
        task_batches: Sequence[Sequence[TaskBatch]],
        task_index: Sequence[int],
        stage_buffers: Sequence[Sequence[EpisodeBuffer]] | None = None,
    ) -> dict[str, float]:
        """Update the meta-parameters from each task's batches ``[D_0, ..., D_K]`` (D_K:
        post-adaptation), its index in the training pool, and (TESP) the buffer each stage was
        sampled with, ``stage_buffers[k][task]``."""
        num_stages = len(task_batches[0])
        stages = [
            self._stage(
                [batches[k] for batches in task_batches],
                None if stage_buffers is None else stage_buffers[k],
            )
            for k in range(num_stages)
        ]
        index = torch.as_tensor(task_index)
        cfg = self.config
        if cfg.outer_optimizer == "trpo":
            stats = self._trpo_update(stages, index)
        else:
            stats = self._ppo_update(stages, index)
        self._weights_seq_no += 1  # EnvRunners only accept weights with a newer seq no.
        if cfg.learn_step_sizes:
            sizes = torch.cat([s.reshape(-1) for s in self.step_sizes().values()])
            stats["step_size_mean"] = sizes.mean().item()
            stats["step_size_abs_max"] = sizes.abs().max().item()
        return stats

    # -- outer objectives --------------------------------------------------------------
    def _objective(
        self, stages: Sequence[TorchBatch], index: torch.Tensor, create_graph: bool | None = None
    ) -> dict[str, torch.Tensor]:
        """Task means of the outer losses and KL, recomputing every task's inner loop."""
        cfg = self.config
        create_graph = cfg.second_order if create_graph is None else create_graph
        theta = self.task_params(len(index), index)
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
        for key, value in self.task_prior_terms(theta).items():
            out[key] = value.mean()
            penalty = cfg.latent_prior_coeff * out[key]
            out["ppo"], out["pg"] = out["ppo"] + penalty, out["pg"] + penalty
        out["inner_loss"] = torch.stack(inner_losses).mean() if inner_losses else torch.zeros(())
        return out

    def _ppo_update(self, stages, index) -> dict[str, float]:
        optimizer = self.get_optimizer()
        first = None
        for _ in range(self.config.num_outer_steps):
            out = self._objective(stages, index)
            first = first or {k: v.item() for k, v in out.items()}
            optimizer.zero_grad(set_to_none=True)
            out["ppo"].backward()
            optimizer.step()
        last = self._objective(stages, index, create_graph=False)
        stats = {
            "inner_loss": first["inner_loss"],
            "outer_loss_before": first["ppo"],
            "outer_loss_after": last["ppo"].item(),
            "kl": last["kl"].item(),
        }
        return stats | {k: last[k].item() for k in EXTRA_STATS if k in last}

    def _trpo_update(self, stages, index) -> dict[str, float]:
        cfg = self.config
        params = [p for p in self.policy.parameters() if p.requires_grad]
        inner_loss = []

        extra = {}

        def objective():
            out = self._objective(stages, index)
            inner_loss.append(out["inner_loss"].item())
            extra.update({k: out[k].item() for k in EXTRA_STATS if k in out})
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


def _numpy(params: Sequence[Mapping[str, torch.Tensor]]) -> list[Weights]:
    """Detached numpy copies (a view of a live tensor would change under the caller)."""
    return [{k: v.detach().cpu().numpy().copy() for k, v in p.items()} for p in params]
