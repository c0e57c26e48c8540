"""MAML on ``point`` at the MAML paper's scale: wall-clock and env steps to a return threshold.

Scale (Finn et al. 2017, 2D navigation; the issue's benchmark): 20 tasks per meta-iteration, 20
episodes per task, 1 inner step of size 0.1, a 2x64 tanh policy; otherwise
``configs/point/maml.yaml``. Stops when the post-adaptation return first averages ``--threshold``
(-16) or better over 5 consecutive iterations.

With ``--peer``, the same seeds of tristandeleu/pytorch-maml-rl (MAML-TRPO on its own 2D
navigation, its shipped config, the same threshold) run in the same benchmark, one after each of
ours, in the peer's virtualenv (``benchmarks/peers/setup_pytorch_maml_rl.sh``), and the medians'
ratios are printed.

    python benchmarks/maml_point_threshold.py [--seeds 0,1,2] [--set KEY=VALUE ...] [--max-iters 150]
        [--peer CHECKOUT --peer-python VENV/bin/python]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
from common import start_ray, train_to_threshold

PEER_DRIVER = Path(__file__).parent / "peers" / "pytorch_maml_rl_threshold.py"
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

    def line(it, meta, steps, elapsed):
        return (
            f"seed {seed} iter {it:3d}  pre {meta['return_pre']:7.2f}  post {meta['return_post']:7.2f}  "
            f"steps {steps / 1e6:5.2f}M  {elapsed:6.1f}s  (sample {meta['time_sample_s']:.1f}s, "
            f"adapt {meta['time_adapt_s']:.1f}s, outer {meta['time_outer_s']:.1f}s)"
        )

    return train_to_threshold(config, args.max_iters, args.window, args.threshold, line)


def run_peer(seed: int, args) -> tuple[int, float, int] | None:
    """The peer's run of ``seed`` in its own interpreter: (iterations, seconds, env steps) or None."""
    cmd = [
        args.peer_python, str(PEER_DRIVER), "--peer", args.peer, "--seed", str(seed),
        "--threshold", str(args.threshold), "--window", str(args.window), "--max-iters", str(args.max_iters),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    last = None
    for line in proc.stdout:
        row = json.loads(line)
        if "iter" in row:
            print(
                f"peer seed {seed} iter {row['iter']:3d}  pre {row['pre']:7.2f}  post {row['post']:7.2f}  "
                f"steps {row['env_steps'] / 1e6:5.2f}M  {row['seconds']:6.1f}s",
                flush=True,
            )
        last = row
    if proc.wait() != 0 or last is None or "result" not in last:
        raise RuntimeError(f"the peer's run of seed {seed} failed (exit {proc.returncode})")
    hit = last["result"]
    return None if hit is None else (hit["iters"], hit["seconds"], hit["env_steps"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threshold", type=float, default=-16.0)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--max-iters", type=int, default=150)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, one run each")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--peer", default=None, help="a pytorch-maml-rl checkout: run it side by side")
    parser.add_argument("--peer-python", default="benchmarks/peers/.venv-pytorch-maml-rl/bin/python")
    args = parser.parse_args()
    start_ray()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs: dict[str, dict[int, tuple | None]] = {"tesp": {}, "peer": {}}
    for seed in seeds:  # alternating, so that a slow spell of the machine hits both
        runs["tesp"][seed] = run_seed(seed, args)
        if args.peer:
            runs["peer"][seed] = run_peer(seed, args)

    print(
        f"\nMAML on point, 20 tasks x 20 episodes; threshold: mean post-adaptation return over {args.window} iterations >= {args.threshold}"
    )
    print(f"{'':28} | {'iterations':>10} | {'wall-clock':>10} | {'env steps':>10}")
    medians = {}
    for name, label in (("tesp", "tesp"), ("peer", "pytorch-maml-rl")):
        for seed, hit in runs[name].items():
            if hit is None:
                print(f"{label + ' seed ' + str(seed):28} | not reached in {args.max_iters} iterations")
            else:
                print(
                    f"{label + ' seed ' + str(seed):28} | {hit[0]:>10} | {hit[1] / 60:>8.2f} m | {hit[2] / 1e6:>8.2f} M"
                )
        reached = [hit for hit in runs[name].values() if hit is not None]
        if reached:
            medians[name] = (
                float(np.median([h[1] for h in reached])),
                float(np.median([h[2] for h in reached])),
            )
            print(
                f"{label + ' median':28} |            | {medians[name][0] / 60:>8.2f} m | {medians[name][1] / 1e6:>8.2f} M"
                f"   ({len(reached)}/{len(runs[name])} seeds reached the threshold)"
            )
    if "tesp" in medians and "peer" in medians:
        (t_s, t_n), (p_s, p_n) = medians["tesp"], medians["peer"]
        print(
            f"median wall-clock ratio tesp / pytorch-maml-rl: {t_s / p_s:.2f}; median env-step ratio: {t_n / p_n:.2f}"
        )


if __name__ == "__main__":
    main()
