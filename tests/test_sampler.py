"""Per-task weights and tasks reach the right EnvRunner, and each samples with exactly them."""

import os
import time

import numpy as np
import pytest
import torch

from tesp.algorithms.maml import MAMLConfig
from tesp.meta.sampler import SampleJob
from tesp.nn.distributions import gaussian_logp

from .helpers import local_learner

pytestmark = pytest.mark.ray


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
    assert {results[i].worker_index for i in results} == set(runners)  # both runners took jobs

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


def test_a_runner_that_finishes_takes_the_next_job(algo, tmp_path):
    """Jobs are dealt as runners free up, not in turn: runner 2 is held on the k jobs it is
    first given (k = calls a runner holds at once, one job each while few jobs wait) until
    runner 1 has sampled four, so every other job must go to runner 1. Dealt in turn, runner 1
    would get only half of the 4 + k jobs."""
    marker = str(tmp_path / "released")
    group = algo.env_runner_group
    fast, slow = group.healthy_worker_ids()

    def hold_until_released(er):
        original = er.sample_task

        def sample_task(*args, **kwargs):
            deadline = time.time() + 30
            while not os.path.exists(marker) and time.time() < deadline:
                time.sleep(0.02)
            return original(*args, **kwargs)

        er.sample_task = sample_task

    def release_after_four(er):
        original = er.sample_task
        done = []

        def sample_task(*args, **kwargs):
            out = original(*args, **kwargs)
            done.append(1)
            if len(done) == 4:
                open(marker, "w").close()
            return out

        er.sample_task = sample_task

    def restore(er):
        del er.sample_task

    group.foreach_env_runner(hold_until_released, remote_worker_ids=[slow], local_env_runner=False)
    group.foreach_env_runner(release_after_four, remote_worker_ids=[fast], local_env_runner=False)
    try:
        base = local_learner(algo).start_tasks([-1])[0]
        held = algo.sampler.calls_per_runner
        jobs = [SampleJob(i, {"goal": np.array([0.1 * i, 0.0])}, base) for i in range(4 + held)]
        results = algo.sampler.sample(jobs)
    finally:
        group.foreach_env_runner(restore, remote_worker_ids=[fast, slow], local_env_runner=False)
    by_runner = [results[i].worker_index for i in range(len(jobs))]
    assert by_runner.count(fast) == 4 and by_runner.count(slow) == held, by_runner
