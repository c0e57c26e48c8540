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

import numpy as np
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
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; medians are printed")
    args = parser.parse_args()
    start_ray()
    cases = {"one": (1, 1.0), "two": (2, 1.0), "slowed": (2, args.slow_factor)}
    rows = {}
    for env in args.envs:
        rates = {case: [] for case in cases}
        for _ in range(args.repeats):  # alternating, so a slow spell of the machine hits every case
            for case, (runners, factor) in cases.items():
                rates[case].append(
                    sampler_rate(
                        "maml", env, runners, args.tasks, args.episodes, args.rounds, slow_factor=factor
                    )
                )
        rows[env] = tuple(float(np.median(rates[case])) for case in cases)
    s = args.slow_factor
    print(
        f"\n{args.tasks} tasks x {args.episodes} episodes per round, {args.rounds} rounds; "
        f"env steps/s, median of {args.repeats}"
    )
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
