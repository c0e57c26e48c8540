"""An EnvRunner that dies is replaced, its tasks are re-sampled, and no iteration is lost."""

import os
import signal
import time

import numpy as np
import pytest

from tesp.settings import resolve_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_killed_env_runner_tasks_are_resampled_and_training_continues(ray_session):
    config, _, _ = resolve_config(
        "maml",
        "point",
        {
            "meta_batch_size": 4,
            "episodes_per_task": 4,
            "num_envs_per_env_runner": 4,
            "num_env_runners": 2,
            "seed": 0,
        },
    )
    algo = config.build_algo()
    try:
        first = algo.train()
        assert first["meta"]["tasks_resampled"] == 0
        group = algo.env_runner_group
        victim = group.healthy_worker_ids()[0]
        (pid,) = group.foreach_env_runner(
            lambda er: os.getpid(), remote_worker_ids=[victim], local_env_runner=False
        )
        os.kill(pid, signal.SIGKILL)

        second = algo.train()
        meta = second["meta"]
        assert second["training_iteration"] == 2
        assert meta["tasks_resampled"] >= 1  # the victim's tasks were dealt again
        assert np.isfinite(meta["return_stage_0"]) and np.isfinite(meta["return_stage_1"])
        assert meta["env_steps"] >= 2 * 4 * 4  # every task sampled in both stages

        third = algo.train()
        assert third["meta"]["tasks_resampled"] == 0  # the survivor took every task

        # RLlib restarts the dead runner in the background; once it answers it samples again.
        deadline = time.time() + 60
        while sorted(group.healthy_worker_ids()) != [1, 2] and time.time() < deadline:
            group.probe_unhealthy_env_runners()
            time.sleep(1.0)
        assert sorted(group.healthy_worker_ids()) == [1, 2]
        fourth = algo.train()
        assert fourth["training_iteration"] == 4 and fourth["meta"]["tasks_resampled"] == 0
    finally:
        algo.stop()
