"""Multi-task sampler throughput on ``point``: env steps per second with 1 and 2 EnvRunners.

Each round samples every task of a meta-batch with its own weights (the engine's real path:
``MultiTaskSampler.sample``), including baseline fitting and GAE on the runners.

    python benchmarks/sampler_throughput.py [--tasks 20] [--episodes 20] [--rounds 5]
"""

from __future__ import annotations

import argparse

from common import sampler_rate, start_ray


def measure(num_runners: int, tasks: int, episodes: int, rounds: int) -> float:
    return sampler_rate("maml", "point", num_runners, tasks, episodes, rounds)


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
