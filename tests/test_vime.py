"""VIME's Bayesian dynamics model (tesp.algorithms.mime.bnn): closed forms, the local
reparameterisation, and the batched information gain against the sequential computation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from tesp.algorithms.mime import bnn

D = torch.float64  # tight comparisons


def tiny(seed=0, in_dim=3, out_dim=2, hidden=(4,), prior_sd=0.5):
    g = torch.Generator().manual_seed(seed)
    params = bnn.init_bnn(in_dim, out_dim, hidden, prior_sd, generator=g)
    # spread the rhos so that the closed forms see different sigmas
    for k in params:
        if k.endswith("_rho"):
            params[k] = params[k] + 0.3 * torch.randn(params[k].shape, generator=g)
    return {k: v.double() for k, v in params.items()}


def normals(params):
    for w_mu, w_rho, b_mu, b_rho in bnn.layer_names(bnn.num_layers(params)):
        for mu, rho in ((w_mu, w_rho), (b_mu, b_rho)):
            yield Normal(params[mu], F.softplus(params[rho]))


def test_init_follows_the_reference():
    params = bnn.init_bnn(5, 3, (32,), prior_sd=0.01, generator=torch.Generator().manual_seed(0))
    assert params["w0_mu"].shape == (5, 32) and params["w1_mu"].shape == (32, 3)
    torch.testing.assert_close(F.softplus(params["w0_rho"]), torch.full((5, 32), 0.01, dtype=torch.float32))
    assert 0.8 < params["w0_mu"].std().item() < 1.2  # N(0, 1) means, not the prior's


def test_kl_divergences_match_torch_distributions():
    new, old = tiny(0), tiny(1)
    expected = sum(kl_divergence(p, q).sum() for p, q in zip(normals(new), normals(old), strict=True))
    torch.testing.assert_close(bnn.kl_divergence(new, old), expected)
    assert bnn.kl_divergence(new, new).item() == pytest.approx(0.0, abs=1e-12)
    prior = sum(kl_divergence(p, Normal(torch.zeros_like(p.loc), 0.5)).sum() for p in normals(new))
    torch.testing.assert_close(bnn.kl_to_prior(new, 0.5), prior)


def test_local_reparameterisation_has_the_weight_samples_moments():
    """One linear layer: drawing the pre-activation as gamma + sqrt(delta) eps has the mean and
    variance of x W + b with W, b drawn from q."""
    params = tiny(0, in_dim=3, out_dim=2, hidden=())
    x = torch.tensor([[0.5, -1.0, 2.0]], dtype=D)
    g = torch.Generator().manual_seed(3)
    local = torch.stack([bnn.forward(params, x, bnn.draw_noise(params, generator=g)) for _ in range(20000)])
    w = Normal(params["w0_mu"], F.softplus(params["w0_rho"])).sample((20000,))
    b = Normal(params["b0_mu"], F.softplus(params["b0_rho"])).sample((20000,))
    direct = x @ w + b[:, None]
    np.testing.assert_allclose(local.mean(0), direct.mean(0), atol=0.05)
    np.testing.assert_allclose(local.var(0), direct.var(0), rtol=0.05)
    mean = x @ params["w0_mu"] + params["b0_mu"]
    torch.testing.assert_close(bnn.forward(params, x, None), mean)


def test_elbo_is_the_prior_kl_minus_the_log_likelihood():
    params = tiny(0)
    x, y = torch.randn(5, 3, dtype=D), torch.randn(5, 2, dtype=D)
    noise = bnn.draw_noise(params, generator=torch.Generator().manual_seed(0))
    pred = bnn.forward(params, x, noise)
    loglik = Normal(pred, 0.1).log_prob(y).sum()
    got = bnn.elbo_loss(params, x, y, [noise], prior_sd=0.5, likelihood_sd=0.1, n_batches=4)
    torch.testing.assert_close(got, bnn.kl_to_prior(params, 0.5) / 4 - loglik)


def sequential_information_gain(params, x, y, mask, noise, lr, likelihood_sd):
    """MIME's reference computation, one transition at a time: per trajectory a fresh Adam; per
    step save, one Adam step on -log p(y | x), KL(new || old), restore (moments kept)."""
    gains = torch.zeros(mask.shape, dtype=D)
    for b in range(mask.shape[0]):
        live = {k: torch.nn.Parameter(v.clone()) for k, v in params.items()}
        optimizer = torch.optim.Adam(live.values(), lr=lr)
        for t in range(mask.shape[1]):
            if not mask[b, t]:
                continue
            old = {k: v.detach().clone() for k, v in live.items()}
            optimizer.zero_grad()
            loss = -bnn.log_likelihood(
                bnn.forward(live, x[b, t], [n[b, t] for n in noise]), y[b, t], likelihood_sd
            )
            loss.backward()
            optimizer.step()
            gains[b, t] = bnn.kl_divergence({k: v.detach() for k, v in live.items()}, old).clamp(0, 1000)
            with torch.no_grad():
                for k, v in live.items():
                    v.copy_(old[k])
    return gains


def episodes(params, batch=4, steps=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = (
        torch.randn(batch, steps, 3, generator=g, dtype=D),
        torch.randn(batch, steps, 2, generator=g, dtype=D),
    )
    mask = torch.ones(batch, steps, dtype=D)
    if batch >= 4:
        mask[1, 4:] = 0  # shorter trajectories
        mask[3, 2:] = 0
    noise = [torch.randn(batch, steps, n.shape[-1], generator=g, dtype=D) for n in bnn.draw_noise(params)]
    return x, y, mask, noise


@pytest.mark.parametrize("chunk_floats", [1, 500, 1 << 22])  # one step, a few, all steps per batched call
def test_batched_information_gain_equals_the_sequential_reference(chunk_floats):
    params = tiny(0)
    x, y, mask, noise = episodes(params)
    expected = sequential_information_gain(params, x, y, mask, noise, lr=1e-2, likelihood_sd=0.1)
    got = bnn.information_gain(
        params, x, y, mask, noise, lr=1e-2, likelihood_sd=0.1, chunk_floats=chunk_floats
    )
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-9)
    assert (got[mask > 0] > 0).all() and (got[mask == 0] == 0).all()
    # per-trajectory parameters (e.g. each task's adapted model): row b uses its own
    stacked = {k: torch.stack([v, v + 0.1]).repeat(2, *([1] * v.dim())) for k, v in params.items()}
    per_row = bnn.information_gain(
        stacked, x, y, mask, noise, lr=1e-2, likelihood_sd=0.1, chunk_floats=chunk_floats
    )
    shifted = {k: v + 0.1 for k, v in params.items()}
    alt = sequential_information_gain(shifted, x, y, mask, noise, lr=1e-2, likelihood_sd=0.1)
    torch.testing.assert_close(per_row[0::2], expected[0::2], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(per_row[1::2], alt[1::2], rtol=1e-6, atol=1e-9)


def test_second_order_gain_is_the_kl_of_a_small_natural_gradient_step():
    """VIME's 1/2 lambda^2 g^T H^-1 g is the KL after the step -lambda H^-1 g, to second order."""
    params = tiny(0)
    x, y, mask, noise = episodes(params, batch=1, steps=2)
    step = 1e-3
    got = bnn.information_gain_second_order(params, x, y, mask, noise, step=step, likelihood_sd=0.1)
    live = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss = -bnn.log_likelihood(bnn.forward(live, x[0, 0], [n[0, 0] for n in noise]), y[0, 0], 0.1)
    grads = dict(zip(live, torch.autograd.grad(loss, list(live.values())), strict=True))
    moved = {}
    for k, v in params.items():
        rho = params[k.replace("_mu", "_rho")] if k.endswith("_mu") else v
        sd = F.softplus(rho)
        hess = 1 / sd**2 if k.endswith("_mu") else 2 * torch.sigmoid(rho) ** 2 / sd**2
        moved[k] = v - step * grads[k] / hess
    exact = bnn.kl_divergence(moved, params)
    assert got[0, 0].item() == pytest.approx(exact.item(), rel=1e-2)


def test_step_gains_copy_the_second_to_last_transition():
    gains = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0]])
    expected = torch.tensor([[1.0, 2, 3, 3], [4, 5, 5, 0], [0, 0, 0, 0]])
    torch.testing.assert_close(bnn.step_gains(gains, mask), expected)
    obs, actions = torch.arange(8.0).reshape(1, 4, 2), torch.ones(1, 4, 1)
    x, y, m = bnn.transitions(obs, actions, mask[:1])
    torch.testing.assert_close(x[0, 1], torch.tensor([2.0, 3.0, 1.0]))
    torch.testing.assert_close(y[0, 1], obs[0, 2])
    assert m.shape == (1, 3)


def test_copy_is_not_shared():
    params = tiny(0)
    before = copy.deepcopy(params)
    x, y, mask, noise = episodes(params)
    bnn.information_gain(params, x, y, mask, noise, lr=1e-2, likelihood_sd=0.1)
    for k in params:
        torch.testing.assert_close(params[k], before[k])  # the model is left as it was
