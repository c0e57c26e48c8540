"""One task's sampled episodes as zero-padded arrays, with advantages attached.

EnvRunners turn their episodes into a :class:`TaskBatch` right after sampling
(:func:`make_batch`), fit the linear baseline and compute GAE there, in parallel,
and ship these compact arrays to the learner instead of episode objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from tesp.meta.advantages import discounted_returns, fit_linear_baseline, gae


@dataclass
class TaskBatch:
    """Episodes of one task from one sampling round, padded to the longest episode.

    Arrays are ``[E, T, ...]`` (E episodes, T steps); ``mask`` is 1 on real steps.
    """

    obs: np.ndarray  # [E, T, obs_dim], the observation each action was taken in
    actions: np.ndarray  # [E, T, act_dim], the raw sampled actions
    dist_inputs: np.ndarray  # [E, T, 2*act_dim], the sampling policy's [mean, log_std]
    rewards: np.ndarray  # [E, T]
    mask: np.ndarray  # [E, T]
    returns: np.ndarray  # [E, T] discounted returns-to-go
    advantages: np.ndarray  # [E, T] GAE against the linear baseline
    # Other per-step module outputs the EnvRunner recorded, padded like the rest: MAESN's
    # per-episode noise ``latent_noise`` [E, T, d]; MLSH's ``sub_policy``, ``macro_start``, ...
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return int(self.mask.sum())

    @property
    def episode_lengths(self) -> np.ndarray:
        return self.mask.sum(axis=1)

    @property
    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode."""
        return (self.rewards * self.mask).sum(axis=1)

    def to_torch(self) -> dict[str, torch.Tensor]:
        """Flattened tensors of the real steps (padding dropped), float32, extras included."""
        keep = self.mask.astype(bool)
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("mask", "extras")}
        return {k: torch.as_tensor(v[keep], dtype=torch.float32) for k, v in (arrays | self.extras).items()}


def stack_tasks(batches: Sequence[TaskBatch]) -> dict[str, torch.Tensor]:
    """Flatten each task's real steps and stack the tasks: ``[T, N, ...]`` with a ``mask``.

    N is the largest number of steps of any task; shorter tasks are zero-padded (mask 0).
    """
    flat = [b.to_torch() for b in batches]
    longest = max(f["rewards"].shape[0] for f in flat)
    out = {}
    for key in flat[0]:
        rows = []
        for f in flat:
            x = f[key]
            rows.append(torch.cat([x, x.new_zeros((longest - x.shape[0], *x.shape[1:]))]))
        out[key] = torch.stack(rows)
    out["mask"] = torch.stack(
        [
            torch.cat([torch.ones(f["rewards"].shape[0]), torch.zeros(longest - f["rewards"].shape[0])])
            for f in flat
        ]
    )
    return out


def make_batch(obs, actions, dist_inputs, rewards, mask, gamma: float, lam: float, extras=None) -> TaskBatch:
    """Build a :class:`TaskBatch` from padded arrays: fit the baseline, compute GAE."""
    returns = discounted_returns(rewards, mask, gamma)
    values = fit_linear_baseline(obs, returns, mask)
    advantages = gae(rewards, values, mask, gamma, lam)
    return TaskBatch(
        obs=obs,
        actions=actions,
        dist_inputs=dist_inputs,
        rewards=rewards,
        mask=mask,
        returns=returns.astype(np.float32),
        advantages=advantages.astype(np.float32),
        extras=extras or {},
    )


def episodes_batch(episodes: Sequence[dict], success: Sequence[bool] | None = None) -> TaskBatch:
    """Evaluated episodes (each ``obs [t, obs_dim]``, ``actions [t, act_dim]``, ``rewards [t]``)
    as one padded :class:`TaskBatch`, a row per episode, with each episode's ``success`` where
    given; returns and advantages left at 0 (nothing is trained on it)."""
    length = max(1, max(len(e["rewards"]) for e in episodes))

    def pad(name: str) -> np.ndarray:
        first = np.asarray(episodes[0][name])
        out = np.zeros((len(episodes), length, *first.shape[1:]), dtype=np.float32)
        for i, e in enumerate(episodes):
            out[i, : len(e[name])] = e[name]
        return out

    mask = np.zeros((len(episodes), length), dtype=np.float32)
    for i, e in enumerate(episodes):
        mask[i, : len(e["rewards"])] = 1.0
    actions = pad("actions")
    extras = {}
    if success is not None:
        extras["success"] = mask * np.asarray(success, dtype=np.float32)[:, None]
    zeros = np.zeros_like(mask)
    return TaskBatch(
        obs=pad("obs"),
        actions=actions,
        dist_inputs=np.zeros(actions.shape[:2] + (2 * actions.shape[-1],), dtype=np.float32),
        rewards=pad("rewards"),
        mask=mask,
        returns=zeros,
        advantages=zeros,
        extras=extras,
    )
