"""The mechanism measures (tesp.meta.mechanism) on constructed cases with known answers."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.func import vmap

from tesp.algorithms.adaptsv.adaptsv_rl_module import AdaptSVRLModule
from tesp.meta import mechanism
from tesp.nn.params import per_task

from .helpers import make_policy


def _batch(num_tasks=3, n=16, obs_dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(num_tasks, n)
    mask[:, -3:] = 0.0  # padding must not count
    return {"obs": torch.randn(num_tasks, n, obs_dim, generator=g), "mask": mask}


def test_adaptation_kl_of_a_log_std_step_is_the_gaussian_kl():
    policy = make_policy(obs_dim=2, act_dim=2, free_log_std=True)
    theta = {k: v.detach() for k, v in per_task(policy.single_task_params(), 3).items()}
    adapted = dict(theta)
    delta = torch.tensor([0.0, 0.1, 0.3])  # per task, the inner steps raised every log-std by this
    adapted["pi.log_std"] = theta["pi.log_std"] + delta[:, None]
    out = vmap(lambda t, a, b: mechanism.task_adaptation(policy, t, a, b))(theta, adapted, _batch())
    # KL(N(m, s^2) || N(m, (s e^d)^2)) = d + (e^{-2d} - 1) / 2 per action dimension.
    expected = 2 * (delta + 0.5 * (torch.exp(-2 * delta) - 1))
    torch.testing.assert_close(out[mechanism.ADAPTATION_KL], expected, atol=1e-6, rtol=1e-5)
    assert mechanism.CONTEXT_KL not in out  # no latent, no context measure


def _linear_latent_policy(latent_dim=2, log_std=0.0):
    """A linear policy mean = [obs, z] @ W (W's z block the identity), log-std fixed: a latent z
    shifts the mean by z."""
    torch.manual_seed(0)
    policy = AdaptSVRLModule(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
        action_space=gym.spaces.Box(-1, 1, (latent_dim,), np.float32),
        model_config={"hidden": [], "latent_dim": latent_dim, "adapted": ["latent"], "init_log_std": log_std},
    )
    with torch.no_grad():
        head = policy.pi[-1]
        head.weight.zero_()
        head.weight[:, 2:] = torch.eye(latent_dim)
        policy.latent.zero_()
    return policy


def test_context_kl_and_the_latents_inner_shift():
    policy = _linear_latent_policy(log_std=math.log(0.5))
    theta = {k: v.detach() for k, v in per_task(policy.single_task_params(), 2).items()}
    adapted = dict(theta)
    adapted["latent"] = torch.tensor([[1.0, 0.0], [0.0, -2.0]])
    out = vmap(lambda t, a, b: mechanism.task_adaptation(policy, t, a, b))(theta, adapted, _batch(2))
    # Same std 0.5: KL = |z|^2 / (2 * 0.25) between z = 0 and z; the inner steps moved z from 0.
    torch.testing.assert_close(out[mechanism.CONTEXT_KL], torch.tensor([2.0, 8.0]))
    torch.testing.assert_close(out[mechanism.ADAPTATION_KL], torch.tensor([2.0, 8.0]))
    torch.testing.assert_close(out["latent_shift"], torch.tensor([1.0, 2.0]))


def test_summary_ratio_is_the_mean_shift_over_the_between_task_spread():
    per_task = {
        mechanism.ADAPTATION_KL: np.array([0.1, 0.3]),
        mechanism.CONTEXT_KL: np.array([1.0, 3.0]),
        "latent": np.array([[1.0, 0.0], [-1.0, 0.0]]),  # spread sqrt(var) = 1
        "latent_shift": np.array([0.1, 0.3]),
    }
    out = mechanism.summarize(per_task)
    assert out[mechanism.ADAPTATION_KL] == pytest.approx(0.2)
    assert out[mechanism.CONTEXT_KL] == pytest.approx(2.0)
    assert out[mechanism.Z_INNER_SHIFT_RATIO] == pytest.approx(0.2)
    one = mechanism.summarize({k: v[:1] for k, v in per_task.items()})
    assert math.isnan(one[mechanism.Z_INNER_SHIFT_RATIO])  # no spread from one task
    joined = mechanism.concat(
        [{k: v[:1] for k, v in per_task.items()}, {k: v[1:] for k, v in per_task.items()}]
    )
    assert mechanism.summarize(joined) == out


def test_step_size_quantiles():
    out = mechanism.step_size_stats(torch.linspace(0.0, 1.0, 101))
    assert out == pytest.approx({"step_size_q10": 0.1, "step_size_q50": 0.5, "step_size_q90": 0.9})


def test_fraction_of_step_sizes_whose_adam_rms_is_below_eps():
    tiny, large, unstepped = (torch.nn.Parameter(torch.zeros(n)) for n in (6, 2, 2))
    opt = torch.optim.Adam([tiny, large, unstepped], lr=1e-3, eps=1e-8)
    for _ in range(3):
        tiny.grad = torch.full_like(tiny, 1e-10)  # RMS 1e-10 < eps
        large.grad = torch.ones_like(large)
        opt.step()
    assert mechanism.adam_rms_below_eps(opt, [tiny, large]) == pytest.approx(6 / 8)
    # A parameter Adam never stepped has no second moment: it counts as below.
    assert mechanism.adam_rms_below_eps(opt, [large, unstepped]) == pytest.approx(2 / 4)
