"""Learning: MLSH on MovementBandits beats the collapsed level of 23.0 after warm-up.

A task's post-warm-up return is the mean return of the batch it samples at its first joint
iteration: after W master-only iterations on a fresh master, before the sub-policies have seen
that task's data. Always going to the same goal scores 23.0 per episode, the oracle 43.8
(docs/mlsh_reference.md), so a mean well above 23 means the sub-policies have specialised to
the two goals and the masters pick the right one.

Setting: configs/movement_bandits/mlsh.yaml with ``-W 20 -U 1``, in this process
(``num_env_runners=0``: one core, one torch thread), stopping after TASKS finished tasks; the
claim is checked on the mean over the last 30 of them (a single task scores either ~2 or ~40).

MLSH does not specialise on every seed at this budget, so the test pins SEED, a seed that does:
it guards the sampling, the schedule and the two PPO updates, and does not claim every seed
learns. The margin is about half of what that seed clears; the runs over seeds, the command that
repeats them and the margin's derivation are in docs/calibration.md.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from tesp.settings import resolve_config

SETTINGS = {"warmup_iters": 20, "joint_iters": 1, "num_env_runners": 0}
TASKS = 120
COLLAPSED = 23.0
MARGIN = 6.0
SEED = 3  # a seed that learns within the budget (docs/calibration.md)


def post_warmup_windows(seed: int, tasks: int = TASKS, settings: dict | None = None) -> list[float]:
    """The 10-task mean post-warm-up return after tasks 10, 20, ... (non-overlapping windows)."""
    return [mean for mean, _ in post_warmup_curve(seed, tasks, settings)]


def post_warmup_curve(
    seed: int, tasks: int = TASKS, settings: dict | None = None
) -> list[tuple[float, float]]:
    """Per window of 10 tasks: the 10-task mean post-warm-up return and the training minutes so far."""
    config, _, _ = resolve_config("mlsh", "movement_bandits", {**SETTINGS, **(settings or {}), "seed": seed})
    algo = config.build_algo()
    curve: list[tuple[float, float]] = []
    start = time.perf_counter()
    try:
        while len(curve) < tasks // 10:
            m = algo.train()["mlsh"]
            if int(m["tasks_done"]) // 10 > len(curve):
                curve.append((float(m["return_post_warmup"]), (time.perf_counter() - start) / 60))
        return curve
    finally:
        algo.stop()


def first_minutes(curve: list[tuple[float, float]], level: float) -> str:
    """When the 10-task mean first reached ``level``: "T tasks, M min", or "not reached"."""
    for i, (mean, minutes) in enumerate(curve):
        if mean >= level:
            return f"{10 * (i + 1)} tasks, {minutes:.1f} min"
    return "not reached"


@pytest.mark.ray
@pytest.mark.learning
def test_mlsh_post_warmup_return_beats_the_collapsed_level(ray_session):
    windows = post_warmup_windows(seed=SEED)
    final = float(np.mean(windows[-3:]))
    curve = " ".join(f"{w:.1f}" for w in windows)
    assert final > COLLAPSED + MARGIN, f"mean of the last 30 tasks {final:.1f}; 10-task means: {curve}"


if __name__ == "__main__" and "--calibrate" in sys.argv:
    import tempfile

    import ray
    import ray.tune.trainable.trainable as trainable
    import torch

    from tesp.config_overrides import parse_set
    from tesp.envs import register_envs

    trainable.DEFAULT_STORAGE_PATH = tempfile.mkdtemp(prefix="tesp-calibration-")  # not ~/ray_results
    torch.set_num_threads(1)
    seeds = [int(s) for s in sys.argv[sys.argv.index("--calibrate") + 1].split(",")]
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    register_envs()
    tasks = int(sys.argv[sys.argv.index("--tasks") + 1]) if "--tasks" in sys.argv else TASKS
    extra = parse_set([sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "--set"])  # screens
    for seed in seeds:
        curve = post_warmup_curve(seed, tasks, extra)
        windows = [mean for mean, _ in curve]
        print(
            f"seed {seed}: mean of the last 30 tasks {np.mean(windows[-3:]):.1f} | 23 at "
            f"{first_minutes(curve, 23.0)} | 35 at {first_minutes(curve, 35.0)} | 10-task means "
            + " ".join(f"{w:.1f}" for w in windows),
            flush=True,
        )
    ray.shutdown()
