"""MIME's Learner: MAML's bi-level update on a reward that mixes the task's (extrinsic) reward
with VIME's information gain, the dynamics model meta-learned alongside, the mixing weight
meta-learned from the extrinsic return.

Per sampling stage, for every task's batch (:meth:`MIMELearner.reward_extras`):

- the extrinsic rewards are standardised over the task's batch (``r_ext``; MIME's reference
  does this for every variant); with ``reward_noise_std`` > 0, N(0, std^2) noise is added to
  them (the "MAML + noise" control);
- with ``use_vime``, every transition's information gain under the task's current dynamics
  model (:func:`~tesp.algorithms.mime.bnn.information_gain`) is standardised the same way
  (``r_int``);
- the advantages of each (linear baseline and GAE, as everywhere in the engine) are kept
  separately: both are linear in the rewards, so the advantages of the mixed reward
  ``(1.05 - sigmoid(eta)) r_ext + (sigmoid(eta) + 0.05) r_int`` are the same mix of the two,
  which is what makes them differentiable in eta (:meth:`MIMELearner.advantages`). The mix
  starts after ``pre_epochs`` meta-updates; before, the reward is ``r_ext`` alone.

The policy's inner and outer losses are the engine's on the mixed advantages. After each inner
step the task's dynamics model takes one SGD step (``dyn_lr``) on the ELBO of the stage's
transitions; the post-adaptation episodes' information gain uses the adapted model. The
meta-update then

1. computes ``dL_ext / d eta`` with ``L_ext = -mean_t rho_t r_ext`` on the post-adaptation
   episodes, at the policy adapted with the mixed advantages (the gradient flows through the
   inner step; ``rho`` the ratio to the sampling policy), at the parameters that sampled them;
2. updates the policy (the engine's PPO or TRPO step on the mixed advantages);
3. steps ``eta <- eta - clip(eta_lr * dL_ext/d eta / sigmoid(eta), +-eta_step_clip)`` (the
   reference's update; eta sees only the extrinsic reward);
4. meta-learns the dynamics model: Adam (``dyn_outer_lr``, fresh each meta-update, as the
   reference) on the ELBO of the post-adaptation transitions under each task's adapted model,
   through the model's inner step; 50 steps at the first meta-update, then one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch.func import grad, vmap

from tesp.algorithms.mime import bnn
from tesp.meta.adaptation import adapt
from tesp.meta.advantages import discounted_returns, fit_linear_baseline, gae
from tesp.meta.batch import TaskBatch
from tesp.meta.losses import masked_mean
from tesp.meta.meta_learner import MetaLearner, TorchBatch, Weights
from tesp.nn.distributions import gaussian_logp
from tesp.nn.params import Params, per_task

FIRST_DYNAMICS_STEPS = 50  # Adam steps of the dynamics model at the first meta-update (reference)


def standardise(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` over the real steps of a padded ``[E, T]`` batch (0 on padding)."""
    real = x[mask > 0]
    return ((x - real.mean()) / (real.std() + 1e-8)) * mask


def reward_advantages(rewards: np.ndarray, batch: TaskBatch, gamma: float, lam: float) -> np.ndarray:
    """GAE against the linear baseline refit to these rewards' returns (linear in ``rewards``)."""
    returns = discounted_returns(rewards, batch.mask, gamma)
    values = fit_linear_baseline(batch.obs, returns, batch.mask)
    return gae(rewards, values, batch.mask, gamma, lam).astype(np.float32)


