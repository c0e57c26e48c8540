"""MAML on ``point`` at the MAML paper's scale: wall-clock and env steps to a return threshold.

Scale (Finn et al. 2017, 2D navigation; the issue's benchmark): 20 tasks per meta-iteration, 20
episodes per task, 1 inner step of size 0.1, a 2x64 tanh policy; otherwise
``configs/point/maml.yaml``. Stops when the post-adaptation return first averages ``--threshold``
(-16) or better over 5 consecutive iterations.

Reference: tristandeleu/pytorch-maml-rl (MAML-TRPO), measured on this 2-core machine for the
issue: ~45 meta-iterations of ~7.8 s and ~79k env steps each, so ~6.5 min and ~3.5M env steps.

    python benchmarks/maml_point_threshold.py [--seeds 0,1,2] [--set KEY=VALUE ...] [--max-iters 150]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import start_ray

REFERENCE = {"name": "pytorch-maml-rl (MAML-TRPO)", "seconds": 6.5 * 60, "env_steps": 3.5e6, "iters": 45}
SCALE = {
    "meta_batch_size": 20,
    "episodes_per_task": 20,
    "num_inner_steps": 1,
    "inner_lr": 0.1,
    "model.hidden": [64, 64],
    "model.activation": "tanh",
}


def run_seed(seed: int, args) -> tuple[int, float, int] | None:
    """Train until the threshold; return (iterations, training seconds, env steps) or None."""
    from tesp.config_overrides import parse_set
    from tesp.settings import resolve_config

    config, _, _ = resolve_config("maml", "point", {**SCALE, "seed": seed, **parse_set(args.set)})
    algo = config.build_algo()
    post, steps, start = [], 0, time.perf_counter()
    try:
        for it in range(1, args.max_iters + 1):
            meta = algo.train()["meta"]
            post.append(meta["return_post"])
            steps += int(meta["env_steps"])
            elapsed = time.perf_counter() - start
            print(
                f"seed {seed} iter {it:3d}  pre {meta['return_pre']:7.2f}  post {meta['return_post']:7.2f}  "
                f"steps {steps / 1e6:5.2f}M  {elapsed:6.1f}s  (sample {meta['time_sample_s']:.1f}s, "
                f"adapt {meta['time_adapt_s']:.1f}s, outer {meta['time_outer_s']:.1f}s)",
                flush=True,
            )
            if len(post) >= args.window and np.mean(post[-args.window :]) >= args.threshold:
                return it, elapsed, steps
        return None
    finally:
        algo.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threshold", type=float, default=-16.0)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--max-iters", type=int, default=150)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, one run each")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    start_ray()
    runs = {seed: run_seed(seed, args) for seed in (int(s) for s in args.seeds.split(","))}

    ref = REFERENCE
    print(
        f"\nMAML on point, 20 tasks x 20 episodes; threshold: mean post-adaptation return over {args.window} iterations >= {args.threshold}"
    )
    print(f"{'':28} | {'iterations':>10} | {'wall-clock':>10} | {'env steps':>10}")
    for seed, hit in runs.items():
        if hit is None:
            print(f"{'tesp seed ' + str(seed):28} | not reached in {args.max_iters} iterations")
        else:
            print(
                f"{'tesp seed ' + str(seed):28} | {hit[0]:>10} | {hit[1] / 60:>8.2f} m | {hit[2] / 1e6:>8.2f} M"
            )
    print(
        f"{ref['name']:28} | {ref['iters']:>10} | {ref['seconds'] / 60:>8.2f} m | {ref['env_steps'] / 1e6:>8.2f} M"
    )
    reached = [hit for hit in runs.values() if hit is not None]
    if reached:
        seconds = float(np.median([h[1] for h in reached]))
        env_steps = float(np.median([h[2] for h in reached]))
        print(
            f"median wall-clock ratio tesp / reference: {seconds / ref['seconds']:.2f}; median env-step ratio: {env_steps / ref['env_steps']:.2f}"
            f" ({len(reached)}/{len(runs)} seeds reached the threshold)"
        )


if __name__ == "__main__":
    main()
