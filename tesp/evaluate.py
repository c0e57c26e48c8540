"""``main_test.py``: evaluate a checkpoint's adaptation on the task pools (spec §2.3).

For every chosen pool (D, D', D'') and observation-noise level sigma, each task of the pool is
adapted from the checkpoint's meta-parameters with the training schedule (TESP: warm-up
round, then K inner steps; no meta-update), sampling every stage stochastically. Results go
next to the checkpoint:

- ``<checkpoint>-eval.csv``: one row per (pool, sigma, task, stage) with the task's goal, its
  mean episode return and length;
- ``<checkpoint>-eval.json``: per (pool, sigma), the mean return and length over all episodes
  of all tasks at each stage (the paper's curves plot ``return_post``).

Bad input ends the program with one ``error:`` line and exit code 2, as for ``main_train.py``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tesp.cli import ConfigError, OneLineParser, connect_ray, fail
from tesp.envs.base import POOLS


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="main_test.py",
        description="Evaluate a checkpoint's adaptation on the task pools D, D', D''.",
    )
    parser.add_argument(
        "checkpoint",
        help="a checkpoint folder (checkpoint_NNNNNN), or a trial or experiment folder (its newest checkpoint)",
    )
    parser.add_argument(
        "--pools", nargs="+", default=list(POOLS), help=f"pools to evaluate (default: {' '.join(POOLS)})"
    )
    parser.add_argument(
        "--sigmas",
        nargs="+",
        type=float,
        default=[0.0],
        help="std of the Gaussian noise added to observations at test time (default: 0)",
    )
    parser.add_argument(
        "--pool-size", type=int, default=0, help="evaluate the first N tasks of each pool (default 0: all)"
    )
    parser.add_argument("--address", default=None, help="join a running Ray cluster: 'auto' or HOST:PORT")
    return parser


def find_checkpoint(path: str) -> Path:
    """The checkpoint at ``path``, or the newest one below it; raises ConfigError."""
    root = Path(os.path.expanduser(path)).resolve()
    if not root.exists():
        raise ConfigError(f"checkpoint {path!r} does not exist")
    if (root / "algorithm_state.pkl").is_file():
        return root
    found = sorted(root.glob("**/checkpoint_*/algorithm_state.pkl"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ConfigError(f"checkpoint {path!r} holds no checkpoint (expected a checkpoint_NNNNNN folder)")
    return found[-1].parent


def check_args(args: argparse.Namespace) -> Path:
    bad = [p for p in args.pools if p not in POOLS]
    if bad:
        raise ConfigError(f"unknown pool {bad[0]!r}; choose from: {', '.join(POOLS)}")
    if any(s < 0 for s in args.sigmas):
        raise ConfigError(f"--sigmas {args.sigmas} must all be >= 0")
    if args.pool_size < 0:
        raise ConfigError(f"--pool-size {args.pool_size} must be >= 0")
    return find_checkpoint(args.checkpoint)


def evaluate(algo, pools: list[str], sigmas: list[float], pool_size: int) -> tuple[list[dict], dict]:
    """Adapt to every task of ``pools`` at each noise level; returns (per-task rows, summary)."""
    from tqdm import tqdm

    from tesp.algorithms.maml.maml import pool_summary

    available = algo.task_env.task_pools()
    if not available:
        raise ConfigError(
            f"env {algo.config.env!r} has no task pools (set env_config.pool_size > 0 when training)"
        )
    jobs = [(p, s, available[p][:pool_size] if pool_size else available[p]) for p in pools for s in sigmas]
    rows, summary = [], {}
    with tqdm(total=sum(len(t) for *_, t in jobs), unit="task", desc="adapting") as bar:
        for pool, sigma, tasks in jobs:
            bar.set_postfix(pool=pool, sigma=sigma)
            noisy = [dict(t, obs_noise_std=sigma) for t in tasks]
            rollouts = algo.evaluate(noisy, progress=bar.update)
            summary.setdefault(pool, {})[str(sigma)] = pool_summary(rollouts) | {"num_tasks": len(tasks)}
            rows += task_rows(pool, sigma, tasks, rollouts)
    return rows, summary


def task_rows(pool: str, sigma: float, tasks: list[dict], rollouts) -> list[dict[str, Any]]:
    """One row per (task, stage); ``rollouts`` cover ``tasks`` in order, chunk by chunk."""
    out, offset = [], 0
    for ro in rollouts:
        for k, stage in enumerate(ro.stages):
            for t, result in enumerate(stage):
                batch, goal = result.batch, tasks[offset + t]["goal"]
                out.append(
                    {
                        "pool": pool,
                        "sigma": sigma,
                        "task": offset + t,
                        "goal_x": float(goal[0]),
                        "goal_y": float(goal[1]),
                        "stage": k,
                        "return": float(batch.episode_returns.mean()),
                        "length": float(batch.episode_lengths.mean()),
                        "episodes": len(batch.episode_returns),
                    }
                )
        offset += len(ro.stages[0])
    return out


def write(checkpoint: Path, rows: list[dict], summary: dict, meta: dict) -> tuple[Path, Path]:
    stem = checkpoint.parent / f"{checkpoint.name}-eval"
    csv_path, json_path = stem.with_suffix(".csv"), stem.with_suffix(".json")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps(meta | {"pools": summary}, indent=2))
    return csv_path, json_path


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args = make_parser().parse_args(argv)
    try:
        checkpoint = check_args(args)
        connect_ray(args.address, dashboard=False)
    except ConfigError as e:
        fail(str(e))
    import ray
    import ray.tune.trainable.trainable as trainable
    from ray.rllib.algorithms.algorithm import Algorithm

    from tesp.envs import register_envs

    # An Algorithm built outside Tune logs to ~/ray_results/<timestamp>; evaluation needs no log.
    scratch = tempfile.mkdtemp(prefix="tesp-eval-")
    trainable.DEFAULT_STORAGE_PATH = scratch
    try:
        register_envs()
        algo = Algorithm.from_checkpoint(str(checkpoint))
        try:
            rows, summary = evaluate(algo, args.pools, args.sigmas, args.pool_size)
            meta = {
                "checkpoint": str(checkpoint),
                "algorithm": type(algo).__name__,
                "env": algo.config.env,
                "training_iteration": algo.iteration,
                "num_inner_steps": algo.config.num_inner_steps,
            }
        finally:
            algo.stop()
        csv_path, json_path = write(checkpoint, rows, summary, meta)
    except ConfigError as e:
        fail(str(e))
    finally:
        ray.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)
    for pool, by_sigma in summary.items():
        for sigma, values in by_sigma.items():
            print(f"{pool:<3} sigma {sigma:<5}: post-adaptation return {values['return_post']:.2f}")
    print(f"wrote {csv_path}\nwrote {json_path}")
    return 0
