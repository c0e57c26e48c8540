"""The outer update through the real learner: the original's first-order semantics (inner
gradients held fixed), the KL-gated best-iterate selection, and the stop on non-finite values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tesp.meta.finite import NonFiniteError, check_finite
from tesp.meta.losses import best_iterate
from tesp.nn.distributions import gaussian_kl
from tesp.settings import resolve_config

from .helpers import local_learner

SMALL = {
    "meta_batch_size": 3,
    "episodes_per_task": 4,
    "num_envs_per_env_runner": 4,
    "num_env_runners": 0,
    "num_inner_steps": 2,
    "second_order": False,
    "validation_freq": 0,
    "seed": 0,
}


def build(alg="meta_sgd", **overrides):
    config, _, _ = resolve_config(alg, "point", {**SMALL, **overrides})
    return config.build_algo()


def stage_inputs(algo, rollout):
    learner = local_learner(algo)
    batches = [[stage[i].batch for stage in rollout.stages] for i in range(len(rollout.index))]
    stages = [learner._stage([b[k] for b in batches], None) for k in range(len(rollout.stages))]
    return learner, batches, stages, torch.as_tensor(rollout.index)


def test_best_iterate_picks_the_lowest_loss_below_the_kl_target():
    kls = [0.0, 0.005, 0.02, 0.008]
    losses = [1.0, 0.5, 0.1, 0.7]
    assert best_iterate(kls, losses, 0.01) == 1  # iterate 2 has the lowest loss but too large a KL
    assert best_iterate(kls, losses, 1.0) == 2
    assert best_iterate([0.0, 0.3], [1.0, 0.0], 0.01) == 0  # the start always qualifies


def test_check_finite_names_the_quantity():
    check_finite("x", {"a": torch.ones(2)})
    with pytest.raises(NonFiniteError, match="outer gradient of pi.0.weight is nan"):
        check_finite("outer gradient of", {"pi.0.weight": torch.tensor([1.0, float("nan")])})


@pytest.mark.ray
def test_first_order_update_keeps_the_inner_gradients_fixed(ray_session):
    algo = build()
    try:
        rollout = algo.adapt_on_tasks(algo.task_env.sample_tasks(3))
        learner, _, stages, index = stage_inputs(algo, rollout)
        policy = learner.policy
        names = policy.adapted_names()
        fixed = learner.summed_inner_gradients()
        post = stages[-1]
        # At the sampling parameters the adapted policy is the one that sampled the post batch.
        assert learner._objective(stages, index, fixed)["kl"].item() < 1e-6
        # Move the meta-parameters; the adapted parameters must be theta' - alpha * G with the
        # same G (the TESP release's update; not the inner gradients taken again at theta').
        with torch.no_grad():
            for p in policy.pi.parameters():
                p.add_(0.05 * torch.randn_like(p))
        theta = policy.task_params(3, index)
        sizes = learner.step_sizes()
        expected_kl = []
        with torch.no_grad():
            for t in range(3):
                params = {k: v[t] for k, v in theta.items()}
                params |= {n: params[n] - sizes[n] * fixed[n][t] for n in names}
                new = policy.dist_inputs(post["obs"][t], params)
                kl = gaussian_kl(post["dist_inputs"][t], new)
                expected_kl.append((kl * post["mask"][t]).sum() / post["mask"][t].sum())
        got = learner._objective(stages, index, fixed)["kl"].item()
        np.testing.assert_allclose(got, torch.stack(expected_kl).mean().item(), rtol=1e-5)
        recomputed = learner._objective(stages, index, None)["kl"].item()
        assert abs(recomputed - got) > 1e-6 * max(1.0, abs(got))
    finally:
        algo.stop()


@pytest.mark.ray
@pytest.mark.parametrize("mode", ["fixed", "recompute"])
def test_first_order_modes_train(ray_session, mode):
    algo = build(first_order_mode=mode, num_outer_steps=2)
    try:
        result = algo.train()
        assert np.isfinite(result["meta"]["outer_loss_after"])
        assert np.isfinite(result["meta"]["inner_loss"])
    finally:
        algo.stop()


@pytest.mark.ray
def test_best_iterate_with_a_tiny_kl_target_undoes_every_step_but_not_adams_moments(ray_session):
    # A huge outer step size: every step moves the policy far from the sampling one, so only the
    # start (KL ~ 0) is below the target and the update must give back the starting parameters.
    algo = build(lr=1.0, num_outer_steps=3, best_iterate_kl_target=1e-6)
    try:
        learner = local_learner(algo)
        before = {k: v.detach().clone() for k, v in learner.policy.named_parameters()}
        result = algo.train()
        assert result["meta"]["best_iterate"] == 0
        for k, v in learner.policy.named_parameters():
            torch.testing.assert_close(v.detach(), before[k], rtol=0, atol=0)
        moments = [s["exp_avg"] for s in learner.get_optimizer().state.values()]
        assert moments and any(m.abs().sum() > 0 for m in moments)
    finally:
        algo.stop()


@pytest.mark.ray
def test_a_non_finite_parameter_stops_training_naming_it_and_the_iteration(ray_session, tmp_path):
    algo = build(alg="maml", num_inner_steps=1)
    try:
        algo.train()
        checkpoint = algo.save(str(tmp_path / "good")).checkpoint.path
        learner = local_learner(algo)
        with torch.no_grad():
            learner.policy.pi[0].weight[0, 0] = float("nan")
        with pytest.raises(
            NonFiniteError, match=r"^iteration 2: (inner loss|meta-parameter pi\.0\.weight) is nan$"
        ):
            algo.train()
    finally:
        algo.stop()
    # The last checkpoint is the good one.
    restored = build(alg="maml", num_inner_steps=1)
    try:
        restored.restore_from_path(checkpoint)
        params = dict(restored.learner_group._learner.policy.named_parameters())
        assert all(torch.isfinite(p).all() for p in params.values())
    finally:
        restored.stop()


@pytest.mark.ray
@pytest.mark.parametrize("alg", ["maesn", "tesp", "e_maml"])
def test_the_outer_update_taken_in_task_chunks_is_the_full_batch_one(ray_session, alg):
    """The PPO meta-update with the loss and gradient accumulated over chunks of 2 tasks gives the
    parameters of the one over all 5 tasks at once (float tolerance): every term is a task mean,
    including MAESN's prior KL, TESP's embedding penalty and E-MAML's term (its credits taken
    over the whole meta-batch)."""
    extra = {"model.encoder_units": 8} if alg == "tesp" else {}
    params = {}
    for chunk in (0, 2):
        algo = build(alg, meta_batch_size=5, outer_task_chunk=chunk, num_outer_steps=3, **extra)
        try:
            algo.train()
            learner = local_learner(algo)
            params[chunk] = {k: v.detach().clone() for k, v in learner.policy.named_parameters()}
        finally:
            algo.stop()
    for name, value in params[0].items():
        torch.testing.assert_close(params[2][name], value, rtol=1e-4, atol=1e-6, msg=name)
    start = build(alg, meta_batch_size=5, **extra)
    try:
        moved = {k: v.detach() for k, v in local_learner(start).policy.named_parameters()}
    finally:
        start.stop()
    assert any(not torch.allclose(moved[k], params[0][k]) for k in moved)  # the update did move them