def mixing_weights(eta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MIME's weights of the standardised extrinsic and intrinsic rewards."""
    s = torch.sigmoid(eta)
    return 1.05 - s, s + 0.05


def eta_step(eta: float, grad_eta: float, lr: float, clip: float) -> float:
    """The reference's update of the logit: ``eta - clip(lr * grad / sigmoid(eta), +-clip)``."""
    s = 1.0 / (1.0 + math.exp(-eta))
    return eta - float(np.clip(lr * grad_eta / s, -clip, clip))


class MIMELearner(MetaLearner):
    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        """The policy's optimiser holds the policy (and step sizes) only."""
        module = self.module[module_id].unwrapped()
        params = [p for n, p in module.named_parameters() if not n.startswith(("dynamics.", "eta"))]
        self.register_optimizer(
            module_id=module_id,
            optimizer=torch.optim.Adam(params),
            params=params,
            lr_or_lr_schedule=config.lr,
        )

    # -- the reward ------------------------------------------------------------------------
    @property
    def mixing_on(self) -> bool:
        return self.config.use_vime and int(self.policy.meta_updates) >= self.config.pre_epochs

    def _mix(self) -> tuple[Any, Any]:
        if getattr(self, "_mix_override", None) is not None:
            return self._mix_override
        if not self.mixing_on:
            return 1.0, 0.0
        return mixing_weights(self.policy.eta.detach())

    def advantages(self, batch: TorchBatch) -> torch.Tensor:
        a, b = self._mix()
        adv, mask = a * batch["adv_ext"] + b * batch["adv_int"], batch["mask"]
        if not self.config.normalize_advantages:
            return adv
        mean = masked_mean(adv, mask)
        std = torch.sqrt(masked_mean((adv - mean) ** 2, mask))
        return (adv - mean) / (std + 1e-8)

    def _generator(self, salt: int) -> torch.Generator:
        """Noise for the model's draws, a function of the seed, the meta-update count and the
        call (so a restored run draws the same)."""
        seed = int(self.config.seed or 0) * 1_000_003 + int(self.policy.meta_updates) * 101 + salt
        return torch.Generator().manual_seed(seed)

    def reward_extras(
        self, batches: Sequence[TaskBatch], dynamics: Params, salt: int
    ) -> list[dict[str, np.ndarray]]:
        """Per task: the advantages of the standardised extrinsic and intrinsic rewards (see the
        module docstring), the standardised extrinsic reward and the raw information gain."""
        cfg = self.config
        gains = self.information_gains(batches, dynamics, salt) if cfg.use_vime else None
        rng = np.random.default_rng(self._generator(salt + 7).initial_seed())
        out = []
        for i, b in enumerate(batches):
            ext = standardise(b.rewards, b.mask)
            if cfg.reward_noise_std > 0:
                ext = ext + cfg.reward_noise_std * rng.standard_normal(ext.shape) * b.mask
            extras = {"adv_ext": reward_advantages(ext, b, cfg.gamma, cfg.gae_lambda), "reward_ext": ext}
            if gains is None:
                extras |= {
                    "adv_int": np.zeros_like(b.rewards, np.float32),
                    "information_gain": np.zeros_like(b.rewards),
                }
            else:
                intr = standardise(gains[i], b.mask)
                extras |= {
                    "adv_int": reward_advantages(intr, b, cfg.gamma, cfg.gae_lambda),
                    "information_gain": gains[i],
                }
            out.append({k: v.astype(np.float32) for k, v in extras.items()})
        return out

    def _episodes(
        self, batches: Sequence[TaskBatch]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
        """Every task's episodes in one padded ``[B, T, ...]`` block: observations (the model's
        part), actions, mask, and each task's number of rows."""
        horizon = max(b.mask.shape[1] for b in batches)
        d = self.policy.dyn_obs_dim

        def pad(a: np.ndarray) -> np.ndarray:
            return np.pad(a, [(0, 0), (0, horizon - a.shape[1])] + [(0, 0)] * (a.ndim - 2))

        obs = torch.as_tensor(np.concatenate([pad(b.obs[..., :d]) for b in batches]), dtype=torch.float32)
        act = torch.as_tensor(np.concatenate([pad(b.actions) for b in batches]), dtype=torch.float32)
        mask = torch.as_tensor(np.concatenate([pad(b.mask) for b in batches]), dtype=torch.float32)
        return obs, act, mask, [b.mask.shape[0] for b in batches]

    def information_gains(
        self, batches: Sequence[TaskBatch], dynamics: Params, salt: int
    ) -> list[np.ndarray]:
        """Every step's information gain, all tasks' episodes at once (task i's rows under task
        i's model ``dynamics[k][i]``); per task ``[E, T]``."""
        cfg = self.config
        obs, act, mask, rows = self._episodes(batches)
        x, y, m = bnn.transitions(obs, act, mask)
        owner = torch.repeat_interleave(torch.arange(len(rows)), torch.as_tensor(rows))
        params = {k: v.detach()[owner] for k, v in dynamics.items()}
        g = self._generator(salt)
        noise = [
            torch.randn(*m.shape, n.shape[-1], generator=g)
            for n in bnn.draw_noise(self.policy.dynamics_params())
        ]
        if cfg.information_gain == "second_order":
            gains = bnn.information_gain_second_order(
                params, x, y, m, noise, cfg.second_order_step, cfg.likelihood_sd
            )
        else:
            gains = bnn.information_gain(params, x, y, m, noise, cfg.dyn_lr, cfg.likelihood_sd)
        steps = bnn.step_gains(gains, mask).numpy()
        out, start = [], 0
        for b, n in zip(batches, rows, strict=True):
            out.append(steps[start : start + n, : b.mask.shape[1]])
            start += n
        return out

    # -- the dynamics model's inner step and meta-update ----------------------------------
    def _transition_rows(
        self, batches: Sequence[TaskBatch]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each task's transitions flattened and stacked: ``[T, N, ...]`` inputs, targets, mask."""
        xs, ys = [], []
        d = self.policy.dyn_obs_dim
        for b in batches:
            # copies: the batches arrive read-only from Ray's object store
            obs = torch.tensor(b.obs[..., :d], dtype=torch.float32)
            x, y, m = bnn.transitions(obs, torch.tensor(b.actions, dtype=torch.float32), torch.tensor(b.mask))
            keep = m > 0
            xs.append(x[keep])
            ys.append(y[keep])
        n = max(1, max(len(x) for x in xs))
        mask = torch.stack([torch.cat([torch.ones(len(x)), torch.zeros(n - len(x))]) for x in xs])
        x = torch.stack([torch.cat([x, x.new_zeros(n - len(x), x.shape[-1])]) for x in xs])
        y = torch.stack([torch.cat([y, y.new_zeros(n - len(y), y.shape[-1])]) for y in ys])
        return x, y, mask

    def _elbo(
        self, params: Params, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, noises
    ) -> torch.Tensor:
        """One task's negative ELBO per transition."""
        loss = bnn.elbo_loss(params, x, y, noises, self.policy.dyn_prior_sd, self.config.likelihood_sd, mask)
        return loss / mask.sum().clamp(min=1)

    def _dynamics_noises(self, salt: int) -> list[list[torch.Tensor]]:
        g = self._generator(salt)
        return [
            bnn.draw_noise(self.policy.dynamics_params(), generator=g) for _ in range(self.config.dyn_samples)
        ]

    def dynamics_inner_step(self, dynamics: Params, rows, salt: int, create_graph: bool) -> Params:
        """One SGD step (``dyn_lr``) of every task's model on its transitions ``rows``."""
        x, y, mask = rows
        noises = self._dynamics_noises(salt)
        if not create_graph:
            dynamics = {k: v.detach() for k, v in dynamics.items()}
        grads = vmap(grad(self._elbo), in_dims=(0, 0, 0, 0, None))(dynamics, x, y, mask, noises)
        return {k: v - self.config.dyn_lr * grads[k] for k, v in dynamics.items()}

    def dynamics_update(self, stage_rows: Sequence[tuple], first: bool) -> float:
        """Meta-learn the dynamics model: the post-adaptation transitions' ELBO under each task's
        model adapted on the earlier stages, minimised by Adam over the meta-parameters."""
        params = list(self.policy.dynamics.parameters())
        optimizer = torch.optim.Adam(params, lr=self.config.dyn_outer_lr)
        num_tasks = stage_rows[0][0].shape[0]
        loss = torch.zeros(())
        for _ in range(FIRST_DYNAMICS_STEPS if first else 1):
            dynamics = per_task(self.policy.dynamics_params(), num_tasks)
            for k, rows in enumerate(stage_rows[:-1]):
                dynamics = self.dynamics_inner_step(dynamics, rows, salt=1000 + k, create_graph=True)
            x, y, mask = stage_rows[-1]
            noises = self._dynamics_noises(salt=2000)
            loss = vmap(self._elbo, in_dims=(0, 0, 0, 0, None))(dynamics, x, y, mask, noises).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return loss.item()

    # -- eta ------------------------------------------------------------------------------
    def eta_gradient(self, stages: Sequence[TorchBatch], index: torch.Tensor) -> float:
        """``dL_ext / d eta`` through the inner steps, at the parameters that sampled the stages."""
        eta = self.policy.eta.detach().clone().requires_grad_(True)
        self._mix_override = mixing_weights(eta)
        try:
            theta = {
                k: v.detach().clone().requires_grad_(True)
                for k, v in self.policy.task_params(len(index), index).items()
            }
            sizes = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in self.step_sizes().items()}
            adapted, _ = adapt(
                vmap(self.task_inner_loss), theta, stages[:-1], self.policy.adapted_names(), sizes,
                self.config.inner_grad_clip, create_graph=True,
            )  # fmt: skip

            def extrinsic_loss(params: Params, batch: TorchBatch) -> torch.Tensor:
                new = self.policy.dist_inputs(batch["obs"], params, self.policy.task_latent(params, batch))
                ratio = torch.exp(
                    gaussian_logp(new, batch["actions"])
                    - gaussian_logp(batch["dist_inputs"], batch["actions"])
                )
                return -masked_mean(ratio * batch["reward_ext"], batch["mask"])

            loss = vmap(extrinsic_loss)(adapted, stages[-1]).mean()
            (g,) = torch.autograd.grad(loss, eta)
        finally:
            self._mix_override = None
        return g.item()

    # -- the engine's calls ---------------------------------------------------------------
    def start_tasks(self, task_index: Sequence[int], contexts: Sequence[Any] | None = None) -> list[Weights]:
        weights = super().start_tasks(task_index, contexts)
        with torch.no_grad():
            self._dynamics = per_task(self.policy.dynamics_params(), len(task_index))
            self._dynamics = {k: v.detach().clone() for k, v in self._dynamics.items()}
        self._extras: list[list[dict[str, np.ndarray]]] = []
        return weights

    def _with_extras(self, batches: Sequence[TaskBatch], extras) -> list[TaskBatch]:
        return [replace(b, extras=b.extras | e) for b, e in zip(batches, extras, strict=True)]

    def adapt_tasks(self, batches, contexts=None, next_contexts=None):
        if not batches:
            return super().adapt_tasks(batches, contexts, next_contexts)
        stage = len(self._extras)
        self._extras.append(self.reward_extras(batches, self._dynamics, salt=stage))
        batches = self._with_extras(batches, self._extras[-1])
        out = super().adapt_tasks(batches, contexts, next_contexts)
        if self.config.use_vime:
            rows = self._transition_rows(batches)
            self._dynamics = self.dynamics_inner_step(
                self._dynamics, rows, salt=100 + stage, create_graph=False
            )
        return out

    def meta_update(
        self, stage_batches, task_index, stage_contexts=None, inner_loss=float("nan")
    ) -> dict[str, float]:
        cfg = self.config
        num_stages = len(stage_batches)
        extras = self._extras[: num_stages - 1] + [
            self.reward_extras(stage_batches[-1], self._dynamics, salt=num_stages - 1)
        ]
        stage_batches = [self._with_extras(b, e) for b, e in zip(stage_batches, extras, strict=True)]
        adapt_eta = cfg.adapt_eta and self.mixing_on and num_stages > 1
        grad_eta = 0.0
        if adapt_eta:
            stages = [self._stage(s, None) for s in stage_batches]
            grad_eta = self.eta_gradient(stages, torch.as_tensor(task_index))
        stats = super().meta_update(stage_batches, task_index, stage_contexts, inner_loss)
        if adapt_eta:
            with torch.no_grad():
                self.policy.eta.fill_(
                    eta_step(self.policy.eta.item(), grad_eta, cfg.eta_lr, cfg.eta_step_clip)
                )
            stats["eta_grad"] = grad_eta
        if cfg.use_vime:
            rows = [self._transition_rows(s) for s in stage_batches]
            stats["dynamics_loss"] = self.dynamics_update(rows, first=int(self.policy.meta_updates) == 0)
            stats["information_gain"] = float(
                np.mean(
                    [
                        e["information_gain"][b.mask > 0].mean()
                        for e, b in zip(extras[0], stage_batches[0], strict=True)
                    ]
                )
            )
        stats["mixing_on"] = float(self.mixing_on)  # in this update's losses
        stats["eta"] = torch.sigmoid(self.policy.eta.detach()).item()
        self.policy.meta_updates += 1
        return stats
