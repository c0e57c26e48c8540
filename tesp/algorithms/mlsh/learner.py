"""MLSH's learner: PPO for each task's master on macro steps, PPO for the shared sub-policies.

Each concurrently trained task ("slot") has its own master (``module.masters[slot]``) with its
own Adam optimizer (lr ``master_lr``); the sub-policies have one Adam optimizer (lr
``sub_lr``). Both use PPO-clip with ``num_epochs`` passes over shuffled minibatches of
``minibatch_size``:

- master: one sample per macro step, reward = the sum of the macro step's rewards, GAE over
  macro steps (``gamma``, ``gae_lambda``) against a linear baseline refit on the batch;
- sub-policies: every step, with the per-step GAE computed on the EnvRunner, pooled over the
  slots in their joint phase; each step's loss uses the sub-policy that acted, minus
  ``sub_entropy_coeff`` times its entropy (0 by default, as in the reference).

Advantages are standardised per task for the master and, as in the reference, per sub-policy
over the steps it acted for the sub-policies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

from tesp.algorithms.mlsh.module import MACRO_START, MASTER_LOGP, SUB_POLICY, MLSHModule
from tesp.meta.advantages import discounted_returns, fit_linear_baseline, gae
from tesp.meta.batch import TaskBatch
from tesp.meta.finite import check_finite
from tesp.meta.outer import ppo_clip_loss

Weights = dict[str, np.ndarray]


def macro_batch(batch: TaskBatch, gamma: float, lam: float) -> dict[str, np.ndarray]:
    """The master's samples of one task batch: one per macro step, with GAE advantages."""
    starts = batch.extras[MACRO_START] * batch.mask
    num = int(starts.sum(1).max())
    episodes = batch.obs.shape[0]
    obs = np.zeros((episodes, num, batch.obs.shape[-1]), np.float32)
    rewards, mask = np.zeros((episodes, num), np.float32), np.zeros((episodes, num), np.float32)
    subs, logp = np.zeros((episodes, num), np.float32), np.zeros((episodes, num), np.float32)
    for e in range(episodes):
        idx = np.flatnonzero(starts[e])
        ends = np.append(idx[1:], int(batch.mask[e].sum()))
        obs[e, : len(idx)] = batch.obs[e, idx]
        subs[e, : len(idx)] = batch.extras[SUB_POLICY][e, idx]
        logp[e, : len(idx)] = batch.extras[MASTER_LOGP][e, idx]
        rewards[e, : len(idx)] = [batch.rewards[e, a:b].sum() for a, b in zip(idx, ends, strict=True)]
        mask[e, : len(idx)] = 1.0
    returns = discounted_returns(rewards, mask, gamma)
    advantages = gae(rewards, fit_linear_baseline(obs, returns, mask), mask, gamma, lam)
    keep = mask.astype(bool)
    return {"obs": obs[keep], "actions": subs[keep], "logp": logp[keep], "advantages": advantages[keep]}


