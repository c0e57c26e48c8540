"""What each method's inner loop adapts, its regulariser, and how it samples, through the real learner."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tesp.algorithms.tesp.episode_buffer import EpisodeBuffer, stack_buffers
from tesp.meta.rollout import Rollout
from tesp.meta.sampler import SampleJob
from tesp.nn.distributions import gaussian_kl
from tesp.settings import resolve_config

from .helpers import local_learner

pytestmark = pytest.mark.ray

SMALL = {"meta_batch_size": 2, "episodes_per_task": 3, "num_envs_per_env_runner": 3, "num_env_runners": 0}

# Which parameters each method's inner step must change: a predicate on the parameter name.
ADAPTED = {
    "maml": lambda name: name.startswith("pi."),
    "meta_sgd": lambda name: name.startswith("pi."),
    "adaptsv": lambda name: name == "latent",
    "maesn": lambda name: name in ("latent_mean", "latent_log_std"),
    "tesp": lambda name: name.startswith("encoder."),
    "tesp_adapt_policy": lambda name: name.startswith(("encoder.", "pi.")),
}


def build(alg: str, **overrides):
    small = SMALL | ({"model.encoder_units": 8} if alg.startswith("tesp") else {})
    config, _, _ = resolve_config(alg, "point", {**small, "seed": 0, **overrides})
    return config.build_algo()


def sample(algo, tasks, weights):
    results = algo.sampler.sample(
        [SampleJob(i, t, w) for i, (t, w) in enumerate(zip(tasks, weights, strict=True))]
    )
    return [results[i] for i in range(len(tasks))]


def start(algo, tasks):
    """Each task's starting params, weights and context (TESP: the buffer of its warm-up round)."""
    learner = local_learner(algo)
    index = [int(t.get("index", -1)) for t in tasks]
    weights = learner.start_tasks(index)
    contexts = algo.initial_contexts(tasks, Rollout(index, weights[0]), weights)
    if contexts is not None:
        weights = learner.start_tasks(index, contexts)
    return learner, index, learner.current_task_params(), weights, contexts


@pytest.fixture(scope="module", params=sorted(ADAPTED))
def method(request, ray_session):
    algo = build(request.param)
    yield request.param, algo
    algo.stop()


