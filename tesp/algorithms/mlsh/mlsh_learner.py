"""MLSH's learner: PPO for each task's master on macro steps, PPO for the shared sub-policies.

Each concurrently trained task ("slot") has its own master (``module.masters[slot]``) with its
own Adam optimizer (lr ``master_lr``); the sub-policies have one Adam optimizer (lr
``sub_lr``). Both use PPO-clip with ``num_epochs`` passes over shuffled minibatches of
``minibatch_size``:

- master: one sample per macro step, reward = the sum of the macro step's rewards, GAE over
  macro steps (``gamma``, ``gae_lambda``) against the master's value function;
- sub-policies: every step, pooled over the slots in their joint phase, GAE against the value
  function of the sub-policy that acted at each step; each step's loss uses the sub-policy that
  acted, minus ``sub_entropy_coeff`` times its entropy (0 by default, as in the reference).

With ``baseline: value_function`` (the reference's choice) each policy's loss adds PPO's clipped
value loss of its value function on the TD(lambda) targets; ``baseline: linear`` uses instead
the linear feature baseline refit on each batch (Duan et al. 2016), which sees only the
observation's squares and the time, so it cannot represent a goal-relative value.

The observation filter (``obs_normalization``) is updated with every observation of the
iteration before the losses are formed; the old log-probabilities and values of the PPO ratio and
clip are then the current networks' under the updated filter, as in the reference.

Advantages are standardised per task for the master and, as in the reference, per sub-policy
over the steps it acted for the sub-policies.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

from tesp.algorithms.mlsh.mlsh_rl_module import MACRO_START, SUB_POLICY, MLSHModule
from tesp.meta.advantages import discounted_returns, fit_linear_baseline, gae
from tesp.meta.batch import TaskBatch
from tesp.meta.finite import check_finite
from tesp.meta.losses import clipped_value_loss, ppo_clip_loss

Weights = dict[str, np.ndarray]


def macro_steps(batch: TaskBatch) -> dict[str, np.ndarray]:
    """The master's view of one task batch, padded ``[E, N]``: the observation at the start of
    each macro step, the sub-policy chosen and the sum of the macro step's rewards."""
    starts = batch.extras[MACRO_START] * batch.mask
    num = int(starts.sum(1).max())
    episodes = batch.obs.shape[0]
    obs = np.zeros((episodes, num, batch.obs.shape[-1]), np.float32)
    rewards, mask = np.zeros((episodes, num), np.float32), np.zeros((episodes, num), np.float32)
    subs = np.zeros((episodes, num), np.float32)
    for e in range(episodes):
        idx = np.flatnonzero(starts[e])
        ends = np.append(idx[1:], int(batch.mask[e].sum()))
        obs[e, : len(idx)] = batch.obs[e, idx]
        subs[e, : len(idx)] = batch.extras[SUB_POLICY][e, idx]
        rewards[e, : len(idx)] = [batch.rewards[e, a:b].sum() for a, b in zip(idx, ends, strict=True)]
        mask[e, : len(idx)] = 1.0
    return {"obs": obs, "actions": subs, "rewards": rewards, "mask": mask}


