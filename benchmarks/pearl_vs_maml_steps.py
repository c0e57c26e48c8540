"""Env steps to MAML's post-adaptation threshold on ``point``: PEARL against MAML.

PEARL's claim (Rakelly et al. 2019, §6.1 and Fig. 3) is 20-100x fewer env steps than the
on-policy meta-learners for the same return. Both methods here train on ``point`` until their
post-adaptation return first averages ``--threshold`` (default -16, the return MAML reaches at
the MAML paper's scale in ``maml_point_threshold.py``) or better over ``--window`` consecutive
iterations, and the env steps (every step sampled for training, PEARL's initial collection
included) and wall-clock are printed per seed, with the medians' ratio:

- MAML: ``maml_point_threshold.py``'s run (20 tasks x 20 episodes, one inner step of 0.1, 2 x 64
  tanh; its post-adaptation return is the mean over the iteration's 400 post-update episodes);
- PEARL: ``configs/point/pearl.yaml`` with ``--pearl-set`` overrides; its post-adaptation return
  is the mean over the iteration's episodes acting with z from the posterior of the task's
  prior-z context (``meta/return_post``: ``num_tasks_sample`` tasks per iteration, so fewer
  episodes per point than MAML's and a noisier curve).

    python benchmarks/pearl_vs_maml_steps.py [--seeds 0,1,2] [--threshold -16] [--max-iters 150]
        [--pearl-max-iters 200] [--pearl-set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse

import numpy as np
from common import start_ray, train_to_threshold
from maml_point_threshold import run_seed as run_maml


def run_pearl(seed: int, args) -> tuple[int, float, int] | None:
    """Train PEARL until the threshold; return (iterations, training seconds, env steps) or None."""
    from tesp.config_overrides import parse_set
    from tesp.settings import resolve_config

    config, _, _ = resolve_config(
        "pearl", "point", {"seed": seed, "validation_freq": 0, **parse_set(args.pearl_set)}
    )

    def line(it, meta, steps, elapsed):
        return (
            f"pearl seed {seed} iter {it:3d}  prior {meta['return_stage_0']:7.2f}  post {meta['return_post']:7.2f}  "
            f"steps {steps / 1e6:5.3f}M  {elapsed:6.1f}s"
        )

    return train_to_threshold(config, args.pearl_max_iters, args.window, args.threshold, line)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threshold", type=float, default=-16.0)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--max-iters", type=int, default=150, help="MAML's iterations at most")
    parser.add_argument("--pearl-max-iters", type=int, default=200)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, one run of each method each")
    parser.add_argument("--pearl-set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    args.set = []  # maml_point_threshold's overrides: none
    start_ray()
    runs: dict[str, dict[int, tuple | None]] = {"maml": {}, "pearl": {}}
    for seed in (int(s) for s in args.seeds.split(",")):  # alternating: a slow spell hits both
        runs["pearl"][seed] = run_pearl(seed, args)
        runs["maml"][seed] = run_maml(seed, args)
    print(
        f"\npoint; threshold: mean post-adaptation return over {args.window} iterations >= {args.threshold}"
    )
    print(f"{'':20} | {'iterations':>10} | {'wall-clock':>10} | {'env steps':>10}")
    medians = {}
    for name, limit in (("pearl", args.pearl_max_iters), ("maml", args.max_iters)):
        for seed, hit in runs[name].items():
            if hit is None:
                print(f"{name + ' seed ' + str(seed):20} | not reached in {limit} iterations")
            else:
                print(
                    f"{name + ' seed ' + str(seed):20} | {hit[0]:>10} | {hit[1] / 60:>8.2f} m | {hit[2] / 1e6:>8.3f} M"
                )
        reached = [hit for hit in runs[name].values() if hit is not None]
        if reached:
            medians[name] = (
                float(np.median([h[1] for h in reached])),
                float(np.median([h[2] for h in reached])),
            )
            print(
                f"{name + ' median':20} |            | {medians[name][0] / 60:>8.2f} m | {medians[name][1] / 1e6:>8.3f} M"
                f"   ({len(reached)}/{len(runs[name])} seeds reached the threshold)"
            )
    if len(medians) == 2:
        (p_s, p_n), (m_s, m_n) = medians["pearl"], medians["maml"]
        print(
            f"median env-step ratio MAML / PEARL: {m_n / p_n:.1f}; wall-clock ratio MAML / PEARL: {m_s / p_s:.2f}"
        )


if __name__ == "__main__":
    main()
