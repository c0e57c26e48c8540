"""PEARL's learner and sampler: gradient steps per second, env steps per second of its
collection, the share of an iteration each takes at a config's schedule, and the replay memory
per task.

Per env (default ``point`` and ``half_cheetah_vel``) and network size (2 x 64 and the release's
3 x 300), PEARL is built from ``configs/<env>/pearl.yaml`` on one core, with 4 training tasks, and
its two halves are timed apart (medians over ``--repeats`` alternating repeats):

- ``grad step``: one ``PEARLLearner.pearl_update`` on a meta-batch drawn from the replay
  (the config's meta-batch of tasks x 256 RL transitions, 64 context transitions per task;
  SAC's actor, twin critics, the value targets, the encoder and its KL), batch assembly included;
- ``sampling``: ``PEARL._collect``, whole episodes on one EnvRunner with z from the posterior
  of the task's context (the encoder's forward pass, the latent env, RLlib's EnvRunner);
- the share of the learner in an iteration at the config's schedule (``num_train_steps_per_itr``
  gradient steps against ``num_tasks_sample x (num_steps_prior + num_extra_rl_steps_posterior)``
  env steps), and that iteration's projected seconds;
- replay memory per task: both buffers (RL and encoder) of ``replay_capacity`` float32
  transitions, allocated up front and filled as data comes (so bounded at that size).

    python benchmarks/pearl_speed.py [--envs point half_cheetah_vel] [--nets 2x64 3x300] [--steps 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import start_ray

NETS = {"2x64": [64, 64], "3x300": [300, 300, 300]}


def measure(env: str, hiddens: list[int], steps: int) -> dict[str, float]:
    """Seconds per gradient step and per env step of collection for PEARL on ``env``."""
    from tesp.settings import resolve_config

    overrides = {
        "num_env_runners": 1,
        "validation_freq": 0,
        "num_train_tasks": 4,  # at most 4 of pool D too
        "num_initial_steps": 0,
        "model.fcnet_hiddens": hiddens,
    }
    config, _, _ = resolve_config("pearl", env, overrides)
    algo = config.build_algo()
    try:
        tasks = range(len(algo.train_tasks))
        horizon = int(getattr(algo.task_env, "horizon", 100))
        for i in tasks:  # enough data for the meta-batches
            algo._collect(i, max(config.batch_size, 2 * horizon), posterior=False, to_encoder=True)
        start, collected = time.perf_counter(), 0
        for i in tasks:
            collected += algo._collect(i, 2 * horizon, posterior=True, to_encoder=False)[0]
        sample_s = (time.perf_counter() - start) / collected
        (learner,) = [algo.learner_group._learner]
        update = learner.pearl_update
        for k in range(steps + 2):  # the first two are warm-up
            if k == 2:
                start = time.perf_counter()
            update(algo._meta_batch(algo.rng.choice(list(tasks), size=config.meta_batch_size)))
        grad_s = (time.perf_counter() - start) / steps
        env_steps = config.num_tasks_sample * (config.num_steps_prior + config.num_extra_rl_steps_posterior)
        learner_s = config.num_train_steps_per_itr * grad_s
        obs = algo.task_env.observation_space.shape[0]
        act = algo.task_env.action_space.shape[0]
        replay_bytes = 2 * config.replay_capacity * (2 * obs + act + 2) * 4
        return {
            "grad_s": grad_s,
            "sample_s": sample_s,
            "learner_share": learner_s / (learner_s + env_steps * sample_s),
            "iteration_s": learner_s + env_steps * sample_s,
            "replay_mb": replay_bytes / 1e6,
        }
    finally:
        algo.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", default=["point", "half_cheetah_vel"])
    parser.add_argument("--steps", type=int, default=30, help="gradient steps timed per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; medians are printed")
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    args = parser.parse_args()
    start_ray(1)
    keys = ("grad_s", "sample_s", "learner_share", "iteration_s", "replay_mb")
    samples: dict[tuple[str, str], list] = {(e, n): [] for e in args.envs for n in args.nets}
    for _ in range(args.repeats):
        for env, net in samples:
            out = measure(env, NETS[net], args.steps)
            samples[env, net].append([out[k] for k in keys])
    print(
        f"\nPEARL on one core (medians of {args.repeats} alternating repeats; schedule of configs/<env>/pearl.yaml)"
    )
    head = ["env", "nets", "grad steps/s", "ms / grad step", "env steps/s", "learner share", "s / iteration",
            "replay MB/task"]  # fmt: skip
    print(" | ".join(f"{h:>14}" for h in head))
    for (env, net), values in samples.items():
        grad_s, sample_s, share, iteration_s, replay_mb = np.median(np.array(values), axis=0)
        cells = [env, net, f"{1 / grad_s:.1f}", f"{1e3 * grad_s:.0f}", f"{1 / sample_s:,.0f}", f"{share:.2f}",
                 f"{iteration_s:.0f}", f"{replay_mb:.1f}"]  # fmt: skip
        print(" | ".join(f"{c:>14}" for c in cells))


if __name__ == "__main__":
    main()
