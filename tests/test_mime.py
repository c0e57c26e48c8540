"""MIME's learner: the mixing formula, the eta step, the mixed advantages, eta's gradient
through the inner step (against finite differences), and the model in the checkpoint."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tesp.algorithms.mime.mime_learner import eta_step, mixing_weights, reward_advantages, standardise
from tesp.settings import resolve_config

from .helpers import local_learner

SMALL = {
    "meta_batch_size": 3,
    "episodes_per_task": 4,
    "num_envs_per_env_runner": 4,
    "num_env_runners": 0,
    "validation_freq": 0,
    "pre_epochs": 0,
    "seed": 0,
}


def test_mixing_weights_and_eta_step():
    a, b = mixing_weights(torch.tensor(0.0))
    assert (a.item(), b.item()) == pytest.approx((0.55, 0.55))
    a, b = mixing_weights(torch.tensor(math.log(0.1 / 0.9)))  # sigmoid(eta) = 0.1, the initial weight
    assert (a.item(), b.item()) == pytest.approx((0.95, 0.15))
    # eta - clip(lr * grad / sigmoid(eta), +-0.3)
    assert eta_step(0.0, 1e-4, lr=1000.0, clip=0.3) == pytest.approx(-0.2)
    assert eta_step(0.0, 1.0, lr=1000.0, clip=0.3) == pytest.approx(-0.3)
    assert eta_step(0.0, -1.0, lr=1000.0, clip=0.3) == pytest.approx(0.3)


def test_standardise_uses_only_real_steps():
    x = np.array([[1.0, 2.0, 9.0], [3.0, 0.0, 0.0]])
    mask = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    z = standardise(x, mask)
    real = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(z[mask > 0], (real - real.mean()) / real.std(), rtol=1e-6)
    assert (z[mask == 0] == 0).all()


@pytest.fixture(scope="module")
def mime(ray_session):
    config, _, _ = resolve_config("mime", "pendulum_dense", SMALL)
    algo = config.build_algo()
    yield algo
    algo.stop()


@pytest.mark.ray
def test_mixed_advantages_are_the_advantages_of_the_mixed_reward(mime):
    """The learner mixes the two advantages; by linearity that is GAE of the mixed reward."""
    learner = local_learner(mime)
    rollout = mime.adapt_on_tasks(mime.task_env.sample_tasks(3))
    batch = rollout.stages[0][0].batch
    (extras,) = learner.reward_extras([batch], {k: v[:1] for k, v in learner._dynamics.items()}, salt=0)
    with torch.no_grad():
        learner.policy.eta.fill_(0.3)
    a, b = (w.item() for w in mixing_weights(torch.tensor(0.3)))
    gains = extras["information_gain"]
    assert gains[batch.mask > 0].min() >= 0 and gains[batch.mask > 0].max() > 0
    mixed = a * standardise(batch.rewards, batch.mask) + b * standardise(gains, batch.mask)
    expected = reward_advantages(mixed, batch, learner.config.gamma, learner.config.gae_lambda)
    learner.config.normalize_advantages = False
    try:
        stage = learner._stage([batch.__class__(**{**batch.__dict__, "extras": batch.extras | extras})], None)
        got = learner.advantages({k: v[0] for k, v in stage.items()})
    finally:
        learner.config.normalize_advantages = True
    np.testing.assert_allclose(got.numpy(), expected[batch.mask > 0], rtol=1e-3, atol=1e-4)


@pytest.mark.ray
def test_eta_gradient_matches_finite_differences(mime):
    learner = local_learner(mime)
    rollout = mime.adapt_on_tasks(mime.task_env.sample_tasks(3))
    index = torch.as_tensor(rollout.index)
    batches = [[stage[i].batch for stage in rollout.stages] for i in range(3)]
    extras = learner._extras[:1] + [
        learner.reward_extras([b[-1] for b in batches], learner._dynamics, salt=1)
    ]
    stages = [
        learner._stage(learner._with_extras([b[k] for b in batches], extras[k]), None) for k in range(2)
    ]
    learner.config.normalize_advantages = False  # smooth in eta (the standardisation is too, but flatter)
    try:
        got = learner.eta_gradient(stages, index)

        def loss_at(eta: float) -> float:
            with torch.no_grad():
                learner.policy.eta.fill_(eta)
            # L_ext at eta, recomputed here without autograd through eta
            e = torch.tensor(eta, dtype=torch.float64)
            learner._mix_override = tuple(w.float() for w in mixing_weights(e))
            try:
                from torch.func import vmap

                from tesp.meta.adaptation import adapt
                from tesp.meta.losses import masked_mean
                from tesp.nn.distributions import gaussian_logp

                theta = {
                    k: v.detach().clone().requires_grad_(True)
                    for k, v in learner.policy.task_params(3, index).items()
                }
                adapted, _ = adapt(
                    vmap(learner.task_inner_loss), theta, stages[:-1], learner.policy.adapted_names(),
                    learner.step_sizes(), learner.config.inner_grad_clip, create_graph=False,
                )  # fmt: skip
                post = stages[-1]
                total = 0.0
                for t in range(3):
                    params = {k: v[t] for k, v in adapted.items()}
                    new = learner.policy.dist_inputs(post["obs"][t], params)
                    logp = gaussian_logp(new, post["actions"][t])
                    ratio = torch.exp(logp - gaussian_logp(post["dist_inputs"][t], post["actions"][t]))
                    total += -masked_mean(ratio * post["reward_ext"][t], post["mask"][t]).item()
                return total / 3
            finally:
                learner._mix_override = None

        eta0 = learner.policy.eta.item()
        h = 1e-2
        up, down = loss_at(eta0 + h), loss_at(eta0 - h)
        with torch.no_grad():
            learner.policy.eta.fill_(eta0)
        numeric = (up - down) / (2 * h)
        assert abs(numeric) > 1e-7
        assert got == pytest.approx(numeric, rel=0.05, abs=1e-8)
    finally:
        learner.config.normalize_advantages = True


@pytest.mark.ray
def test_training_moves_eta_and_the_model_and_checkpoints_them(mime, tmp_path):
    learner = local_learner(mime)
    before = {k: v.detach().clone() for k, v in learner.policy.dynamics_params().items()}
    eta = learner.policy.eta.item()
    meta = mime.train()["meta"]
    assert np.isfinite(meta["dynamics_loss"]) and meta["information_gain"] > 0 and meta["mixing_on"] == 1.0
    assert learner.policy.eta.item() != eta
    assert any(not torch.equal(before[k], v) for k, v in learner.policy.dynamics_params().items())
    path = mime.save_to_path(str(tmp_path / "ckpt"))
    restored = type(mime).from_checkpoint(path)
    try:
        other = local_learner(restored).policy
        assert other.eta.item() == pytest.approx(learner.policy.eta.item())
        assert int(other.meta_updates) == int(learner.policy.meta_updates)
        for k, v in learner.policy.dynamics_params().items():
            torch.testing.assert_close(other.dynamics[k], v)
    finally:
        restored.stop()
