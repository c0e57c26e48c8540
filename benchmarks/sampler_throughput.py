"""Multi-task sampler throughput on ``point``: env steps per second with 1 and 2 EnvRunners.

Each round samples every task of a meta-batch with its own weights (the engine's real path:
``MultiTaskSampler.sample``), including baseline fitting and GAE on the runners.

    python benchmarks/sampler_throughput.py [--tasks 20] [--episodes 20] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time

from common import start_ray


def measure(num_runners: int, tasks: int, episodes: int, rounds: int) -> float:
    from tesp.cli import resolve_config
    from tesp.meta.sampler import SampleJob

    config, _, _ = resolve_config(
        "maml",
        "point",
        {
            "num_env_runners": num_runners,
            "num_envs_per_env_runner": episodes,
            "episodes_per_task": episodes,
            "meta_batch_size": tasks,
        },
    )
    algo = config.build_algo()
    try:
        weights = algo.on_learner(lambda learner: learner.initial_weights())
        task_list = algo.task_env.sample_tasks(tasks)
        jobs = [SampleJob(i, t, weights) for i, t in enumerate(task_list)]
        algo.sampler.sample(jobs)  # warm-up
        steps, start = 0, time.perf_counter()
        for _ in range(rounds):
            steps += sum(r.num_env_steps for r in algo.sampler.sample(jobs).values())
        return steps / (time.perf_counter() - start)
    finally:
        algo.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    start_ray()
    rates = {r: measure(r, args.tasks, args.episodes, args.rounds) for r in (1, 2)}
    print(
        f"\npoint, {args.tasks} tasks x {args.episodes} episodes x 100 steps per round, {args.rounds} rounds"
    )
    print(f"{'EnvRunners':>10} | {'env steps/s':>12}")
    for r, rate in rates.items():
        print(f"{r:>10} | {rate:>12,.0f}")
    print(f"ratio 2 / 1 runners: {rates[2] / rates[1]:.2f}")


if __name__ == "__main__":
    main()
