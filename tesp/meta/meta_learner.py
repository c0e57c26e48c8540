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
  the meta-parameters with PPO-clip Adam steps or one TRPO step.

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
import torch.distributed as dist
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from torch.func import vmap

from tesp.meta.adaptation import StepSize, adapt, inner_step
from tesp.meta.batch import TaskBatch, stack_tasks
from tesp.meta.finite import check_finite
from tesp.meta.losses import best_iterate, masked_mean, policy_gradient_surrogate, ppo_clip_loss
from tesp.meta.mechanism import adam_rms_below_eps, step_size_stats, task_adaptation
from tesp.meta.trpo import trpo_step
from tesp.models.gaussian_policy import GaussianPolicyModule
from tesp.nn.distributions import gaussian_kl, gaussian_logp
from tesp.nn.params import Params

logger = logging.getLogger(__name__)

TorchBatch = dict[str, torch.Tensor]
Weights = dict[str, np.ndarray]
CORE_TERMS = ("ppo", "ppo_policy", "pg", "kl", "inner_loss")  # other outer terms are logged as they are


def world_size() -> int:
    """Learners in the meta-update's process group (1: a single Learner)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def world_rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


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
            "ppo": policy_loss if penalty is None else policy_loss + penalty,
            "ppo_policy": policy_loss,
            "pg": surrogate if penalty is None else surrogate + penalty,
            "kl": masked_mean(gaussian_kl(batch["dist_inputs"], new), mask),
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
        task_batches: Sequence[Sequence[TaskBatch]],
        task_index: Sequence[int],
        stage_contexts: Sequence[Sequence[Any] | None] | None = None,
        inner_loss: float = float("nan"),
    ) -> dict[str, float]:
        """Update the meta-parameters from each task's batches ``[D_0, ..., D_K]`` (D_K:
        post-adaptation), its index in the training pool, and the contexts each stage was
        sampled with, ``stage_contexts[k][task]``. The first-order ``"fixed"`` mode uses the
        inner gradients :meth:`adapt_tasks` kept (their mean loss: ``inner_loss``)."""
        cfg = self.config
        check_finite("meta-parameter", dict(self.policy.named_parameters()))
        num_stages = len(task_batches[0])
        stages = [
            self._stage(
                [batches[k] for batches in task_batches],
                None if not stage_contexts else stage_contexts[k],
            )
            for k in range(num_stages)
        ]
        stages = self.prepare_stages(stages)
        index = torch.as_tensor(task_index)
        fixed = None
        if not cfg.second_order and cfg.first_order_mode == "fixed" and num_stages > 1:
            fixed = self.summed_inner_gradients()  # constants of the outer loss
        objective = partial(self._objective, stages, index, fixed)
        if cfg.outer_optimizer == "trpo":
            stats = self._trpo_update(objective)
        else:
            stats = self._ppo_update(objective, len(task_index), self._global_count(len(task_index)))
        if fixed is not None:
            stats["inner_loss"] = inner_loss
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
            out["inner_loss"] = torch.stack(inner_losses).mean() if inner_losses else torch.zeros(())
        terms = vmap(self.task_outer_terms)(adapted, stages[-1])
        out |= {k: v.mean() for k, v in terms.items()}
        prior = self.prior_terms(theta, stages)
        penalty = prior.pop("penalty", None)
        out |= prior
        if penalty is not None:
            out["ppo"], out["pg"] = out["ppo"] + penalty, out["pg"] + penalty
        check_finite("outer loss", out["ppo"])
        return out

    def _chunked(self, objective, num_tasks: int, total: int, backward: bool) -> dict[str, float]:
        """The objective's values over the meta-batch, evaluated ``outer_task_chunk`` of this
        Learner's ``num_tasks`` tasks at a time (every term is a mean over tasks, so the chunks'
        means weighted by their share of all ``total`` tasks add up to it; several Learners'
        parts are summed by an all-reduce); with ``backward``, the gradient of the PPO loss is
        accumulated chunk by chunk. Smaller chunks keep the intermediate tensors small: on this
        project's machines freshly mapped memory for large tensors cost more than the arithmetic
        (benchmarks/README.md)."""
        size = self.config.outer_task_chunk or num_tasks
        totals: dict[str, float] = {}
        for start in range(0, num_tasks, size):
            part = slice(start, min(start + size, num_tasks))
            share = (part.stop - part.start) / total
            out = objective(create_graph=None if backward else False, tasks=part)
            if backward:
                (share * out["ppo"]).backward()
            for k, v in out.items():
                totals[k] = totals.get(k, 0.0) + share * v.item()
        if world_size() > 1:
            if backward:
                self._all_reduce_gradients()
            keys = sorted(totals)
            values = torch.tensor([totals[k] for k in keys], dtype=torch.float64)
            dist.all_reduce(values)
            totals = dict(zip(keys, values.tolist(), strict=True))
        return totals

    @staticmethod
    def _global_count(n: int) -> int:
        """``n`` summed over the Learners."""
        if world_size() == 1:
            return n
        count = torch.tensor([n], dtype=torch.int64)
        dist.all_reduce(count)
        return int(count.item())

    def _all_reduce_gradients(self) -> None:
        """Sum every parameter's gradient over the Learners, in one flat buffer. A parameter no
        Learner has a gradient for (e.g. the latent of a task in no shard) keeps ``None``, so
        Adam leaves it alone exactly as with one Learner."""
        params = [p for p in self.policy.parameters() if p.requires_grad]
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float64)
        flat = torch.cat(
            [has]
            + [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).double() for p in params]
        )
        dist.all_reduce(flat)
        offset = len(params)
        for i, p in enumerate(params):
            n = p.numel()
            grad = flat[offset : offset + n].view_as(p).to(p.dtype)
            p.grad = grad.clone() if flat[i] > 0 else None
            offset += n

    def _ppo_update(self, objective, num_tasks: int, total: int) -> dict[str, float]:
        """``num_outer_steps`` full-batch Adam steps on the PPO-clip loss (the gradient taken in
        chunks of tasks, :meth:`_chunked`); with ``best_iterate_kl_target`` > 0, then the iterate
        chosen by :func:`best_iterate` (its policy surrogate, without the regularisers), Adam's
        moments not rolled back."""
        cfg = self.config
        optimizer = self.get_optimizer()
        params = [p for p in self.policy.parameters() if p.requires_grad]
        selecting = cfg.best_iterate_kl_target > 0
        values, snapshots = [], []
        for step in range(cfg.num_outer_steps + 1):
            final = step == cfg.num_outer_steps
            optimizer.zero_grad(set_to_none=True)
            with torch.set_grad_enabled(not final):  # the last evaluation only reports
                values.append(self._chunked(objective, num_tasks, total, backward=not final))
            if selecting:
                snapshots.append([p.detach().clone() for p in params])
            if final:
                break
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
        return stats | {k: v for k, v in last.items() if k not in CORE_TERMS}

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
        } | {k: v for k, v in latest.items() if k not in CORE_TERMS}


def _numpy(params: Sequence[Mapping[str, torch.Tensor]]) -> list[Weights]:
    """Detached numpy copies (a view of a live tensor would change under the caller)."""
    return [{k: v.detach().cpu().numpy().copy() for k, v in p.items()} for p in params]
