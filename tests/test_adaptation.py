"""The shared inner loop: SGD equivalence, batching over tasks, Meta-SGD vs MAML, first vs second order."""

import copy

import pytest
import torch
from torch.func import vmap

from tesp.meta.adaptation import adapt, clip_by_global_norm, inner_step
from tesp.nn.distributions import gaussian_logp
from tesp.nn.params import per_task

from .helpers import make_policy, random_batch


def task_loss(policy):
    """VPG loss of one task (unbatched)."""

    def loss(params, batch):
        logp = gaussian_logp(policy.dist_inputs(batch["obs"], params), batch["actions"])
        return -(logp * batch["advantages"]).mean()

    return loss


def stack(*batches):
    return {k: torch.stack([b[k] for b in batches]) for k in batches[0]}


def one(batch):
    return stack(batch)


def test_one_inner_step_equals_manual_sgd():
    policy = make_policy()
    batch = random_batch()
    names = list(policy.meta_params())
    new, _, _ = inner_step(
        vmap(task_loss(policy)),
        per_task(policy.meta_params(), 1),
        one(batch),
        names,
        {n: 0.05 for n in names},
        None,
        False,
    )
    reference = copy.deepcopy(policy)
    opt = torch.optim.SGD(reference.pi.parameters(), lr=0.05)
    opt.zero_grad()
    task_loss(reference)(reference.meta_params(), batch).backward()
    opt.step()
    for name, p in reference.meta_params().items():
        torch.testing.assert_close(new[name][0], p, rtol=0, atol=1e-7)


def test_tasks_adapted_together_equal_tasks_adapted_alone():
    policy = make_policy()
    names = list(policy.meta_params())
    sizes = {n: 0.1 for n in names}
    tasks = [[random_batch(seed=10 * t + k) for k in range(2)] for t in range(3)]
    clip = 0.5  # small enough to bind for some tasks and steps
    together, losses = adapt(
        vmap(task_loss(policy)),
        per_task(policy.meta_params(), 3),
        [stack(*(tasks[t][k] for t in range(3))) for k in range(2)],
        names, sizes, clip, False,
    )  # fmt: skip
    assert losses[0].shape == (3,)
    for t in range(3):
        alone, _ = adapt(
            vmap(task_loss(policy)),
            per_task(policy.meta_params(), 1),
            [one(b) for b in tasks[t]],
            names,
            sizes,
            clip,
            False,
        )
        for n in names:
            torch.testing.assert_close(together[n][t], alone[n][0], rtol=1e-5, atol=1e-6)


def test_meta_sgd_with_constant_rates_equals_maml():
    policy = make_policy(learn_step_sizes=True, init_step_size=0.07)
    batches = [one(random_batch(seed=1)), one(random_batch(seed=2))]
    names = list(policy.meta_params())
    theta = per_task(policy.meta_params(), 1)
    maml, _ = adapt(vmap(task_loss(policy)), theta, batches, names, {n: 0.07 for n in names}, 1.0, True)
    rates = {n: policy.step_size(n) for n in names}
    assert all(r.shape == policy.meta_params()[n].shape for n, r in rates.items())
    msgd, _ = adapt(vmap(task_loss(policy)), theta, batches, names, rates, 1.0, True)
    for n in names:
        torch.testing.assert_close(msgd[n], maml[n], rtol=0, atol=1e-7)


def test_only_the_named_parameters_are_adapted():
    policy = make_policy()
    params = per_task(policy.meta_params(), 1)
    new, _, _ = inner_step(
        vmap(task_loss(policy)),
        params,
        one(random_batch()),
        ["pi.2.weight"],
        {"pi.2.weight": 0.1},
        None,
        False,
    )
    for n in params:
        assert (not torch.equal(new[n], params[n])) == (n == "pi.2.weight"), n


def test_global_norm_clipping_per_task():
    grads = [torch.tensor([[3.0, 0.0], [0.3, 0.0]]), torch.tensor([[[4.0]], [[0.4]]])]
    clipped, norm = clip_by_global_norm(grads, 1.0)
    torch.testing.assert_close(norm, torch.tensor([5.0, 0.5]))
    torch.testing.assert_close(
        clipped[0], torch.tensor([[0.6, 0.0], [0.3, 0.0]])
    )  # task 1 is under the bound
    torch.testing.assert_close(clipped[1], torch.tensor([[[0.8]], [[0.4]]]))


