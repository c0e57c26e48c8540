"""Shared set-up for the benchmark scripts: a local Ray sized to this machine, with no auth file;
the engine's sampling rate; training to a return threshold."""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from functools import partial


def start_ray(num_cpus: int | None = None) -> None:
    import torch

    # The algorithm runs in this process (not in a Ray actor, which Ray gives OMP_NUM_THREADS
    # equal to its CPUs); keep torch to the CPUs the benchmark claims. Two benchmarks at once
    # with torch's default of one thread per core ran ~10x slower each (spin-waiting threads).
    torch.set_num_threads(num_cpus or os.cpu_count() or 1)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))  # no ~/.ray/auth_token left behind
    import ray
    import ray.tune.trainable.trainable as trainable

    from tesp.envs import register_envs

    # Algorithms built outside Tune log to ~/ray_results/<timestamp>; keep benchmarks out of it.
    trainable.DEFAULT_STORAGE_PATH = tempfile.mkdtemp(prefix="tesp-benchmark-")
    # address="local": a Ray of its own, even when another one (a test session, a cluster) runs here.
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    register_envs()


def sampler_rate(
    alg: str,
    env: str,
    runners: int,
    tasks: int,
    episodes: int,
    rounds: int,
    overrides: dict | None = None,
    slow_factor: float = 1.0,
) -> float:
    """Env steps per second of the engine's sampling path (``MultiTaskSampler.sample``): every
    task with its own weights on the EnvRunner it is dealt to, baseline fit and GAE included.

    ``slow_factor`` > 1 slows the last EnvRunner down artificially: after each job it sleeps
    ``slow_factor - 1`` times as long as the job took, so it samples at ``1 / slow_factor`` of
    its speed (and leaves its core to the others meanwhile)."""
    from tesp.meta.sampler import SampleJob
    from tesp.settings import resolve_config

    settings = {
        "num_env_runners": runners,
        "num_envs_per_env_runner": episodes,
        "episodes_per_task": episodes,
        "meta_batch_size": tasks,
    }
    config, _, _ = resolve_config(alg, env, settings | (overrides or {}))
    algo = config.build_algo()
    try:
        if slow_factor > 1:
            slowed = algo.env_runner_group.healthy_worker_ids()[-1:]
            algo.env_runner_group.foreach_env_runner(
                partial(_slow_down, factor=slow_factor), remote_worker_ids=slowed, local_env_runner=False
            )
        (weights, *_) = algo.on_learner(lambda learner: learner.start_tasks([-1]))
        task_list = algo.task_env.sample_tasks(tasks)
        jobs = [SampleJob(i, t, weights) for i, t in enumerate(task_list)]
        algo.sampler.sample(jobs)  # warm-up
        steps, start = 0, time.perf_counter()
        for _ in range(rounds):
            steps += sum(r.num_env_steps for r in algo.sampler.sample(jobs).values())
        return steps / (time.perf_counter() - start)
    finally:
        algo.stop()


def _slow_down(env_runner, factor: float) -> None:
    original = env_runner.sample_task

    def sample_task(*args, **kwargs):
        start = time.perf_counter()
        out = original(*args, **kwargs)
        time.sleep((factor - 1.0) * (time.perf_counter() - start))
        return out

    env_runner.sample_task = sample_task


def train_to_threshold(
    config, max_iters: int, window: int, threshold: float, line
) -> tuple[int, float, int] | None:
    """Train the algorithm of ``config`` until its post-adaptation return (``meta/return_post``)
    first averages ``threshold`` or better over ``window`` consecutive iterations; print
    ``line(iteration, meta, env steps so far, seconds so far)`` per iteration. Returns
    (iterations, training seconds, env steps), or None if ``max_iters`` pass first."""
    import numpy as np

    algo = config.build_algo()
    post, steps, start = [], 0, time.perf_counter()
    try:
        for it in range(1, max_iters + 1):
            meta = algo.train()["meta"]
            post.append(meta["return_post"])
            steps += int(meta["env_steps"])
            elapsed = time.perf_counter() - start
            print(line(it, meta, steps, elapsed), flush=True)
            if len(post) >= window and np.mean(post[-window:]) >= threshold:
                return it, elapsed, steps
        return None
    finally:
        algo.stop()
