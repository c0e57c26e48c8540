"""Returns, GAE and the linear feature baseline (docs/original_release.md#policy).

All functions work on zero-padded ``[episodes, time]`` arrays with a 0/1 ``mask``; padded
entries of the outputs are 0.

- Discounted returns-to-go ``G_t = sum_l gamma^l r_{t+l}``, bootstrapping with 0 at the end
  of every episode (also when it was cut by the horizon), as the reference does.
- GAE (Schulman et al. 2016, eq. 16): ``delta_t = r_t + gamma b_{t+1} - b_t`` with
  ``b_L = 0``, ``A_t = sum_l (gamma lambda)^l delta_{t+l}``.
- Linear feature baseline (Duan et al. 2016, rllab): ridge regression of ``G_t`` on
  ``[o, o^2, t/100, (t/100)^2, (t/100)^3, 1]`` (``o`` clipped to +-10), refit on every batch.
"""

from __future__ import annotations

import numpy as np


def discounted_returns(rewards: np.ndarray, mask: np.ndarray, gamma: float) -> np.ndarray:
    """``G_t`` for each episode (row) of a padded reward array."""
    rewards = rewards * mask
    out = np.zeros_like(rewards, dtype=np.float64)
    running = np.zeros(rewards.shape[0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, t] + gamma * running * mask[:, t]
        out[:, t] = running
    return out * mask


def gae(rewards: np.ndarray, values: np.ndarray, mask: np.ndarray, gamma: float, lam: float) -> np.ndarray:
    """Generalised advantage estimates with a zero value after each episode's last step."""
    values = values * mask
    next_values = np.concatenate([values[:, 1:], np.zeros((values.shape[0], 1))], axis=1)
    deltas = (rewards + gamma * next_values - values) * mask
    return discounted_returns(deltas, mask, gamma * lam)


def baseline_features(obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """rllab's linear-baseline features for padded observations ``[E, T, obs_dim]``."""
    o = np.clip(obs.reshape(obs.shape[0], obs.shape[1], -1), -10.0, 10.0)
    t = np.broadcast_to(np.arange(obs.shape[1])[None, :, None] / 100.0, o.shape[:2] + (1,))
    ones = np.ones_like(t)
    feats = np.concatenate([o, o**2, t, t**2, t**3, ones], axis=-1)
    return feats * mask[..., None]


def fit_linear_baseline(
    obs: np.ndarray, returns: np.ndarray, mask: np.ndarray, reg: float = 1e-5, tries: int = 5
) -> np.ndarray:
    """Fit the baseline on a batch and return its predictions on that same batch.

    Solves ``(X^T X + reg I) w = X^T G``; if the solution is not finite the ridge
    coefficient is multiplied by 10, at most ``tries`` times (as rllab does).
    """
    feats = baseline_features(obs, mask)
    x = feats[mask > 0]
    y = returns[mask > 0]
    xtx, xty = x.T @ x, x.T @ y
    eye = np.eye(x.shape[1])
    weights = np.zeros(x.shape[1])
    for _ in range(tries):
        try:
            weights = np.linalg.solve(xtx + reg * eye, xty)
        except np.linalg.LinAlgError:
            weights = np.full(x.shape[1], np.nan)
        if np.all(np.isfinite(weights)):
            break
        reg *= 10.0
    else:
        weights = np.zeros(x.shape[1])
    return (feats @ weights) * mask
