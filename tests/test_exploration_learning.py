"""Learning: MIME explores where MAML does not, on the sparse goal ring ``nav_wide_ring``.

The claim (MIME's comparison; Houthooft et al. 2016 for VIME's information gain, Finn et al.
2017 for MAML): on a sparse-reward task family, MAML's policy never reaches a goal, so it has
nothing to adapt on, while MIME's information-gain bonus drives it out to the ring.

Checked at a reduced scale (10 tasks x 10 episodes of 100 steps per meta-iteration, 0
EnvRunners, the shipped ``configs/nav_wide_ring/{maml,mime}.yaml`` otherwise), after ITERS
meta-iterations on seed 0, with the reference's test protocol: 10 inner steps on each of the
env's 16 fixed test goals, a goal solved when any step of any episode ends within its radius.
MIME must solve more test goals than MAML by more than SOLVED_MARGIN.

The margin is about half the smallest difference seen over seeds 0-4; the runs, the command
that repeats them and the date are in docs/calibration.md.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import pytest

from tesp.meta.rollout import task_success
from tesp.settings import resolve_config

ENV = "nav_wide_ring"
ITERS = 20
TEST_INNER_STEPS = 10  # the reference's test protocol
SCALE = {
    "meta_batch_size": 10,
    "episodes_per_task": 10,
    "num_envs_per_env_runner": 10,
    "num_env_runners": 0,
}
SOLVED_MARGIN = 1.0  # test goals (of 16): half the smallest difference seen (2); docs/calibration.md


@functools.cache
def solved_test_goals(alg: str, seed: int, iters: int = ITERS) -> tuple[int, np.ndarray]:
    """After ``iters`` meta-iterations: how many of the test goals are solved within
    TEST_INNER_STEPS inner steps, and the training post-adaptation return per iteration."""
    config, _, _ = resolve_config(alg, ENV, {**SCALE, "seed": seed})
    algo = config.build_algo()
    try:
        curve = np.array([algo.train()["meta"]["return_post"] for _ in range(iters)])
        tasks = algo.task_env.task_pools()["test"]
        rollouts = algo.evaluate_adaptation(tasks, num_inner_steps=TEST_INNER_STEPS)
        solved = sum(task_success(r.batch) for ro in rollouts for r in ro.stages[-1])
        return int(solved), curve
    finally:
        algo.stop()


@pytest.mark.ray
@pytest.mark.learning
def test_mime_solves_more_sparse_test_goals_than_maml(ray_session):
    mime, mime_curve = solved_test_goals("mime", seed=0)
    maml, maml_curve = solved_test_goals("maml", seed=0)
    assert mime - maml > SOLVED_MARGIN, (
        f"test goals solved (of 16): mime {mime}, maml {maml}; training post-adaptation returns: "
        f"mime {np.round(mime_curve, 2).tolist()}, maml {np.round(maml_curve, 2).tolist()}"
    )


if __name__ == "__main__" and "--calibrate" in sys.argv:
    import tempfile

    import ray
    import ray.tune.trainable.trainable as trainable
    import torch

    from tesp.envs import register_envs

    trainable.DEFAULT_STORAGE_PATH = tempfile.mkdtemp(prefix="tesp-calibration-")  # not ~/ray_results
    torch.set_num_threads(1)  # as the test session

    seeds = [int(s) for s in sys.argv[sys.argv.index("--calibrate") + 1].split(",")]
    algs = sys.argv[sys.argv.index("--algs") + 1].split(",") if "--algs" in sys.argv else ["mime", "maml"]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    register_envs()
    for alg in algs:
        for seed in seeds:
            solved, curve = solved_test_goals(alg, seed)
            print(
                f"{alg} seed {seed}: solved {solved} of 16 | post {' '.join(f'{p:.2f}' for p in curve)}",
                flush=True,
            )
    ray.shutdown()
