"""The shared inner loop: SGD equivalence, Meta-SGD vs MAML, first vs second order, clipping."""

import copy

import pytest
import torch

from tesp.meta.adaptation import adapt, clip_by_global_norm, inner_step
from tesp.models.gaussian_mlp import gaussian_logp

from .helpers import make_policy, random_batch


def vpg_loss(policy):
    def loss(params, batch):
        logp = gaussian_logp(policy.dist_inputs(batch["obs"], params), batch["actions"])
        return -(logp * batch["advantages"]).mean()

    return loss


def test_one_inner_step_equals_manual_sgd():
    policy = make_policy()
    batch = random_batch()
    params = policy.policy_params()
    names = list(params)
    new, _ = inner_step(vpg_loss(policy), params, batch, names, {n: 0.05 for n in names}, None, False)

    reference = copy.deepcopy(policy)
    opt = torch.optim.SGD(reference.pi.parameters(), lr=0.05)
    opt.zero_grad()
    vpg_loss(reference)(reference.policy_params(), batch).backward()
    opt.step()
    for name, p in reference.policy_params().items():
        torch.testing.assert_close(new[name], p, rtol=0, atol=1e-7)


def test_meta_sgd_with_constant_rates_equals_maml():
    policy = make_policy(learn_step_sizes=True, init_step_size=0.07)
    batches = [random_batch(seed=1), random_batch(seed=2)]
    params = policy.policy_params()
    names = list(params)
    maml, _ = adapt(vpg_loss(policy), params, batches, names, {n: 0.07 for n in names}, 1.0, True)
    rates = {n: policy.step_size(n) for n in names}
    assert all(r.shape == params[n].shape for n, r in rates.items())
    msgd, _ = adapt(vpg_loss(policy), params, batches, names, rates, 1.0, True)
    for n in names:
        torch.testing.assert_close(msgd[n], maml[n], rtol=0, atol=1e-7)


def test_only_the_named_parameters_are_adapted():
    policy = make_policy()
    params = policy.policy_params()
    adapted_names = ["2.weight"]
    new, _ = inner_step(
        vpg_loss(policy), params, random_batch(), adapted_names, {"2.weight": 0.1}, None, False
    )
    for n in params:
        changed = not torch.equal(new[n], params[n])
        assert changed == (n in adapted_names), n


def test_global_norm_clipping():
    grads = [torch.tensor([3.0, 0.0]), torch.tensor([[4.0]])]
    clipped, norm = clip_by_global_norm(grads, 1.0)
    assert float(norm) == pytest.approx(5.0)
    assert float(torch.sqrt(sum((g**2).sum() for g in clipped))) == pytest.approx(1.0)
    torch.testing.assert_close(clipped[0], torch.tensor([0.6, 0.0]))
    same, _ = clip_by_global_norm(grads, 10.0)
    torch.testing.assert_close(same[1], grads[1])


def _meta_objective(policy, theta, inner_batches, outer_batch, lr, second_order):
    names = list(theta)
    adapted, _ = adapt(
        vpg_loss(policy), theta, inner_batches, names, {n: lr for n in names}, None, second_order
    )
    return vpg_loss(policy)(adapted, outer_batch)


def test_second_order_meta_gradient_matches_finite_differences_and_differs_from_first_order():
    policy = make_policy(hidden=(6,), seed=3).double()
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in policy.policy_params().items()}
    inner = [random_batch(n=16, seed=4, dtype=torch.float64), random_batch(n=16, seed=5, dtype=torch.float64)]
    outer = random_batch(n=16, seed=6, dtype=torch.float64)
    lr = 0.5  # large, so the curvature term matters

    def grads(second_order):
        loss = _meta_objective(policy, theta, inner, outer, lr, second_order)
        return torch.autograd.grad(loss, list(theta.values()))

    exact = torch.cat([g.reshape(-1) for g in grads(True)])
    first = torch.cat([g.reshape(-1) for g in grads(False)])

    flat = torch.cat([v.detach().reshape(-1) for v in theta.values()])
    eps = 1e-6
    numeric = torch.zeros_like(flat)
    for i in range(flat.numel()):
        values = []
        for sign in (1, -1):
            x = flat.clone()
            x[i] += sign * eps
            params, j = {}, 0
            for k, v in theta.items():
                params[k] = x[j : j + v.numel()].view_as(v).requires_grad_(True)
                j += v.numel()
            values.append(_meta_objective(policy, params, inner, outer, lr, True).item())
        numeric[i] = (values[0] - values[1]) / (2 * eps)

    torch.testing.assert_close(exact, numeric, rtol=1e-5, atol=1e-7)
    # The first-order approximation drops the Hessian term: measurably different here.
    assert (exact - first).norm() > 0.05 * exact.norm()


def test_first_order_still_learns_step_sizes_through_the_direct_path():
    """spec §1.2: with constant inner gradients, dL/dalpha = -G * dL/dtheta'."""
    policy = make_policy(learn_step_sizes=True, init_step_size=0.01)
    theta = policy.policy_params()
    names = list(theta)
    batch, outer = random_batch(seed=7), random_batch(seed=8)
    rates = {n: policy.step_size(n) for n in names}
    adapted, _ = adapt(vpg_loss(policy), theta, [batch], names, rates, None, False)
    loss = vpg_loss(policy)(adapted, outer)
    d_alpha = torch.autograd.grad(loss, [rates[n] for n in names], retain_graph=True)
    d_adapted = torch.autograd.grad(loss, [adapted[n] for n in names])
    g = torch.autograd.grad(vpg_loss(policy)(theta, batch), [theta[n] for n in names])
    for da, dt, gi in zip(d_alpha, d_adapted, g, strict=True):
        torch.testing.assert_close(da, -gi * dt, rtol=1e-5, atol=1e-8)
