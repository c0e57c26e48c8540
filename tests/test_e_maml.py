"""E-MAML's exploration term (Stadie et al. 2018): the credit, the term's gradient by hand, and the
outer loss of the real learner being MAML's plus exactly that term."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tesp.algorithms.e_maml.e_maml_learner import CREDIT, exploration_term, post_update_credit
from tesp.settings import resolve_config

from .helpers import local_learner

SMALL = {
    "meta_batch_size": 3,
    "episodes_per_task": 4,
    "num_envs_per_env_runner": 4,
    "num_env_runners": 0,
    "validation_freq": 0,
    "seed": 0,
}


def test_credit_is_each_tasks_post_update_return_standardised_over_tasks():
    # 3 tasks, 2 episodes each, flattened steps [T, N] with padding (mask 0)
    rewards = torch.tensor([[1.0, 1.0, 1.0, 9.0], [0.0, 2.0, 0.0, 0.0], [-1.0, -1.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    credit = post_update_credit({"rewards": rewards, "mask": mask}, episodes=2)
    returns = np.array([3.0, 2.0, -2.0]) / 2  # the padded 9 does not count
    np.testing.assert_allclose(credit.numpy(), (returns - returns.mean()) / returns.std(), rtol=1e-5)
    assert post_update_credit({"rewards": rewards[:1], "mask": mask[:1]}, episodes=2).item() == 0.0


def test_exploration_term_gradient_is_minus_credit_times_the_mean_score():
    # pi(a | s) = N(a; w s, 1): d log pi / d w = (a - w s) s
    g = torch.Generator().manual_seed(0)
    s, a = torch.randn(6, generator=g), torch.randn(6, generator=g)
    mask = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    w = torch.tensor(0.3, requires_grad=True)
    logp = -0.5 * (a - w * s) ** 2
    term = exploration_term(logp, logp.detach(), torch.full((6,), 0.7), mask)
    (grad,) = torch.autograd.grad(term, w)
    score = ((a - 0.3 * s) * s)[:4].mean()
    assert term.item() == pytest.approx(-0.7)  # rho = 1 at the sampling parameters
    assert grad.item() == pytest.approx(-0.7 * score.item(), rel=1e-5)


@pytest.mark.ray
def test_outer_loss_is_mamls_plus_the_weighted_term(ray_session):
    """The real learner's outer loss at coefficient c minus MAML's (c = 0) is c times the term
    recomputed here from the pre-update batch, and so are their gradients."""
    config, _, _ = resolve_config("e_maml", "point", SMALL)
    algo = config.build_algo()
    try:
        rollout = algo.adapt_on_tasks(algo.task_env.sample_tasks(3))
        learner = local_learner(algo)
        policy = learner.policy
        batches = [[stage[i].batch for stage in rollout.stages] for i in range(3)]
        stages = learner.prepare_stages([learner._stage([b[k] for b in batches], None) for k in range(2)])
        index = torch.as_tensor(rollout.index)
        pre = stages[0]
        returns = np.array([b[-1].episode_returns.mean() for b in batches])
        np.testing.assert_allclose(
            pre[CREDIT][:, 0].numpy(), (returns - returns.mean()) / returns.std(), rtol=1e-4, atol=1e-6
        )
        with torch.no_grad():  # move theta away from the sampling parameters: rho != 1
            for p in policy.pi.parameters():
                p.add_(0.02 * torch.randn_like(p))

        def loss_and_grad(coeff):
            learner.config.e_maml_coeff = coeff
            policy.zero_grad()
            loss = learner._objective(stages, index)["ppo"]
            loss.backward()
            return loss.item(), [p.grad.clone() for p in policy.parameters()]

        # the term by hand: -mean_i c_i mean_t rho_t on the pre-update steps, at theta
        from tesp.nn.distributions import gaussian_logp

        terms = []
        for t in range(3):
            m = pre["mask"][t]
            new = policy.dist_inputs(
                pre["obs"][t], {k: v[t] for k, v in policy.task_params(3, index).items()}
            )
            rho = torch.exp(
                gaussian_logp(new, pre["actions"][t])
                - gaussian_logp(pre["dist_inputs"][t], pre["actions"][t])
            )
            terms.append(-(rho * pre[CREDIT][t] * m).sum() / m.sum())
        term = torch.stack(terms).mean()
        term_grad = torch.autograd.grad(term, list(policy.parameters()), allow_unused=True)

        base_loss, base_grad = loss_and_grad(0.0)
        loss, grad = loss_and_grad(0.5)
        # (the credits sum to 0 over the tasks, so the term's value is small; its gradient is not)
        assert max(tg.abs().max().item() for tg in term_grad if tg is not None) > 1e-3
        assert loss - base_loss == pytest.approx(0.5 * term.item(), rel=1e-4, abs=1e-6)
        for g, g0, tg in zip(grad, base_grad, term_grad, strict=True):
            expected = g0 + (0.5 * tg if tg is not None else 0)
            torch.testing.assert_close(g, expected, rtol=1e-4, atol=1e-6)
    finally:
        algo.stop()
