"""Per-task weights and tasks reach the right EnvRunner, and each samples with exactly them."""

import numpy as np
import pytest
import torch

from tesp.algorithms.maml import MAMLConfig
from tesp.meta.sampler import SampleJob, deal
from tesp.nn.distributions import gaussian_logp

from .helpers import local_learner

pytestmark = pytest.mark.ray


def test_deal_round_robin():
    assert deal(5, [1, 2]) == {1: [0, 2, 4], 2: [1, 3]}
    assert deal(1, [1, 2, 3]) == {1: [0]}


@pytest.fixture(scope="module")
def algo(ray_session):
    config = (
        MAMLConfig()
        .environment("point")
        .env_runners(num_env_runners=2, num_envs_per_env_runner=3, num_cpus_per_env_runner=0.5)
        .training(meta_batch_size=5, episodes_per_task=3)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    yield algo
    algo.stop()


def test_each_runner_samples_with_its_tasks_weights_and_goal(algo):
    learner = local_learner(algo)
    policy = learner.policy
    (base, *_) = learner.start_tasks([-1])
    rng = np.random.default_rng(0)
    goals = rng.uniform(-0.5, 0.5, size=(5, 2))
    # A distinct weight set per task: the meta-parameters plus task-specific noise.
    weights = {
        i: {k: v + rng.normal(0, 0.3, v.shape).astype(v.dtype) for k, v in base.items()} for i in range(5)
    }
    jobs = [SampleJob(i, {"goal": goals[i]}, weights[i]) for i in range(5)]

    results = algo.sampler.sample(jobs)

    assert sorted(results) == list(range(5))
    runners = algo.env_runner_group.healthy_worker_ids()
    plan = deal(5, runners)
    for worker, task_ids in plan.items():
        for i in task_ids:
            assert results[i].worker_index == worker
    assert len({results[i].worker_index for i in results}) == 2

    for i, res in results.items():
        batch = res.batch
        flat = batch.to_torch()
        params = {k: torch.as_tensor(v) for k, v in weights[i].items()}
        with torch.no_grad():
            expected = policy.dist_inputs(flat["obs"], params)
        # The recorded action distribution is the one of this task's weights, exactly.
        torch.testing.assert_close(flat["dist_inputs"], expected, rtol=1e-5, atol=1e-6)
        # Another task's weights would not explain the samples.
        other = {k: torch.as_tensor(v) for k, v in weights[(i + 1) % 5].items()}
        with torch.no_grad():
            assert not torch.allclose(flat["dist_inputs"], policy.dist_inputs(flat["obs"], other), atol=1e-3)
        # Rewards are -|next position - this task's goal| (next position = next observation).
        for e in range(batch.obs.shape[0]):
            n = int(batch.mask[e].sum())
            nxt = batch.obs[e, 1:n]
            np.testing.assert_allclose(
                batch.rewards[e, : n - 1], -np.linalg.norm(nxt - goals[i], axis=1), rtol=1e-5, atol=1e-5
            )
        assert batch.obs.shape[0] == 3  # episodes_per_task complete episodes
        assert np.all(np.isfinite(gaussian_logp(flat["dist_inputs"], flat["actions"]).numpy()))
