"""The meta-learner: inner adaptation and the outer (meta) update, as an RLlib TorchLearner.

The engine (:mod:`tesp.meta.meta_gradient`) calls three methods through
``LearnerGroup.foreach_learner``:

- :meth:`MetaLearner.start_tasks` sets every task's parameters to the meta-parameters theta;
- :meth:`MetaLearner.adapt_tasks` takes one inner step per task on its newest batch, keeps the
  adapted parameters and the clipped inner gradients here, and returns the EnvRunner weights to
  sample the next round with (no graph is kept);
- :meth:`MetaLearner.meta_update` evaluates the outer objective on the post-adaptation batches
  at parameters recomputed from theta (through the inner loop when ``second_order``; else
  ``theta - alpha G`` with the kept gradients G, or with the gradients taken again), and steps
  the meta-parameters with PPO-clip Adam steps or one TRPO step (:mod:`tesp.meta.outer`: the
  optimisers, the chunking over tasks and the all-reduce over Learners).

All tasks are processed together (``torch.func.vmap`` over a leading task dimension); the loop
itself is :mod:`tesp.meta.adaptation`. With several RLlib Learners (``num_learners`` > 1) each
holds a contiguous shard of the meta-batch: it adapts its own tasks, and the meta-update sums the
shards' gradients (each task weighted by ``1 / meta-batch``) with an all-reduce over the process
group RLlib's LearnerGroup sets up, so every Learner takes the same step as one Learner holding
all tasks would. RLlib's DDP wrapper is not used: the meta-gradients go through
``torch.func`` calls of the unwrapped module, which DDP's forward would not see. The policy-gradient losses are the methods' common ground:
VPG with GAE inside (Finn et al. 2017), PPO-clip or TRPO's surrogate outside. A method's learner
(in its folder) changes them through these hooks:

- :meth:`task_penalties` (single task, vmapped): terms on the adapted parameters and the task
  latent; the entry ``"penalty"`` is added to the outer loss, the others are logged;
- :meth:`prior_terms` (all tasks): the same on the *pre-adaptation* parameters and the stage
  batches (E-MAML scores the pre-update episodes there);
- :meth:`prepare_stages`: quantities computed once per meta-update from the whole meta-batch
  (added to the stage batches before the outer loss is evaluated task chunk by task chunk);
- :meth:`context_inputs`: what a stage's per-task contexts add to the loss batch;
- :meth:`runner_states`: every task's EnvRunner weights, given their parameters and contexts.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from torch.func import vmap

from tesp.meta import outer
from tesp.meta.adaptation import StepSize, adapt, inner_step
from tesp.meta.batch import TaskBatch, stack_tasks
from tesp.meta.finite import check_finite
from tesp.meta.losses import masked_mean, policy_gradient_surrogate, ppo_clip_loss
from tesp.meta.mechanism import adam_rms_below_eps, step_size_stats, task_adaptation
from tesp.models.gaussian_policy import GaussianPolicyModule
from tesp.nn.distributions import gaussian_kl, gaussian_logp
from tesp.nn.params import Params

logger = logging.getLogger(__name__)

TorchBatch = dict[str, torch.Tensor]
Weights = dict[str, np.ndarray]


class MetaLearner(TorchLearner):
    @property
    def policy(self) -> GaussianPolicyModule:
        return self.module[DEFAULT_MODULE_ID].unwrapped()

    def build(self) -> None:
        # Flush denormal floats to zero in this process. Gradients fading through a long
        # recurrence (TESP's GRU over 200-step episodes) reach the denormal range, where every
        # CPU float operation costs ~10x: one TESP outer update at the study's laptop scale took
        # 15 s instead of ~2 s (benchmarks/README.md). Values below ~1e-38 become 0.
        torch.set_flush_denormal(True)
        super().build()

    def _make_modules_ddp_if_necessary(self) -> None:
        """No DDP wrapper with several Learners: :meth:`_all_reduce_gradients` sums the
        meta-gradients instead (see the module docstring)."""

    # -- hooks (see the module docstring) --------------------------------------------------
    def task_penalties(self, params: Params, latent: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Outer-loss terms of one task's adapted ``params`` and latent: ``"penalty"`` is added
        to the loss, every other entry is logged (its mean over tasks)."""
        return {}

    def prior_terms(self, theta: Params, stages: Sequence[TorchBatch]) -> dict[str, torch.Tensor]:
        """The same (scalars) on every task's pre-adaptation parameters ``theta`` ``[T, ...]``,
        given the tasks' stage batches ``[D_0, ..., D_K]`` (each ``[T, N, ...]``)."""
        return {}

    def prepare_stages(self, stages: Sequence[TorchBatch]) -> list[TorchBatch]:
        """The stage batches the outer loss reads, from the ones sampled (all of this Learner's
        tasks; the loss then takes them a chunk of tasks at a time)."""
        return list(stages)

    def context_inputs(self, contexts: Sequence[Any]) -> TorchBatch:
        """Tensors ``[T, ...]`` a stage's per-task contexts add to its loss batch."""
        return {}

    def runner_states(self, params: Params, contexts: Sequence[Any] | None) -> list[Params]:
        """The EnvRunner weights of every task, from the tasks' parameters ``params``
        ``[T, ...]`` and their ``contexts`` (None: no context)."""
        num = len(next(iter(params.values())))
        return [self.policy.inference_state({k: v[t] for k, v in params.items()}) for t in range(num)]

    # -- the losses ------------------------------------------------------------------------
    def step_sizes(self) -> dict[str, StepSize]:
        """Inner step size per adapted parameter: the fixed ``inner_lr`` or learned, clamped rates."""
        names = self.policy.adapted_names()
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
        """VPG (REINFORCE with GAE, Finn et al. 2017): ``-mean_t log pi(a_t|s_t, z) A_t``.

        The task latent ``z`` is recomputed from ``params`` (TESP: the encoder on the task's
        buffer), so the gradient reaches the latent's parameters through ``z``.
        """
        latent = self.policy.task_latent(params, batch)
        logp = gaussian_logp(self.policy.dist_inputs(batch["obs"], params, latent), batch["actions"])
        return -masked_mean(logp * self.advantages(batch), batch["mask"])

    def task_outer_terms(self, params: Params, batch: TorchBatch) -> dict[str, torch.Tensor]:
        """Outer losses of one task: PPO-clip and TRPO's surrogate (each plus the method's
        penalty), the policy's PPO-clip alone, and the mean KL(pi_old || pi)."""
        latent = self.policy.task_latent(params, batch)
        new = self.policy.dist_inputs(batch["obs"], params, latent)
        logp = gaussian_logp(new, batch["actions"])
        logp_old = gaussian_logp(batch["dist_inputs"], batch["actions"])
        adv, mask = self.advantages(batch), batch["mask"]
        policy_loss = ppo_clip_loss(logp, logp_old, adv, self.config.clip_param, mask)
        surrogate = policy_gradient_surrogate(logp, logp_old, adv, mask)
        extra = self.task_penalties(params, latent)
        penalty = extra.pop("penalty", None)
        terms = {
            outer.PPO: policy_loss if penalty is None else policy_loss + penalty,
            outer.PPO_POLICY: policy_loss,
            outer.PG: surrogate if penalty is None else surrogate + penalty,
            outer.KL: masked_mean(gaussian_kl(batch["dist_inputs"], new), mask),
        }
        return terms | extra

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        # RLlib's single-level `Learner.update()` has no meaning here: the bi-level update
        # needs every task's stage batches at once (see `meta_update`).
        raise NotImplementedError("MetaLearner is updated through meta_update(), not update()")

    # -- called by the Algorithm ---------------------------------------------------------
    def start_tasks(self, task_index: Sequence[int], contexts: Sequence[Any] | None = None) -> list[Weights]:
        """Start adapting to tasks from theta; return each task's EnvRunner weights.

        ``task_index`` is each task's index in the training pool (-1: not in it).
        """
        self._index = torch.as_tensor(task_index, dtype=torch.int64)
        if not len(task_index):  # a Learner with no task in this round's shard
            self._params, self._inner_grads = {}, []
            return []
        with torch.no_grad():
            theta = self.policy.task_params(len(task_index), self._index)
            self._params = {k: v.detach().clone() for k, v in theta.items()}
            self._inner_grads: list[Params] = []
            return self._runner_weights(contexts)

    def adapt_tasks(
        self,
        batches: Sequence[TaskBatch],
        contexts: Sequence[Any] | None = None,
        next_contexts: Sequence[Any] | None = None,
    ) -> tuple[list[Weights], float]:
        """One inner step per task from its current parameters on its newest batch (sampled
        with ``contexts``). Keeps the new parameters and the clipped inner gradients (what the
        first-order meta-update holds fixed); returns the EnvRunner weights for the next round
        (with ``next_contexts``) and the mean inner loss. No graph is kept."""
        if not batches:
            return [], float("nan")
        stacked = {k: v.clone().requires_grad_(True) for k, v in self._params.items()}
        names = self.policy.adapted_names()
        sizes = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in self.step_sizes().items()}
        new, losses, grads = inner_step(
            vmap(self.task_inner_loss),
            stacked,
            self._stage(batches, contexts),
            names,
            sizes,
            self.config.inner_grad_clip,
            create_graph=False,
        )
        check_finite("inner loss", losses)
        check_finite("inner gradient of", dict(zip(names, grads, strict=True)))
        self._params = {k: v.detach() for k, v in new.items()}
        self._inner_grads.append({n: g.detach() for n, g in zip(names, grads, strict=True)})
        with torch.no_grad():
            weights = self._runner_weights(next_contexts)
        return weights, losses.mean().item()

    def adaptation_measures(
        self, batches: Sequence[TaskBatch], contexts: Sequence[Any] | None = None
    ) -> dict[str, np.ndarray]:
        """Per task, how far its inner steps moved the policy, measured on its post-adaptation
        batch (sampled with ``contexts``): :func:`tesp.meta.mechanism.task_adaptation` between
        theta and the task's current (adapted) parameters."""
        if not batches:
            return {}
        with torch.no_grad():
            theta = self.policy.task_params(len(self._index), self._index)
            measures = vmap(partial(task_adaptation, self.policy))(
                theta, self._params, self._stage(batches, contexts)
            )
        return {k: v.numpy() for k, v in measures.items()}

    def current_task_params(self) -> list[Weights]:
        """Each task's current (adapted) parameters, as numpy copies."""
        num = len(next(iter(self._params.values())))
        return _numpy([{k: v[t] for k, v in self._params.items()} for t in range(num)])

    def summed_inner_gradients(self) -> dict[str, torch.Tensor]:
        """``G_t = sum_k g_k`` per adapted parameter, ``[T, ...]``: the clipped inner gradients
        :meth:`adapt_tasks` took since :meth:`start_tasks`."""
        return {n: sum(g[n] for g in self._inner_grads) for n in self.policy.adapted_names()}

    def _runner_weights(self, contexts: Sequence[Any] | None) -> list[Weights]:
        return _numpy(self.runner_states(self._params, contexts))

    def _stage(self, batches: Sequence[TaskBatch], contexts: Sequence[Any] | None) -> TorchBatch:
        stage = stack_tasks(batches)
        return stage | self.context_inputs(contexts) if contexts is not None else stage

    def meta_update(
        self,
        stage_batches: Sequence[Sequence[TaskBatch]],
        task_index: Sequence[int],
        stage_contexts: Sequence[Sequence[Any]] | None = None,
        inner_loss: float = float("nan"),
    ) -> dict[str, float]:
        """Update the meta-parameters from every stage's task batches ``[D_0, ..., D_K]``
        (``stage_batches[k][task]``; D_K: post-adaptation), each task's index in the training
        pool, and the contexts each stage was sampled with, ``stage_contexts[k][task]``. The
        first-order ``"fixed"`` mode uses the inner gradients :meth:`adapt_tasks` kept (their
        mean loss: ``inner_loss``)."""
        cfg = self.config
        check_finite("meta-parameter", dict(self.policy.named_parameters()))
        num_stages = len(stage_batches)
        contexts = stage_contexts or [None] * num_stages
        stages = [self._stage(b, c) for b, c in zip(stage_batches, contexts, strict=True)]
        stages = self.prepare_stages(stages)
        index = torch.as_tensor(task_index)
        fixed = None
        if not cfg.second_order and cfg.first_order_mode == "fixed" and num_stages > 1:
            fixed = self.summed_inner_gradients()  # constants of the outer loss
        objective = partial(self._objective, stages, index, fixed)
        params = [p for p in self.policy.parameters() if p.requires_grad]
        if cfg.outer_optimizer == "trpo":
            stats = outer.trpo_update(objective, params, cfg)
        else:
            stats = outer.ppo_update(
                objective,
                self.get_optimizer(),
                params,
                len(task_index),
                outer.global_count(len(task_index)),
                num_steps=cfg.num_outer_steps,
                chunk=cfg.outer_task_chunk,
                kl_target=cfg.best_iterate_kl_target,
                check=lambda: check_finite(
                    "outer gradient of", {n: p.grad for n, p in self.policy.named_parameters()}
                ),
            )
        if fixed is not None:
            stats[outer.INNER_LOSS] = inner_loss
        check_finite("meta-parameter after the update:", dict(self.policy.named_parameters()))
        self._weights_seq_no += 1  # EnvRunners only accept weights with a newer seq no.
        return stats | self._step_size_stats()

    def _step_size_stats(self) -> dict[str, float]:
        """The inner step sizes' summary (:mod:`tesp.meta.mechanism`); for learned ones also
        their mean, largest magnitude and how many barely move under Adam."""
        if not self.config.learn_step_sizes:
            return step_size_stats(torch.tensor([float(self.config.inner_lr)]))
        sizes = torch.cat([s.detach().reshape(-1) for s in self.step_sizes().values()])
        return step_size_stats(sizes) | {
            "step_size_mean": sizes.mean().item(),
            "step_size_abs_max": sizes.abs().max().item(),
            "step_size_grad_below_eps": adam_rms_below_eps(
                self.get_optimizer(), list(self.policy.step_sizes.parameters())
            ),
        }

    # -- outer objectives --------------------------------------------------------------
    def _objective(
        self,
        stages: Sequence[TorchBatch],
        index: torch.Tensor,
        fixed_grads: Mapping[str, torch.Tensor] | None = None,
        create_graph: bool | None = None,
        tasks: slice = slice(None),
    ) -> dict[str, torch.Tensor]:
        """Task means of the outer losses and KL at the current meta-parameters, over the
        ``tasks`` (a slice of the meta-batch; default all).

        With ``fixed_grads`` (the first-order update of Lan et al. 2019's release and of Li et
        al. 2017), the adapted parameters are ``theta - alpha * G`` with the inner gradients
        ``G`` summed when the tasks were adapted, held fixed while ``theta`` and ``alpha`` move;
        the gradient reaches ``alpha`` through that product. Without, every task's inner loop is
        recomputed from ``theta``: through the inner gradients when ``second_order`` (Finn et al.
        2017), else with them as constants at the current ``theta`` (``"recompute"``).
        """
        cfg = self.config
        create_graph = cfg.second_order if create_graph is None else create_graph
        stages = [{k: v[tasks] for k, v in stage.items()} for stage in stages]
        index = index[tasks]
        if fixed_grads is not None:
            fixed_grads = {k: v[tasks] for k, v in fixed_grads.items()}
        # Inner gradients need autograd even in an evaluation that takes no outer gradient.
        inner = torch.enable_grad() if fixed_grads is None else contextlib.nullcontext()
        with inner:
            theta = self.policy.task_params(len(index), index)
        out: dict[str, torch.Tensor] = {}
        if fixed_grads is not None:
            sizes = self.step_sizes()
            adapted = dict(theta)
            for name, g in fixed_grads.items():
                adapted[name] = theta[name] - sizes[name] * g
        else:
            with inner:
                adapted, inner_losses = adapt(
                    vmap(self.task_inner_loss),
                    theta,
                    stages[:-1],
                    self.policy.adapted_names(),
                    self.step_sizes(),
                    cfg.inner_grad_clip,
                    create_graph,
                )
            out[outer.INNER_LOSS] = torch.stack(inner_losses).mean() if inner_losses else torch.zeros(())
        terms = vmap(self.task_outer_terms)(adapted, stages[-1])
        out |= {k: v.mean() for k, v in terms.items()}
        prior = self.prior_terms(theta, stages)
        penalty = prior.pop("penalty", None)
        out |= prior
        if penalty is not None:
            out[outer.PPO], out[outer.PG] = out[outer.PPO] + penalty, out[outer.PG] + penalty
        check_finite("outer loss", out[outer.PPO])
        return out


def _numpy(params: Sequence[Mapping[str, torch.Tensor]]) -> list[Weights]:
    """Detached numpy copies (a view of a live tensor would change under the caller)."""
    return [{k: v.detach().cpu().numpy().copy() for k, v in p.items()} for p in params]
