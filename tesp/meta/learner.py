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
from functools import partial

import numpy as np
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from torch.func import vmap

from tesp.meta.adaptation import Params, StepSize, adapt, inner_step
from tesp.meta.batch import TaskBatch, stack_tasks
from tesp.meta.episode_buffer import EpisodeBuffer, stack_buffers
from tesp.meta.finite import check_finite
from tesp.meta.outer import best_iterate, masked_mean, policy_gradient_surrogate, ppo_clip_loss, trpo_step
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
        policy_loss = ppo_clip_loss(logp, logp_old, adv, self.config.clip_param, mask)
        terms = {
            "ppo": policy_loss + reg,
            "ppo_policy": policy_loss,
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
    ) -> tuple[list[Weights], list[Weights], list[Weights], float]:
        """One inner step per task from its ``params`` on its newest batch (and, for TESP, the
        buffer the batch was sampled with). Returns the new params, the EnvRunner weights for
        the next round (TESP: with the embedding of ``next_buffers``), each task's clipped
        inner gradient (what the first-order meta-update keeps fixed) and the mean inner loss.
        No graph is kept."""
        stacked = {
            k: torch.as_tensor(np.stack([p[k] for p in params])).requires_grad_(True) for k in params[0]
        }
        names = self.adapted_names()
        sizes = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in self.step_sizes().items()}
        new, losses, grads = inner_step(
            vmap(self.task_inner_loss),
            stacked,
            self._stage(batches, buffers),
            names,
            sizes,
            self.config.inner_grad_clip,
            create_graph=False,
        )
        check_finite("inner loss", losses)
        check_finite("inner gradient of", dict(zip(names, grads, strict=True)))
        new = {k: v.detach() for k, v in new.items()}
        per_task_params = [{k: v[t] for k, v in new.items()} for t in range(len(params))]
        per_task_grads = [{n: g[t] for n, g in zip(names, grads, strict=True)} for t in range(len(params))]
        with torch.no_grad():
            weights = self._runner_weights(per_task_params, next_buffers)
        return _numpy(per_task_params), weights, _numpy(per_task_grads), losses.mean().item()

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
        inner_grads: Sequence[Sequence[Weights]] | None = None,
        inner_loss: float = float("nan"),
    ) -> dict[str, float]:
        """Update the meta-parameters from each task's batches ``[D_0, ..., D_K]`` (D_K:
        post-adaptation), its index in the training pool, (TESP) the buffer each stage was
        sampled with, ``stage_buffers[k][task]``, and the clipped inner gradients that
        :meth:`adapt_tasks` took, ``inner_grads[k][task]``, with their mean loss."""
        cfg = self.config
        check_finite("meta-parameter", dict(self.policy.named_parameters()))
        num_stages = len(task_batches[0])
        stages = [
            self._stage(
                [batches[k] for batches in task_batches],
                None if stage_buffers is None else stage_buffers[k],
            )
            for k in range(num_stages)
        ]
        index = torch.as_tensor(task_index)
        fixed = None
        if not cfg.second_order and cfg.first_order_mode == "fixed" and num_stages > 1:
            # G_t = sum_k g_k per adapted parameter, [T, ...]; constants of the outer loss.
            names = self.adapted_names()
            fixed = {
                n: torch.as_tensor(np.stack([sum(g[t][n] for g in inner_grads) for t in range(len(index))]))
                for n in names
            }
        objective = partial(self._objective, stages, index, fixed)
        update = self._trpo_update if cfg.outer_optimizer == "trpo" else self._ppo_update
        stats = update(objective)
        if fixed is not None:
            stats["inner_loss"] = inner_loss
        check_finite("meta-parameter after the update:", dict(self.policy.named_parameters()))
        self._weights_seq_no += 1  # EnvRunners only accept weights with a newer seq no.
        if cfg.learn_step_sizes:
            sizes = torch.cat([s.reshape(-1) for s in self.step_sizes().values()])
            stats["step_size_mean"] = sizes.mean().item()
            stats["step_size_abs_max"] = sizes.abs().max().item()
        return stats

    # -- outer objectives --------------------------------------------------------------
    def _objective(
        self,
        stages: Sequence[TorchBatch],
        index: torch.Tensor,
        fixed_grads: Mapping[str, torch.Tensor] | None = None,
        create_graph: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """Task means of the outer losses and KL at the current meta-parameters.

        With ``fixed_grads`` (the first-order update of Lan et al. 2019 and Li et al. 2017), the
        adapted parameters are ``theta - alpha * G`` with the inner gradients ``G`` summed when
        the tasks were adapted, held fixed while ``theta`` and ``alpha`` move; the gradient
        reaches ``alpha`` through that product. Without, every task's inner loop is recomputed
        from ``theta``: through the inner gradients when ``second_order`` (Finn et al. 2017),
        else with them as constants at the current ``theta`` (``first_order_mode="recompute"``).
        """
        cfg = self.config
        create_graph = cfg.second_order if create_graph is None else create_graph
        theta = self.task_params(len(index), index)
        out: dict[str, torch.Tensor] = {}
        if fixed_grads is not None:
            sizes = self.step_sizes()
            adapted = dict(theta)
            for name, g in fixed_grads.items():
                adapted[name] = theta[name] - sizes[name] * g
        else:
            adapted, inner_losses = adapt(
                vmap(self.task_inner_loss),
                theta,
                stages[:-1],
                self.adapted_names(),
                self.step_sizes(),
                cfg.inner_grad_clip,
                create_graph,
            )
            out["inner_loss"] = torch.stack(inner_losses).mean() if inner_losses else torch.zeros(())
        terms = vmap(self.task_outer_terms)(adapted, stages[-1])
        out |= {k: v.mean() for k, v in terms.items()}
        for key, value in self.task_prior_terms(theta).items():
            out[key] = value.mean()
            penalty = cfg.latent_prior_coeff * out[key]
            out["ppo"], out["pg"] = out["ppo"] + penalty, out["pg"] + penalty
        check_finite("outer loss", out["ppo"])
        return out

    def _ppo_update(self, objective) -> dict[str, float]:
        """``num_outer_steps`` full-batch Adam steps on the PPO-clip loss; with
        ``best_iterate_kl_target`` > 0, then the iterate chosen by :func:`best_iterate` (its
        policy surrogate, without the regularisers), Adam's moments not rolled back."""
        cfg = self.config
        optimizer = self.get_optimizer()
        params = [p for p in self.policy.parameters() if p.requires_grad]
        selecting = cfg.best_iterate_kl_target > 0
        values, snapshots = [], []
        for step in range(cfg.num_outer_steps + 1):
            final = step == cfg.num_outer_steps
            out = objective(create_graph=False if final else None)
            values.append({k: v.item() for k, v in out.items()})
            if selecting:
                snapshots.append([p.detach().clone() for p in params])
            if final:
                break
            optimizer.zero_grad(set_to_none=True)
            out["ppo"].backward()
            check_finite("outer gradient of", {n: p.grad for n, p in self.policy.named_parameters()})
            optimizer.step()
        chosen = len(values) - 1
        if selecting:
            kls, losses = [v["kl"] for v in values], [v["ppo_policy"] for v in values]
            chosen = best_iterate(kls, losses, cfg.best_iterate_kl_target)
            with torch.no_grad():
                for p, value in zip(params, snapshots[chosen], strict=True):
                    p.copy_(value)
        first, last = values[0], values[chosen]
        stats = {
            "inner_loss": first.get("inner_loss", float("nan")),
            "outer_loss_before": first["ppo"],
            "outer_loss_after": last["ppo"],
            "kl": last["kl"],
        }
        if selecting:
            stats["best_iterate"] = chosen
        return stats | {k: last[k] for k in EXTRA_STATS if k in last}

    def _trpo_update(self, objective) -> dict[str, float]:
        cfg = self.config
        params = [p for p in self.policy.parameters() if p.requires_grad]
        first: dict[str, float] = {}
        latest: dict[str, float] = {}  # of the last evaluation (the accepted step, if any)

        def losses():
            out = objective()
            latest.update({k: v.item() for k, v in out.items()})
            first.update({} if first else latest)
            return out["pg"], out["kl"]

        result = trpo_step(
            params,
            losses,
            max_kl=cfg.max_kl,
            damping=cfg.cg_damping,
            cg_iters=cfg.cg_iters,
            backtrack_ratio=cfg.ls_backtrack_ratio,
            max_backtracks=cfg.ls_max_steps,
        )
        return {
            "inner_loss": first.get("inner_loss", float("nan")),
            "outer_loss_before": result.loss_before,
            "outer_loss_after": result.loss_after,
            "kl": result.kl,
            "trpo_step_fraction": result.step_fraction,
        } | {k: latest[k] for k in EXTRA_STATS if k in latest}


def _numpy(params: Sequence[Mapping[str, torch.Tensor]]) -> list[Weights]:
    """Detached numpy copies (a view of a live tensor would change under the caller)."""
    return [{k: v.detach().cpu().numpy().copy() for k, v in p.items()} for p in params]