def advantages_and_targets(
    obs: np.ndarray,
    rewards: np.ndarray,
    mask: np.ndarray,
    values: np.ndarray | None,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """GAE against ``values`` (``None``: the linear baseline refit on the batch) and the
    value targets ``A + V`` (the TD(lambda) returns), both ``[E, T]``."""
    if values is None:
        values = fit_linear_baseline(obs, discounted_returns(rewards, mask, gamma), mask)
    values = values * mask
    advantages = gae(rewards, values, mask, gamma, lam)
    return advantages.astype(np.float32), (advantages + values).astype(np.float32)


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

    def snapshot(self) -> dict:
        """Copies of the module's tensors and of every optimizer's state, for :meth:`restore`
        (exact: RLlib's ``set_state`` casts float64 buffers through float32 and skips a module
        state older than the Learner's weights)."""
        return {
            "module": copy.deepcopy(self.policy.state_dict()),
            "optimizers": {
                name: copy.deepcopy(opt.state_dict()) for name, opt in self._named_optimizers.items()
            },
        }

    def restore(self, snapshot: dict) -> None:
        self.policy.load_state_dict(snapshot["module"])
        for name, state in snapshot["optimizers"].items():
            self._named_optimizers[name].load_state_dict(state)
        self._weights_seq_no += 1  # the EnvRunners take the restored weights as new ones

    def reset_master(self, slot: int) -> None:
        """A new task for ``slot``: a freshly initialised master and a fresh optimizer state."""
        fresh = self.policy.new_master()
        self.policy.masters[slot].load_state_dict(fresh.state_dict())
        self.get_optimizer(DEFAULT_MODULE_ID, f"master_{slot}").state.clear()

    def update_mlsh(self, slot_batches: dict[int, TaskBatch], joint: Sequence[int]) -> dict[str, float]:
        """One MLSH iteration: PPO on every slot's master; PPO on the sub-policies with the
        batches of the ``joint`` slots (none: the sub-policies stay as they are)."""
        cfg, policy = self.config, self.policy
        learned = cfg.baseline == "value_function"
        if policy.obs_normalization:
            policy.obs_filter.update(
                torch.cat([torch.as_tensor(b.to_torch()["obs"]) for b in slot_batches.values()])
            )
        stats: dict[str, float] = {}
        master_losses = []
        for slot, batch in slot_batches.items():
            master = policy.masters[slot]
            data = self._master_data(master, macro_steps(batch), learned)

            def master_loss(d, master=master):
                loss = ppo_clip_loss(
                    policy.master_logp(policy.master_logits(master, d["obs"]), d["actions"]),
                    d["logp"],
                    d["advantages"],
                    cfg.clip_param,
                )
                if learned:
                    values = policy.master_value(master, d["obs"])
                    loss = loss + clipped_value_loss(values, d["values"], d["targets"], cfg.clip_param)
                return loss

            master_losses.append(self._ppo(f"master_{slot}", master_loss, data))
        stats["master_loss"] = float(np.mean(master_losses)) if master_losses else 0.0
        if joint:
            data = self._sub_data([slot_batches[s] for s in joint], learned)

            def sub_loss(d):
                dist_inputs = policy.sub_dist_inputs(d["obs"], d[SUB_POLICY])
                loss = ppo_clip_loss(
                    policy.action_logp(dist_inputs, d["actions"]), d["logp"], d["advantages"], cfg.clip_param
                )
                if learned:
                    values = policy.sub_values(d["obs"], d[SUB_POLICY])
                    loss = loss + clipped_value_loss(values, d["values"], d["targets"], cfg.clip_param)
                if cfg.sub_entropy_coeff:
                    loss = loss - cfg.sub_entropy_coeff * policy.action_entropy(dist_inputs).mean()
                return loss

            stats["sub_loss"] = self._ppo("subs", sub_loss, data)
        self._weights_seq_no += 1
        return stats

    @torch.no_grad()
    def _master_data(self, master, macro: dict[str, np.ndarray], learned: bool) -> dict[str, torch.Tensor]:
        """The master's PPO samples of one task: one per macro step."""
        cfg, policy = self.config, self.policy
        obs, mask = macro["obs"], macro["mask"]
        flat_obs = torch.as_tensor(obs.reshape(-1, obs.shape[-1]))
        values = policy.master_value(master, flat_obs).numpy().reshape(mask.shape) if learned else None
        advantages, targets = advantages_and_targets(
            obs, macro["rewards"], mask, values, cfg.gamma, cfg.gae_lambda
        )
        keep = mask.astype(bool)
        data = {
            "obs": torch.as_tensor(obs[keep]),
            "actions": torch.as_tensor(macro["actions"][keep]),
            "advantages": standardize(torch.as_tensor(advantages[keep])),
            "targets": torch.as_tensor(targets[keep]),
        }
        data["logp"] = policy.master_logp(policy.master_logits(master, data["obs"]), data["actions"])
        data["values"] = policy.master_value(master, data["obs"])
        return data

    @torch.no_grad()
    def _sub_data(self, batches: Sequence[TaskBatch], learned: bool) -> dict[str, torch.Tensor]:
        """The sub-policies' PPO samples: every step of ``batches``, each with the sub-policy that acted."""
        cfg, policy = self.config, self.policy
        parts = []
        for b in batches:
            keep = b.mask.astype(bool)
            obs, subs = torch.as_tensor(b.obs), torch.as_tensor(b.extras[SUB_POLICY])
            if learned:
                values = policy.sub_values(obs.reshape(-1, obs.shape[-1]), subs.reshape(-1))
                values = values.numpy().reshape(b.mask.shape)
                advantages, targets = advantages_and_targets(
                    b.obs, b.rewards, b.mask, values, cfg.gamma, cfg.gae_lambda
                )
            else:
                advantages, targets = b.advantages, b.returns
            parts.append(
                {
                    "obs": obs[keep],
                    "actions": torch.as_tensor(b.actions[keep]),
                    SUB_POLICY: subs[keep],
                    "advantages": torch.as_tensor(advantages[keep]),
                    "targets": torch.as_tensor(targets[keep]),
                }
            )
        data = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        data["advantages"] = standardize_per_group(data["advantages"], data[SUB_POLICY])
        data["logp"] = policy.action_logp(
            policy.sub_dist_inputs(data["obs"], data[SUB_POLICY]), data["actions"]
        )
        data["values"] = policy.sub_values(data["obs"], data[SUB_POLICY])
        return data

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
