"""MLSH on MovementBandits, on one core: wall-clock and env steps until the mean post-warm-up
return of the last 10 tasks reaches a target (default 23, the level of always going to the same
goal), or a time budget runs out.

The settings are configs/movement_bandits/mlsh.yaml (``-W 60 -U 1``, 2 sub-policies, macro
duration 10, two tasks at once) with sampling in the trial's own process (``num_env_runners=0``)
on a Ray limited to one CPU. The reference numbers (the seed's PyTorch port, ``-W 60 -U 1``, one
core of this kind of machine) are quoted from the issue, not re-run: ~2,200 env steps/s, ~124k
env steps and ~56 s per task, and a 10-task mean of 16.6 after 30 minutes (32 tasks, ~4M steps).

    python benchmarks/mlsh_movement_bandits.py [--target 23] [--minutes 15] [--seed 0] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import start_ray

GOALS = [{"correct": 0}, {"correct": 1}]
REFERENCE = {"steps_per_s": 2200, "steps_per_task": 124e3, "s_per_task": 56, "mean_after_30_min": 16.6}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", type=float, default=23.0)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    from tesp.algorithms.mlsh.diagnostics import best_master_return, forced_sub_returns
    from tesp.config_overrides import parse_set
    from tesp.envs import make_env
    from tesp.settings import resolve_config

    start_ray(num_cpus=1)
    overrides = {"seed": args.seed, "num_env_runners": 0, **parse_set(args.set)}
    config, _, _ = resolve_config("mlsh", "movement_bandits", overrides)
    algo = config.build_algo()
    start, steps, reached, curve = time.perf_counter(), 0, None, []
    try:
        while time.perf_counter() - start < args.minutes * 60:
            m = algo.train()["mlsh"]
            steps += int(m["env_steps"])
            elapsed = time.perf_counter() - start
            if m["tasks_done"] >= 10 and (not curve or curve[-1][0] != m["tasks_done"]):
                curve.append((int(m["tasks_done"]), elapsed, steps, m["return_post_warmup"]))
                print(
                    f"tasks {int(m['tasks_done']):4d} | {elapsed / 60:5.1f} min | {steps / 1e6:5.2f} M steps | "
                    f"10-task mean after warm-up {m['return_post_warmup']:.1f}",
                    flush=True,
                )
                if reached is None and m["return_post_warmup"] >= args.target:
                    reached = (elapsed, steps, int(m["tasks_done"]))
        elapsed = time.perf_counter() - start
        forced = forced_sub_returns(
            algo.on_learner(lambda learner: learner.policy), make_env("movement_bandits"), GOALS, episodes=100
        )
    finally:
        algo.stop()
    print(f"\nMLSH on MovementBandits, one core, {args.minutes:g} min budget, seed {args.seed}")
    print(
        f"env steps/s: {steps / elapsed:,.0f} (reference {REFERENCE['steps_per_s']:,}; "
        f"ratio {steps / elapsed / REFERENCE['steps_per_s']:.2f})"
    )
    tasks = curve[-1][0] if curve else 0
    if tasks:
        print(
            f"per task: {steps / tasks / 1e3:.0f}k env steps, {elapsed / tasks:.1f} s "
            f"(reference {REFERENCE['steps_per_task'] / 1e3:.0f}k, {REFERENCE['s_per_task']} s)"
        )
    final = np.mean([c[3] for c in curve[-1:]]) if curve else float("nan")
    print(
        f"final 10-task mean after warm-up: {final:.1f} (reference after 30 min: {REFERENCE['mean_after_30_min']})"
    )
    if reached:
        print(
            f"reached {args.target:g} after {reached[0] / 60:.1f} min, {reached[1] / 1e6:.2f} M env steps, {reached[2]} tasks"
        )
    else:
        print(f"did not reach {args.target:g} within {args.minutes:g} min")
    print("each sub-policy acting alone, return per episode (100 episodes per goal):")
    for k, row in enumerate(forced):
        print(f"  sub-policy {k}: goal 0 {row[0]:.1f}, goal 1 {row[1]:.1f}")
    print(f"  a master always picking the better one: {best_master_return(forced):.1f} (oracle 43.8)")


if __name__ == "__main__":
    main()