def standardize(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / (x.std() + 1e-8) if len(x) > 1 else x * 0


def standardize_per_group(x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """``x`` standardised within each group (each sub-policy's steps on their own)."""
    out = torch.empty_like(x)
    for g in torch.unique(groups):
        own = groups == g
        out[own] = standardize(x[own])
    return out


class MLSHLearner(TorchLearner):
    @property
    def policy(self) -> MLSHModule:
        return self.module[DEFAULT_MODULE_ID].unwrapped()

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        module = self.module[module_id].unwrapped()
        subs = module.sub_parameters()
        self.register_optimizer(
            module_id=module_id,
            optimizer_name="subs",
            optimizer=torch.optim.Adam(subs, lr=config.sub_lr),
            params=subs,
        )
        for slot, master in enumerate(module.masters):
            params = list(master.parameters())
            self.register_optimizer(
                module_id=module_id,
                optimizer_name=f"master_{slot}",
                optimizer=torch.optim.Adam(params, lr=config.master_lr),
                params=params,
            )

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        raise NotImplementedError("MLSHLearner is updated through update_mlsh(), not update()")

    # -- called by the Algorithm ---------------------------------------------------------
    def slot_weights(self, slots: Sequence[int]) -> dict[int, Weights]:
        """The EnvRunner weights of each slot: its master and the shared sub-policies."""
        shared = {
            k: v.detach().cpu().numpy().copy()
            for k, v in self.policy.state_dict().items()
            if not k.startswith(("masters.", "master."))
        }
        out = {}
        for slot in slots:
            master = self.policy.masters[slot].state_dict()
            out[slot] = shared | {f"master.{k}": v.detach().cpu().numpy().copy() for k, v in master.items()}
        return out

    def reset_master(self, slot: int) -> None:
        """A new task for ``slot``: a freshly initialised master and a fresh optimizer state."""
        fresh = self.policy.new_master()
        self.policy.masters[slot].load_state_dict(fresh.state_dict())
        self.get_optimizer(DEFAULT_MODULE_ID, f"master_{slot}").state.clear()

    def update_mlsh(self, slot_batches: dict[int, TaskBatch], joint: Sequence[int]) -> dict[str, float]:
        """One MLSH iteration: PPO on every slot's master; PPO on the sub-policies with the
        batches of the ``joint`` slots (none: the sub-policies stay as they are)."""
        cfg = self.config
        stats: dict[str, float] = {}
        master_losses = []
        for slot, batch in slot_batches.items():
            data = {k: torch.as_tensor(v) for k, v in macro_batch(batch, cfg.gamma, cfg.gae_lambda).items()}
            data["advantages"] = standardize(data["advantages"])
            master = self.policy.masters[slot]

            def master_loss(d, master=master):
                logp = self.policy.master_logp(master(d["obs"]), d["actions"])
                return ppo_clip_loss(logp, d["logp"], d["advantages"], cfg.clip_param)

            master_losses.append(self._ppo(f"master_{slot}", master_loss, data))
        stats["master_loss"] = float(np.mean(master_losses)) if master_losses else 0.0
        if joint:
            flat = [slot_batches[s].to_torch() for s in joint]
            data = {
                k: torch.cat([f[k] for f in flat]) for k in ("obs", "actions", "dist_inputs", "advantages")
            }
            data[SUB_POLICY] = torch.cat([f[SUB_POLICY] for f in flat])
            data["advantages"] = standardize_per_group(data["advantages"], data[SUB_POLICY])
            policy = self.policy
            data["logp"] = policy.action_logp(data["dist_inputs"], data["actions"]).detach()

            def sub_loss(d):
                dist_inputs = policy.sub_dist_inputs(d["obs"], d[SUB_POLICY])
                loss = ppo_clip_loss(
                    policy.action_logp(dist_inputs, d["actions"]), d["logp"], d["advantages"], cfg.clip_param
                )
                if cfg.sub_entropy_coeff:
                    loss = loss - cfg.sub_entropy_coeff * policy.action_entropy(dist_inputs).mean()
                return loss

            stats["sub_loss"] = self._ppo("subs", sub_loss, data)
        self._weights_seq_no += 1
        return stats

    def _ppo(self, optimizer_name: str, loss_fn, data: dict[str, torch.Tensor]) -> float:
        """``num_epochs`` passes of shuffled minibatches; returns the first minibatch loss."""
        optimizer = self.get_optimizer(DEFAULT_MODULE_ID, optimizer_name)
        size = len(data["advantages"])
        first = None
        for _ in range(self.config.num_epochs):
            order = torch.randperm(size)
            for start in range(0, size, self.config.minibatch_size):
                idx = order[start : start + self.config.minibatch_size]
                loss = loss_fn({k: v[idx] for k, v in data.items()})
                check_finite(f"{optimizer_name} loss", loss)
                first = loss.item() if first is None else first
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                check_finite(
                    f"{optimizer_name} gradient of", {n: p.grad for n, p in self.policy.named_parameters()}
                )
                optimizer.step()
        return float(first if first is not None else 0.0)