def test_inner_step_changes_exactly_the_adapted_parameters(method):
    name, algo = method
    tasks = algo.task_env.sample_tasks(2)
    learner, index, params, weights, buffers = start(algo, tasks)
    before = {k: v.detach().clone() for k, v in learner.policy.state_dict().items()}
    results = sample(algo, tasks, weights)
    learner.adapt_tasks([r.batch for r in results], buffers, buffers)
    adapted = learner.current_task_params()
    for task, (old, new) in enumerate(zip(params, adapted, strict=True)):
        assert set(new) == set(old)
        for key in old:
            changed = not np.array_equal(new[key], old[key])
            assert changed == ADAPTED[name](key), f"{name}: {key} changed={changed} (task {task})"
    # The learner's own parameters are untouched by adaptation.
    for key, value in learner.policy.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_tesp_env_runners_sample_with_the_learners_embedding(ray_session):
    """The z an EnvRunner conditions on is the z the learner computes from the same buffer and
    encoder weights: the recorded action distributions match the learner's recomputation."""
    algo = build("tesp", episodes_per_task=4)
    try:
        tasks = algo.task_env.sample_tasks(2)
        learner, _, params, weights, buffers = start(algo, tasks)
        results = sample(algo, tasks, weights)
        policy = learner.policy
        for task, result in enumerate(results):
            theta = {k: torch.as_tensor(v) for k, v in params[task].items()}
            stacked = {k: v[0] for k, v in stack_buffers([buffers[task]]).items()}
            with torch.no_grad():
                z = policy.task_latent(theta, stacked)
                flat = result.batch.to_torch()
                expected = policy.dist_inputs(flat["obs"], theta, z)
            assert z.abs().sum() > 0  # a non-trivial embedding of the warm-up episodes
            np.testing.assert_allclose(weights[task]["latent"], z.numpy(), rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(flat["dist_inputs"], expected, rtol=1e-5, atol=1e-6)
        # The two tasks' buffers differ, and so do their embeddings.
        assert not np.allclose(weights[0]["latent"], weights[1]["latent"])
    finally:
        algo.stop()


def test_tesp_encoder_can_read_the_sampled_actions(ray_session):
    """``encoder_inputs="action"``: the buffer stores ``[o_t, a_t, r_t]`` of the sampled episodes
    (not the distribution's mean and log-std), the encoder is that wide, and the inner step adapts it."""
    algo = build("tesp", encoder_inputs="action")
    try:
        width = 2 + 2 + 1  # point: 2-d observations and actions, then the reward
        tasks = algo.task_env.sample_tasks(2)
        learner, _, params, weights, buffers = start(algo, tasks)
        assert learner.policy.encoder.kernel.shape[0] == width
        assert all(b.inputs.shape[-1] == width and len(b) > 0 for b in buffers)
        results = sample(algo, tasks, weights)
        batch = results[0].batch
        buffer = EpisodeBuffer.empty(width).add(batch, capacity=100, inputs="action")
        order = np.argsort(-batch.episode_returns, kind="stable")
        for row, episode in enumerate(order):
            n = int(batch.mask[episode].sum())
            np.testing.assert_array_equal(buffer.inputs[row, :n, 2:4], batch.actions[episode, :n])
            assert not np.array_equal(buffer.inputs[row, :n, 2:4], batch.dist_inputs[episode, :n, :2])
        learner.adapt_tasks([r.batch for r in results], buffers, buffers)
        adapted = learner.current_task_params()[0]
        assert any(
            not np.array_equal(adapted[k], params[0][k]) for k in params[0] if k.startswith("encoder.")
        )
    finally:
        algo.stop()


def test_maesn_draws_one_latent_per_episode_and_updates_only_the_sampled_tasks(ray_session):
    algo = build("maesn")
    try:
        learner = local_learner(algo)
        table = learner.policy.task_latent_mean
        with torch.no_grad():  # distinct task rows, so the runner's mu is visibly the task's
            table.copy_(torch.randn_like(table))
        tasks = algo.task_env.sample_tasks(2)
        _, index, params, weights, _ = start(algo, tasks)
        for task, i in enumerate(index):
            np.testing.assert_allclose(weights[task]["latent_mean"], table[i].detach().numpy())
        results = sample(algo, tasks, weights)
        noise = results[0].batch.extras["latent_noise"]  # [E, T, d]
        mask = results[0].batch.mask.astype(bool)
        for e in range(noise.shape[0]):
            steps = noise[e][mask[e]]
            np.testing.assert_array_equal(steps, np.broadcast_to(steps[0], steps.shape))  # once per episode
        assert not np.allclose(noise[0, 0], noise[1, 0])  # and a new draw for each episode
        # The recorded distributions are those of z = mu + sigma * eps under the task's weights.
        theta = {k: torch.as_tensor(v) for k, v in params[0].items()}
        flat = results[0].batch.to_torch()
        with torch.no_grad():
            expected = learner.policy.dist_inputs(flat["obs"], theta, learner.policy.task_latent(theta, flat))
        torch.testing.assert_close(flat["dist_inputs"], expected, rtol=1e-5, atol=1e-6)

        before = table.detach().clone()
        adapted_weights, _ = learner.adapt_tasks([r.batch for r in results])
        post = sample(algo, tasks, adapted_weights)
        learner.meta_update([[r.batch for r in results], [p.batch for p in post]], index)
        moved = (table.detach() != before).any(dim=1)
        assert moved[index].all() and moved.sum() == len(set(index))
    finally:
        algo.stop()


def test_embedding_regulariser_value_and_gradient(ray_session):
    algo = build("adaptsv", embedding_reg_coeff=0.3, **{"model.latent_dim": 4})
    try:
        learner = local_learner(algo)
        params = {k: v[0] for k, v in learner.policy.task_params(1).items()}
        z = torch.tensor([0.5, -1.0, 2.0, 0.0], requires_grad=True)
        params["latent"] = z
        n = 5
        batch = {
            "obs": torch.zeros(n, 2),
            "actions": torch.zeros(n, 2),
            "dist_inputs": torch.zeros(n, 4),
            "advantages": torch.zeros(n),
            "mask": torch.ones(n),
        }
        terms = learner.task_outer_terms(params, batch)
        # eta * mean_j z_j^2 = 0.3 * (0.25 + 1 + 4 + 0) / 4
        assert terms["regularizer"].item() == pytest.approx(0.3 * 5.25 / 4)
        assert terms["embedding_norm"].item() == pytest.approx(np.sqrt(5.25))
        (grad,) = torch.autograd.grad(terms["regularizer"], z)
        torch.testing.assert_close(grad, 2 * 0.3 * z.detach() / 4)
        # With zero advantages the PPO term is 0, so the outer loss is the regulariser alone.
        assert terms["ppo"].item() == pytest.approx(terms["regularizer"].item())
    finally:
        algo.stop()


def test_tesp_regulariser_reaches_the_encoder_through_z(ray_session):
    """TESP's eta * mean_j z_j^2 is on z = encoder(buffer); its gradient w.r.t. the encoder is
    (2 eta / d) z^T dz/dtheta, checked against autograd on z alone."""
    algo = build("tesp", embedding_reg_coeff=0.5)
    try:
        learner = local_learner(algo)
        params = {
            k: v[0].detach().clone().requires_grad_(True) for k, v in learner.policy.task_params(1).items()
        }
        rng = np.random.default_rng(0)
        buffer = EpisodeBuffer(
            inputs=rng.normal(size=(3, 6, 2 + 4 + 1)).astype(np.float32),
            mask=np.array([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4], np.float32),
            returns=np.zeros(3),
        )
        batch = {k: v[0] for k, v in stack_buffers([buffer]).items()} | {
            "obs": torch.zeros(4, 2),
            "actions": torch.zeros(4, 2),
            "dist_inputs": torch.zeros(4, 4),
            "advantages": torch.zeros(4),
            "mask": torch.ones(4),
        }
        terms = learner.task_outer_terms(params, batch)
        z = learner.policy.task_latent(params, batch)
        d = z.numel()
        assert terms["regularizer"].item() == pytest.approx(
            0.5 * float((z.detach() ** 2).sum()) / d, rel=1e-5
        )
        name = "encoder.projection.weight"
        (got,) = torch.autograd.grad(terms["regularizer"], params[name])
        (want,) = torch.autograd.grad(z, params[name], grad_outputs=2 * 0.5 * z.detach() / d)
        torch.testing.assert_close(got, want)
        assert got.abs().sum() > 0
    finally:
        algo.stop()


def test_maesn_prior_kl_matches_the_closed_form():
    """KL(N(mu, sigma^2) || N(0, I)) = sum_j (sigma_j^2 + mu_j^2 - 1) / 2 - log sigma_j."""
    from tesp.algorithms.maesn.maesn_learner import latent_prior_kl

    mu = torch.tensor([[0.5, -1.0, 0.0], [0.0, 0.0, 0.0]])
    log_sigma = torch.tensor([[0.1, -0.3, 0.7], [0.0, 0.0, 0.0]])
    kl = latent_prior_kl({"latent_mean": mu, "latent_log_std": log_sigma})
    sigma2 = torch.exp(2 * log_sigma)
    closed = 0.5 * (sigma2 + mu**2 - 1).sum(-1) - log_sigma.sum(-1)
    torch.testing.assert_close(kl, closed)
    assert kl[1].item() == 0.0  # the prior itself
    torch.testing.assert_close(
        gaussian_kl(torch.cat([mu, log_sigma], -1), torch.zeros(2, 6)), closed
    )  # the same function as the policy's KL
