"""Learning: MLSH on MovementBandits beats the collapsed level of 23.0 after warm-up.

A task's post-warm-up return is the mean return of the batch it samples at its first joint
iteration: after W master-only iterations on a fresh master, before the sub-policies have seen
that task's data. Always going to the same goal scores 23.0 per episode; the oracle 43.8
(``../shared/reference/mlsh_mime_notes.md``), so a mean well above 23 means the sub-policies
have specialised to the two goals and the masters pick the right one.

Setting: configs/movement_bandits/mlsh.yaml (2 sub-policies, macro duration 10, two tasks at
once, 20 episodes per task and iteration, sub-policy lr 3e-4) with ``-W 20 -U 1``, in this
process (``num_env_runners=0``: one core, one torch thread). The run stops after TASKS = 120
finished tasks, about 6 minutes of one core; the claim is checked on the mean over the last 30
of them (three non-overlapping 10-task windows: a single task scores either ~2 or ~40, so a
10-task mean alone is too noisy).

Calibration (``python -m tests.test_mlsh_learning --calibrate 0,1,2,3,4 [--tasks 200]``, 2026-11-21, this
2-core machine, one seed per core), mean of tasks 91-120, and the 10-task means at tasks
10, 20, ..., 200 of 200-task runs (| after task 120, where the test stops):

    seed 0: 35.2 | 2.8 4.5 5.0 8.3 9.1 12.4 15.3 21.0 29.9 33.8 34.7 37.0 | 37.8 37.5 37.7 39.4 39.6 38.8 38.8 39.6
    seed 1: 11.2 | 2.7 4.9 5.0 7.2 10.7 8.6 9.3 8.1 10.4 12.0 10.1 11.5 | 13.2 14.5 17.0 15.1 12.9 14.4 14.9 14.3
    seed 2: 34.1 | 2.7 5.4 8.3 11.2 14.1 16.0 23.9 20.5 29.3 34.0 35.3 32.9 | 32.7 36.8 35.7 34.7 34.0 36.5 37.2 38.0
    seed 3: 18.8 | 2.6 5.1 6.5 7.5 8.1 8.6 10.5 9.5 9.5 17.0 19.2 20.0   (120-task runs)
    seed 4: 12.6 | 3.6 4.5 4.8 8.3 8.1 9.2 8.6 9.6 11.3 13.0 12.0 12.9

Seed 1 gets stuck, as MLSH's users reported of the reference (openai/mlsh#8, #9): after 100
tasks one sub-policy is useless for both goals (forced to act alone it scores 1.0 and 1.9 per
episode) and the other has half-learnt one goal (13.5 on it, 3.6 on the other); 200 tasks do
not get it out. Seeds 3 and 4 are still below 23 after 120 tasks (seed 3 rising). So at this
budget MLSH beats 23 on 2 of 5 seeds: the test pins seed 0, a regression guard rather than a
claim about every seed. The runs are deterministic on this machine (seed 1's first 120 tasks
repeated exactly across two runs); the margin of 6 is about half of what the learning seeds
clear (11.1 and 12.2 above 23), so a change that slows learning noticeably or breaks the
sub-policies' specialisation fails it.

An entropy bonus for the sub-policies (``sub_entropy_coeff``, the port's ``--c2_low``; 0 by
default, as in both originals) does not change the odds, it reshuffles which seeds learn. Mean of
the last 30 tasks, same protocol (``post_warmup_windows(seed, tasks, {"sub_entropy_coeff": c})``,
one seed per core, 2026-11-21):

    c = 0.01,  120 tasks: seed 0 22.0, seed 1 17.9, seed 3 23.1, seed 4 15.6
               200 tasks: seed 1 29.5 (out of its rut: 30.0 at task 200), seed 4 21.7
    c = 0.003, 160 tasks: seed 0 11.7 (now the stuck one), seed 1 34.7, seed 3 21.5, seed 4 39.7

Schedules that give the sub-policies more data per task trade the stuck seeds for a plateau just
above 23 (same protocol, 120 tasks, 2026-11-21):

    -W 10, 40 episodes per iteration (same cost per task, 2,000-step joint batches):
        seeds 0-5: 24.0 22.3 22.8 27.8 30.7 21.9
    -W 20 -U 3 (three joint iterations per task, ~10% more steps per task):
        seeds 0-5: 23.9 23.7 22.9 23.8 39.4 24.1

No seed stays stuck near 12, but only one in six clears 29 (the baseline: two in five). The
plateau is half a specialisation, and it holds: each sub-policy acting alone (sampling, 200
episodes per goal; ``tesp.algorithms.mlsh.diagnostics.forced_sub_returns``), goal 0 | goal 1:

    -W 10 seed 1, 120 tasks:        sub 0 42.9 | 1.9   sub 1  9.0 | 7.1
    -W 20 -U 3 seed 1, 120 tasks:   sub 0 34.8 | 1.6   sub 1  6.1 | 11.3
                       200 tasks:   sub 0 41.7 | 2.1   sub 1  5.7 | 10.7   (last 30 tasks 25.9)
    -W 20 -U 3 seed 3, 120 tasks:   sub 0  6.3 | 5.8   sub 1 38.8 | 1.7
                       200 tasks:   sub 0  3.2 | 6.6   sub 1 42.9 | 1.7   (last 30 tasks 23.8)

One sub-policy masters a goal; the masters pick the other one on the other goal, where it stays
weak for 80 more tasks. Adding the entropy bonus 0.01 to ``-W 20 -U 3`` (120 tasks) frees one of
two: seed 3 specialises (last 30 tasks 35.5; sub 0 42.3 | 1.9, sub 1 1.8 | 39.3), seed 1 stays
on the plateau (21.2; sub 0 7.2 | 5.6, sub 1 42.6 | 1.9).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tesp.cli import resolve_config

SETTINGS = {"warmup_iters": 20, "joint_iters": 1, "num_env_runners": 0}
TASKS = 120
COLLAPSED = 23.0
MARGIN = 6.0


def post_warmup_windows(seed: int, tasks: int = TASKS, settings: dict | None = None) -> list[float]:
    """The 10-task mean post-warm-up return after tasks 10, 20, ... (non-overlapping windows)."""
    config, _, _ = resolve_config("mlsh", "movement_bandits", {**SETTINGS, **(settings or {}), "seed": seed})
    algo = config.build_algo()
    windows: list[float] = []
    try:
        while len(windows) < tasks // 10:
            m = algo.train()["mlsh"]
            if int(m["tasks_done"]) // 10 > len(windows):
                windows.append(float(m["return_post_warmup"]))
        return windows
    finally:
        algo.stop()


@pytest.mark.ray
@pytest.mark.learning
def test_mlsh_post_warmup_return_beats_the_collapsed_level(ray_session):
    windows = post_warmup_windows(seed=0)
    final = float(np.mean(windows[-3:]))
    curve = " ".join(f"{w:.1f}" for w in windows)
    assert final > COLLAPSED + MARGIN, f"mean of the last 30 tasks {final:.1f}; 10-task means: {curve}"


if __name__ == "__main__" and "--calibrate" in sys.argv:
    import tempfile

    import ray
    import ray.tune.trainable.trainable as trainable
    import torch

    from tesp.envs import register_envs

    trainable.DEFAULT_STORAGE_PATH = tempfile.mkdtemp(prefix="tesp-calibration-")  # not ~/ray_results
    torch.set_num_threads(1)
    seeds = [int(s) for s in sys.argv[sys.argv.index("--calibrate") + 1].split(",")]
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    register_envs()
    tasks = int(sys.argv[sys.argv.index("--tasks") + 1]) if "--tasks" in sys.argv else TASKS
    for seed in seeds:
        windows = post_warmup_windows(seed, tasks)
        print(
            f"seed {seed}: mean of the last 30 tasks {np.mean(windows[-3:]):.1f} | 10-task means "
            + " ".join(f"{w:.1f}" for w in windows),
            flush=True,
        )
    ray.shutdown()
