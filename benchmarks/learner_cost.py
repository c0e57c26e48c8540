"""Where a meta-iteration's time goes, per method, at one scale: sampling vs the learner.

For each method, ``--iters`` meta-iterations on ``--env`` (the first ``--warmup`` discarded) with
``--tasks`` tasks x ``--episodes`` episodes and K = ``--inner-steps``, the shipped config
otherwise (``configs/<env>/<alg>.yaml``: for the MuJoCo envs the TESP release's first-order
update with fixed inner gradients). Printed per method: seconds per iteration spent sampling, in
the inner steps (``adapt``) and in the outer update, and two ratios: learner time (adapt + outer)
over sampling time, and each method's iteration time over MAML's.

    python benchmarks/learner_cost.py [--env wheeled] [--algs maml,meta_sgd,tesp] [--tasks 10]
        [--episodes 10] [--inner-steps 3] [--iters 3] [--warmup 1] [--runners 1] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse

import numpy as np
from common import start_ray


def phase_times(alg: str, env: str, settings: dict, iters: int, warmup: int = 1) -> dict[str, float]:
    from tesp.settings import resolve_config

    config, _, _ = resolve_config(alg, env, settings)
    algo = config.build_algo()
    rows = []
    try:
        for _ in range(iters):
            meta = algo.train()["meta"]
            rows.append({p: meta[f"time_{p}_s"] for p in ("sample", "adapt", "outer")})
    finally:
        algo.stop()
    rows = rows[warmup:] or rows
    return {p: float(np.mean([r[p] for r in rows])) for p in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="wheeled")
    parser.add_argument("--algs", default="maml,meta_sgd,tesp")
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--inner-steps", type=int, default=3)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--runners", type=int, default=1)
    parser.add_argument(
        "--warmup", type=int, default=1, help="first iterations not measured (MIME: its pre_epochs, 3)"
    )
    parser.add_argument("--learner-threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    from tesp.config_overrides import parse_set

    start_ray()
    import torch

    # One torch thread for the learner in this process: with remote EnvRunners on a 2-core
    # machine, two learner threads and a runner thrashed (100% system time, no progress).
    torch.set_num_threads(args.learner_threads)
    settings = {
        "meta_batch_size": args.tasks,
        "episodes_per_task": args.episodes,
        "num_envs_per_env_runner": args.episodes,
        "num_inner_steps": args.inner_steps,
        "num_env_runners": args.runners,
        "validation_freq": 0,
        **parse_set(args.set),
    }
    times = {
        alg: phase_times(alg, args.env, settings, args.iters, args.warmup) for alg in args.algs.split(",")
    }
    base = sum(times.get("maml", next(iter(times.values()))).values())
    print(
        f"\n{args.env}: {args.tasks} tasks x {args.episodes} episodes, K = {args.inner_steps}, "
        f"{args.runners} EnvRunner(s); seconds per iteration (mean of {max(args.iters - args.warmup, 1)})"
    )
    print(f"{'method':<18}{'sample':>9}{'adapt':>9}{'outer':>9}{'learner/sample':>16}{'iteration/maml':>16}")
    for alg, t in times.items():
        learner = t["adapt"] + t["outer"]
        total = t["sample"] + learner
        print(
            f"{alg:<18}{t['sample']:9.2f}{t['adapt']:9.2f}{t['outer']:9.2f}"
            f"{learner / max(t['sample'], 1e-9):16.2f}{total / base:16.2f}"
        )


if __name__ == "__main__":
    main()