def _meta_objective(policy, theta, inner_batches, outer_batch, lr, second_order):
    names = list(theta)
    adapted, _ = adapt(
        vmap(task_loss(policy)),
        per_task(theta, 1),
        [one(b) for b in inner_batches],
        names,
        {n: lr for n in names},
        None,
        second_order,
    )
    return task_loss(policy)({k: v[0] for k, v in adapted.items()}, outer_batch)


def test_second_order_meta_gradient_matches_finite_differences_and_differs_from_first_order():
    policy = make_policy(hidden=(6,), seed=3).double()
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in policy.meta_params().items()}
    inner = [random_batch(n=16, seed=4, dtype=torch.float64), random_batch(n=16, seed=5, dtype=torch.float64)]
    outer = random_batch(n=16, seed=6, dtype=torch.float64)
    lr = 0.5  # large, so the curvature term matters

    def grads(second_order):
        loss = _meta_objective(policy, theta, inner, outer, lr, second_order)
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(theta.values()))])

    exact, first = grads(True), grads(False)

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
    """docs/original_release.md#inner-step: with constant inner gradients, dL/dalpha = -G * dL/dtheta'."""
    policy = make_policy(learn_step_sizes=True, init_step_size=0.01)
    names = list(policy.meta_params())
    batch, outer = random_batch(seed=7), random_batch(seed=8)
    rates = {n: policy.step_size(n) for n in names}
    adapted, _ = adapt(
        vmap(task_loss(policy)), per_task(policy.meta_params(), 1), [one(batch)], names, rates, None, False
    )
    loss = task_loss(policy)({k: v[0] for k, v in adapted.items()}, outer)
    d_alpha = torch.autograd.grad(loss, [rates[n] for n in names], retain_graph=True)
    d_adapted = torch.autograd.grad(loss, [adapted[n] for n in names])
    g = torch.autograd.grad(
        task_loss(policy)(policy.meta_params(), batch), [policy.meta_params()[n] for n in names]
    )
    for da, dt, gi in zip(d_alpha, d_adapted, g, strict=True):
        torch.testing.assert_close(da, -gi * dt[0], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("second_order", [True, False])
def test_meta_gradient_reaches_theta_through_the_task_dimension(second_order):
    policy = make_policy()
    names = list(policy.meta_params())
    theta = policy.meta_params()
    adapted, _ = adapt(
        vmap(task_loss(policy)), per_task(theta, 2), [stack(random_batch(seed=1), random_batch(seed=2))],
        names, {n: 0.1 for n in names}, None, second_order,
    )  # fmt: skip
    loss = vmap(task_loss(policy))(adapted, stack(random_batch(seed=3), random_batch(seed=4))).mean()
    grads = torch.autograd.grad(loss, list(theta.values()))
    assert all(
        g.shape == p.shape and torch.isfinite(g).all() for g, p in zip(grads, theta.values(), strict=True)
    )


@pytest.mark.parametrize("clip", [None, 60.0])
def test_second_order_meta_gradient_is_finite_when_an_inner_gradient_is_exactly_zero(clip):
    # All advantages equal to 0 (a task whose episodes all scored the same): the inner
    # gradient is exactly 0, and d sqrt(x)/dx at x = 0 is infinite in the global-norm clip.
    policy = make_policy()
    names = list(policy.meta_params())
    theta = policy.meta_params()
    flat = random_batch(seed=1) | {"advantages": torch.zeros(32)}
    adapted, _ = adapt(
        vmap(task_loss(policy)), per_task(theta, 2), [stack(flat, random_batch(seed=2))],
        names, {n: 0.1 for n in names}, clip, True,
    )  # fmt: skip
    loss = vmap(task_loss(policy))(adapted, stack(random_batch(seed=3), random_batch(seed=4))).mean()
    grads = torch.autograd.grad(loss, list(theta.values()))
    assert all(torch.isfinite(g).all() for g in grads)


def test_global_norm_clip_scales_to_the_bound_and_reports_the_norm():
    grads = [torch.tensor([[3.0, 0.0], [0.0, 0.0]]), torch.tensor([[4.0], [0.0]])]
    clipped, norm = clip_by_global_norm(grads, 1.0)
    torch.testing.assert_close(norm, torch.tensor([5.0, 0.0]))
    torch.testing.assert_close(clipped[0], torch.tensor([[0.6, 0.0], [0.0, 0.0]]))
    torch.testing.assert_close(clipped[1], torch.tensor([[0.8], [0.0]]))
