"""Multi-task sampler throughput: env steps per second with 1 and 2 EnvRunners, and with one of
the 2 slowed down.

Each round samples every task of a meta-batch with its own weights (the engine's real path:
``MultiTaskSampler.sample``), including baseline fitting and GAE on the runners. With
``--slow-factor S`` the second runner samples at 1/S of its speed (it sleeps after each job);
jobs dealt as runners free up should then lose only that runner's missing share: the round
takes at most 2 / (1 + 1/S) of the time with two full-speed runners (1.33 for S = 2), where
dealing the jobs in turn would take S times as long.

    python benchmarks/sampler_throughput.py [--envs point wheeled] [--tasks 20] [--episodes 20]
        [--rounds 5] [--slow-factor 2]
"""

from __future__ import annotations

import argparse

from common import sampler_rate, start_ray


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", default=["point", "wheeled"])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--slow-factor", type=float, default=2.0)
    args = parser.parse_args()
    start_ray()
    rows = {}
    for env in args.envs:
        rate = {r: sampler_rate("maml", env, r, args.tasks, args.episodes, args.rounds) for r in (1, 2)}
        slowed = sampler_rate(
            "maml", env, 2, args.tasks, args.episodes, args.rounds, slow_factor=args.slow_factor
        )
        rows[env] = (rate[1], rate[2], slowed)
    s = args.slow_factor
    print(f"\n{args.tasks} tasks x {args.episodes} episodes per round, {args.rounds} rounds; env steps/s")
    print(
        f"{'env':<10}{'1 runner':>11}{'2 runners':>11}{'2 / 1':>8}"
        f"{'one slowed':>12}{'round time x':>14}{'bound':>7}{'in turn':>9}"
    )
    for env, (one, two, slowed) in rows.items():
        print(
            f"{env:<10}{one:>11,.0f}{two:>11,.0f}{two / one:>8.2f}"
            f"{slowed:>12,.0f}{two / slowed:>14.2f}{2 / (1 + 1 / s):>7.2f}{s:>9.2f}"
        )


if __name__ == "__main__":
    main()
