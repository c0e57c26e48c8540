"""Several RLlib Learners: each adapts its shard of the meta-batch, the meta-gradient is summed by
an all-reduce, and the update equals the one a single Learner takes."""

from __future__ import annotations

import numpy as np
import pytest

SMALL = {
    "seed": 0,
    "meta_batch_size": 4,
    "episodes_per_task": 4,
    "num_envs_per_env_runner": 4,
    "num_env_runners": 0,  # the driver's runner: the same samples for both builds
    "num_inner_steps": 1,
    "num_outer_steps": 3,
    "validation_freq": 0,
}


def build(alg: str, env: str, settings: dict):
    from tesp.settings import resolve_config

    config, _, _ = resolve_config(alg, env, settings)
    return config.build_algo()


def learner_states(algo) -> list[dict[str, np.ndarray]]:
    return [
        r.get()
        for r in algo.learner_group.foreach_learner(
            lambda learner: {
                k: v.detach().cpu().numpy().copy() for k, v in learner.policy.state_dict().items()
            }
        )
    ]


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize(
    "alg, extra",
    [
        ("maml", {"second_order": True}),
        ("tesp", {}),  # per-task episode buffers (contexts) sharded too
        ("maesn", {}),  # per-task latents: tasks outside a shard have no gradient there
    ],
)
def test_two_learners_take_the_same_meta_iteration_as_one(ray_session, alg, extra):
    settings = SMALL | extra
    one = build(alg, "point", settings)
    try:
        (initial,) = learner_states(one)
        meta_one = one.train()["meta"]
        (single,) = learner_states(one)
    finally:
        one.stop()
    two = build(alg, "point", settings | {"num_learners": 2, "num_cpus_per_learner": 0.5})
    try:
        meta_two = two.train()["meta"]
        states = learner_states(two)
        shards = [
            r.get()
            for r in two.learner_group.foreach_learner(
                lambda learner: len(next(iter(learner._params.values())))
            )
        ]
    finally:
        two.stop()
    assert shards == [2, 2]  # each Learner adapted its half of the tasks
    # The two Learners hold identical parameters (the same all-reduced gradient, the same step) ...
    for k in states[0]:
        np.testing.assert_array_equal(states[0][k], states[1][k], err_msg=k)
    # ... equal to the single Learner's after the same iteration, to float32 round-off,
    moved = max(float(np.abs(single[k] - initial[k]).max()) for k in single)
    assert moved > 1e-3  # (the iteration did move them)
    for k, v in single.items():
        np.testing.assert_allclose(states[0][k], v, rtol=1e-4, atol=1e-6, err_msg=k)
    # and the objective's values (task means over the whole meta-batch) are the same.
    assert meta_two["return_pre"] == pytest.approx(meta_one["return_pre"], rel=1e-6)
    for key in ("outer_loss_before", "outer_loss_after", "inner_loss"):
        assert meta_two[key] == pytest.approx(meta_one[key], rel=1e-4, abs=1e-6), key


def test_methods_whose_update_runs_on_one_learner_refuse_two():
    from tesp.settings import resolve_config

    def validate(alg, env, settings):
        resolve_config(alg, env, settings)[0].validate()

    with pytest.raises(ValueError, match=r"num_learners=2 is invalid: must be 0 or 1 \(MLSHAlgorithm"):
        validate("mlsh", "movement_bandits", {"num_learners": 2})
    with pytest.raises(
        ValueError, match=r"num_learners=2 is invalid: must be 0 or 1 with outer_optimizer='trpo'"
    ):
        validate("maml", "point", {"num_learners": 2, "outer_optimizer": "trpo"})
    with pytest.raises(ValueError, match="num_learners=5 is invalid: must be at most meta_batch_size"):
        validate("maml", "point", {"num_learners": 5, "meta_batch_size": 4})
    validate("maml", "point", {"num_learners": 2})
