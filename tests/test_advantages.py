import numpy as np
import pytest

from tesp.meta.advantages import baseline_features, discounted_returns, fit_linear_baseline, gae
from tesp.meta.batch import make_batch


def test_discounted_returns_by_hand():
    rewards = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]])
    mask = np.array([[1, 1, 1], [1, 1, 0]], dtype=float)
    g = 0.5
    expected = np.array([[1 + g * 2 + g * g * 3, 2 + g * 3, 3], [4 + g * 5, 5, 0]])
    np.testing.assert_allclose(discounted_returns(rewards, mask, g), expected)


def test_gae_by_hand():
    rewards = np.array([[1.0, -1.0, 2.0]])
    values = np.array([[0.5, 0.2, -0.3]])
    mask = np.ones((1, 3))
    gamma, lam = 0.9, 0.8
    # b_3 = 0 at the end of the episode, even if it was cut by the horizon.
    d = [1.0 + gamma * 0.2 - 0.5, -1.0 + gamma * -0.3 - 0.2, 2.0 + 0.0 - -0.3]
    gl = gamma * lam
    expected = [d[0] + gl * d[1] + gl**2 * d[2], d[1] + gl * d[2], d[2]]
    np.testing.assert_allclose(gae(rewards, values, mask, gamma, lam)[0], expected)


def test_gae_padding_is_ignored():
    rewards = np.array([[1.0, 2.0, 99.0]])
    values = np.array([[0.3, 0.1, 99.0]])
    short = gae(rewards, values, np.array([[1.0, 1.0, 0.0]]), 0.99, 0.97)
    alone = gae(rewards[:, :2], values[:, :2], np.ones((1, 2)), 0.99, 0.97)
    np.testing.assert_allclose(short[:, :2], alone)
    assert short[0, 2] == 0


def test_gae_lambda_one_is_returns_minus_baseline():
    rng = np.random.default_rng(0)
    rewards, values = rng.normal(size=(3, 7)), rng.normal(size=(3, 7))
    mask = np.ones((3, 7))
    np.testing.assert_allclose(
        gae(rewards, values, mask, 0.95, 1.0), discounted_returns(rewards, mask, 0.95) - values, atol=1e-12
    )


def test_linear_baseline_is_ridge_least_squares():
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(4, 6, 2))
    mask = np.ones((4, 6))
    mask[3, 4:] = 0
    returns = rng.normal(size=(4, 6)) * mask
    pred = fit_linear_baseline(obs, returns, mask, reg=1e-5)
    # Hand-built design matrix for the real steps: [o, o^2, t/100, (t/100)^2, (t/100)^3, 1].
    rows, targets = [], []
    for e in range(4):
        for t in range(6):
            if mask[e, t]:
                o, s = np.clip(obs[e, t], -10, 10), t / 100
                rows.append(np.concatenate([o, o**2, [s, s**2, s**3, 1.0]]))
                targets.append(returns[e, t])
    x, y = np.array(rows), np.array(targets)
    w = np.linalg.solve(x.T @ x + 1e-5 * np.eye(x.shape[1]), x.T @ y)
    np.testing.assert_allclose(pred[mask > 0], x @ w, rtol=1e-8, atol=1e-10)
    assert np.all(pred[mask == 0] == 0)
    assert baseline_features(obs, mask).shape == (4, 6, 2 * 2 + 4)


def test_baseline_fits_a_linear_target_exactly():
    obs = np.random.default_rng(2).normal(size=(5, 10, 1))
    mask = np.ones((5, 10))
    returns = 3.0 * obs[..., 0] - 2.0 + 0.5 * np.arange(10)[None] / 100
    np.testing.assert_allclose(fit_linear_baseline(obs, returns, mask), returns, atol=1e-4)


@pytest.mark.parametrize("lam", [0.97, 1.0])
def test_make_batch_attaches_returns_and_advantages(lam):
    rng = np.random.default_rng(3)
    obs, act = rng.normal(size=(2, 4, 2)), rng.normal(size=(2, 4, 2))
    rewards = rng.normal(size=(2, 4))
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=np.float32)
    batch = make_batch(obs, act, np.zeros((2, 4, 4)), rewards * mask, mask, 0.99, lam)
    assert batch.num_steps == 6
    np.testing.assert_allclose(batch.episode_returns, (rewards * mask).sum(1), rtol=1e-6)
    flat = batch.to_torch()
    assert flat["obs"].shape == (6, 2) and flat["advantages"].shape == (6,)
