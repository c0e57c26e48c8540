"""Outer-loop maths: PPO clip, conjugate gradient, Hessian-vector products, the TRPO step."""

import pytest
import torch

from tesp.meta.losses import ppo_clip_loss
from tesp.meta.trpo import conjugate_gradient, hessian_vector_product, trpo_step
from tesp.nn.distributions import gaussian_kl, gaussian_logp


def test_conjugate_gradient_matches_direct_solve():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(12, 12, generator=g, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(12, dtype=torch.float64)
    b = torch.randn(12, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=12, tol=1e-20)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-8, atol=1e-10)


def test_hessian_vector_product_matches_full_hessian_of_a_small_network():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    x = torch.randn(10, 3, dtype=torch.float64)
    params = list(net.parameters())
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def loss_of(flat):
        chunks = torch.split(flat, sizes)
        w1, b1, w2, b2 = (c.view(s) for c, s in zip(chunks, shapes, strict=True))
        return (torch.tanh(x @ w1.T + b1) @ w2.T + b2).pow(2).sum() / 10 + (flat**3).sum() * 1e-2

    flat = torch.cat([p.detach().reshape(-1) for p in params])
    full = torch.autograd.functional.hessian(loss_of, flat)

    flat_param = flat.clone().requires_grad_(True)
    hvp = hessian_vector_product(loss_of(flat_param), [flat_param], damping=0.1)
    v = torch.randn(flat.numel(), dtype=torch.float64)
    torch.testing.assert_close(hvp(v), full @ v + 0.1 * v, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(hvp(2 * v), 2 * (full @ v + 0.1 * v), rtol=1e-9, atol=1e-10)


def test_ppo_clip_loss_by_hand():
    logp_old = torch.zeros(3)
    logp = torch.log(torch.tensor([1.5, 0.5, 1.1]))
    adv = torch.tensor([1.0, 1.0, -2.0])
    # min(rA, clip(r)A) per step: min(1.5, 1.2)=1.2, min(0.5, 0.8)=0.5, min(-2.2, -2.2)=-2.2
    assert float(ppo_clip_loss(logp, logp_old, adv, 0.2)) == pytest.approx(-(1.2 + 0.5 - 2.2) / 3)


def test_gaussian_logp_and_kl_match_torch_distributions():
    g = torch.Generator().manual_seed(1)
    p, q = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    a = torch.randn(5, 2, generator=g)
    dp = torch.distributions.Normal(p[:, :2], p[:, 2:].exp())
    dq = torch.distributions.Normal(q[:, :2], q[:, 2:].exp())
    torch.testing.assert_close(gaussian_logp(p, a), dp.log_prob(a).sum(-1))
    torch.testing.assert_close(gaussian_kl(p, q), torch.distributions.kl_divergence(dp, dq).sum(-1))


def test_trpo_step_improves_the_surrogate_within_the_trust_region():
    torch.manual_seed(0)
    obs = torch.randn(256, 3)
    actions = torch.randn(256, 1)
    adv = torch.randn(256)
    net = torch.nn.Linear(3, 2)
    old = net(obs).detach()
    logp_old = gaussian_logp(old, actions)

    def objective():
        new = net(obs)
        loss = -(torch.exp(gaussian_logp(new, actions) - logp_old) * adv).mean()
        return loss, gaussian_kl(old, new).mean()

    before = float(objective()[0])
    result = trpo_step(list(net.parameters()), objective, max_kl=0.01)
    after, kl = (float(v) for v in objective())
    assert result.step_fraction > 0
    assert after < before and after == pytest.approx(result.loss_after)
    assert 0 < kl <= 0.01 + 1e-6
