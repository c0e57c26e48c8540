"""``main_test.py``: evaluate a checkpoint's adaptation on the task pools (docs/original_release.md#evaluation).

For every chosen pool (D, D', D'') and observation-noise level sigma, each task of the pool is
adapted from the checkpoint's meta-parameters with the training schedule (TESP: warm-up
round, then K inner steps; no meta-update), sampling every stage stochastically. Results go
next to the checkpoint:

- ``<checkpoint>-eval.csv``: one row per (pool, sigma, task, stage) with the task's goal, its
  mean episode return and length;
- ``<checkpoint>-eval.json``: per (pool, sigma), the mean return and length over all episodes
  of all tasks at each stage (the paper's curves plot ``return_post``).

A checkpoint of a policy (``--alg ppo``, ``--alg primitives``) is tested by running it instead
(:mod:`tesp.checkpoints.policies`): ``--episodes`` episodes, the env's success metrics per episode, and a
video with ``--record``.

An env without pools (``point`` by default) is evaluated on ``--pool-size`` tasks (default 20)
drawn from its training distribution with ``--task-seed`` (default 0), reported as pool ``fresh``.

Bad input ends the program with one ``error:`` line and exit code 2 before Ray starts, as for
``main_train.py``: the checkpoint, its algorithm and env, the pools, the noise levels and where
the results go are checked from the checkpoint's saved config first.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tesp import limits
from tesp.checkpoints import find_checkpoint, saved_config
from tesp.commands.ray_connection import connect_ray
from tesp.config_overrides import parse_set
from tesp.envs.base import POOLS
from tesp.errors import ConfigError, OneLineParser, fail

FRESH = "fresh"  # the pool name for tasks drawn from the distribution of an env without pools
NUM_FRESH = 20
NUM_PATHS = 5  # tasks per pool whose episodes the evaluation keeps for trajectory plots


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
        "--pools",
        nargs="+",
        default=None,
        help=f"pools to evaluate (default: the env's, e.g. {' '.join(POOLS)}; an env without pools: {FRESH})",
    )
    parser.add_argument(
        "--sigmas",
        nargs="+",
        type=float,
        default=[0.0],
        help="std of the Gaussian noise added to observations at test time (default: 0)",
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=NUM_FRESH,
        help=f"evaluate the first N tasks of each pool, or N fresh tasks for an env without pools "
        f"(default {NUM_FRESH}: minutes; 0: every task of each pool, the papers' protocol)",
    )
    parser.add_argument(
        "--task-seed", type=int, default=0, help=f"seed of the {FRESH} tasks' draw (default 0)"
    )
    parser.add_argument(
        "--inner-steps",
        type=int,
        default=None,
        metavar="K",
        help="inner steps per task (default: the checkpoint's num_inner_steps; MIME's protocol: 10; "
        "MLSH: the master's warm-up iterations, default its warmup_iters)",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="where to write CHECKPOINT-eval.csv and .json (default: beside the checkpoint)",
    )
    single = parser.add_argument_group("a single policy's checkpoint (--alg ppo)")
    single.add_argument("--episodes", type=int, default=10, help="episodes to run (default 10)")
    single.add_argument("--seed", type=int, default=0, help="seed of the env's resets (default 0)")
    single.add_argument("--explore", action="store_true", help="sample actions (default: the policy's mean)")
    single.add_argument("--record", action="store_true", help="write a video of the first episode")
    single.add_argument(
        "--env",
        default=None,
        help="run the policy on this env instead of its own (e.g. a walker skill on walker_obstacle_course)",
    )
    single.add_argument(
        "--env-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of --env's (repeatable), e.g. --env-option 'kinds=[curb, ceiling]'",
    )
    parser.add_argument("--address", default=None, help="join a running Ray cluster: 'auto' or HOST:PORT")
    parser.add_argument(
        "--verbose", action="store_true", help="show Ray's and Tune's own log lines (hidden by default)"
    )
    return parser


def check_args(args: argparse.Namespace) -> tuple[Path, list[str] | None]:
    """Check everything before Ray starts; returns the checkpoint and the pools to evaluate
    (None: a single policy's checkpoint, tested by running it)."""
    from tesp.commands.run_policy import check_policy_args
    from tesp.envs import make_env
    from tesp.registry import METHODS, method_of

    if any(not math.isfinite(s) or s < 0 for s in args.sigmas):
        raise ConfigError(f"--sigmas {args.sigmas} must all be finite numbers >= 0")
    if args.pool_size < 0:
        raise ConfigError(f"--pool-size {args.pool_size} must be >= 0")
    limits.check_size(f"--pool-size {args.pool_size}", args.pool_size * limits.TASK_BYTES * 100)
    if args.inner_steps is not None and args.inner_steps < 0:
        raise ConfigError(f"--inner-steps {args.inner_steps} must be >= 0")
    checkpoint = find_checkpoint(args.checkpoint)
    check_out(args, checkpoint)
    algo_cls, config = saved_config(checkpoint)
    method = method_of(algo_cls)
    policies = ", ".join(name for name, m in METHODS.items() if m.evaluation == "policy")
    if method is not None and method.evaluation == "policy":
        check_policy_args(args, algo_cls, config, NUM_FRESH)
        return checkpoint, None
    if method is None:
        able = [name for name, m in METHODS.items() if m.evaluation == "adaptation"]
        raise ConfigError(
            f"checkpoint {str(checkpoint)!r} is of {algo_cls.__name__}, which has no adaptation to evaluate; "
            f"main_test.py evaluates {', '.join(able)} checkpoints and runs policies ({policies})"
        )
    policy_flags = (("--env", args.env), ("--record", args.record), ("--explore", args.explore))
    for flag, value in (*policy_flags, ("--env-option", args.env_option)):
        if value:
            raise ConfigError(
                f"{flag} only applies to checkpoints of policies ({policies}), not of {algo_cls.__name__}"
            )
    env_pools = list(make_env(config["env"], config.get("env_config") or {}).task_pools())
    has_pools = bool(env_pools)
    valid = env_pools or [FRESH]
    pools = args.pools or valid
    bad = [p for p in pools if p not in valid]
    if bad:
        why = "" if has_pools else f" (env {config['env']!r} has no task pools)"
        raise ConfigError(f"unknown pool {bad[0]!r}{why}; choose from: {', '.join(valid)}")
    return checkpoint, pools


def check_out(args: argparse.Namespace, checkpoint: Path) -> None:
    """``--out DIR`` (made if missing) or the checkpoint's folder must be writable; sets
    ``args.out`` to the folder the results go to."""
    if args.out is None:
        if not os.access(checkpoint.parent, os.W_OK):
            raise ConfigError(
                f"cannot write the results next to the checkpoint: {str(checkpoint.parent)!r} is read-only; "
                "give --out DIR"
            )
        args.out = str(checkpoint.parent)
        return
    out = Path(os.path.expanduser(args.out)).resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {args.out!r} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {args.out!r} cannot be made: {e.strerror}") from None
    if not os.access(out, os.W_OK):
        raise ConfigError(f"--out {args.out!r} is read-only")
    args.out = str(out)


def evaluate(
    algo,
    pools: list[str],
    sigmas: list[float],
    pool_size: int,
    task_seed: int = 0,
    progress: bool = True,
    inner_steps: int | None = None,
) -> tuple[list[dict], dict, dict]:
    """Adapt to every task of ``pools`` at each noise level with ``inner_steps`` inner steps
    (default: the checkpoint's config); returns (per-task rows, summary, paths). ``paths``: for
    envs whose observations hold the agent's position, the env's walls and, per pool, the first
    episode before and after adaptation of its first :data:`NUM_PATHS` tasks at the first noise
    level (:func:`tesp.viz.trajectories.episode_paths` records), for the report's plots.

    The pool :data:`FRESH` is ``pool_size`` (default 20) tasks from the env's distribution, drawn
    with ``task_seed``. ``progress``: a progress bar on stderr.
    """
    import numpy as np
    from tqdm import tqdm

    from tesp.meta.rollout import pool_summary, stage_results
    from tesp.viz.trajectories import episode_paths

    available = dict(algo.task_env.task_pools())
    if FRESH in pools:
        available[FRESH] = fresh_tasks(
            algo.config.env, algo.config.env_config, pool_size or NUM_FRESH, task_seed
        )
    jobs = [(p, s, available[p][:pool_size] if pool_size else available[p]) for p in pools for s in sigmas]
    env = algo.task_env
    has_positions = env.positions(np.zeros((1, env.observation_space.shape[0]))) is not None
    rows, summary = [], {}
    paths: dict[str, Any] = {"walls": np.asarray(env.walls()).tolist(), "pools": {}} if has_positions else {}
    with tqdm(total=sum(len(t) for *_, t in jobs), unit="task", desc="adapting", disable=not progress) as bar:
        for pool, sigma, tasks in jobs:
            bar.set_postfix(pool=pool, sigma=sigma)
            noisy = [dict(t, obs_noise_std=sigma) for t in tasks]
            rollouts = algo.evaluate_adaptation(noisy, progress=bar.update, num_inner_steps=inner_steps)
            stats = pool_summary(rollouts)
            summary.setdefault(pool, {})[str(sigma)] = stats | {"num_tasks": len(tasks)}
            rows += task_rows(pool, sigma, tasks, rollouts)
            if has_positions and sigma == sigmas[0]:
                paths["pools"][pool] = {
                    stage: episode_paths(
                        tasks[:NUM_PATHS], [r.batch for r in stage_results(rollouts, k)[:NUM_PATHS]], env, 1
                    )
                    for stage, k in (("before", 0), ("after", -1))
                }
    return rows, summary, paths


def fresh_tasks(env: str, env_config: dict, n: int, seed: int) -> list[dict]:
    """``n`` tasks of ``env``'s training distribution, drawn with ``seed`` (pool :data:`FRESH`)."""
    import numpy as np

    from tesp.envs import make_env

    drawer = make_env(env, env_config)
    drawer.np_random = np.random.default_rng(seed)
    return drawer.draw_tasks(n)


def task_rows(pool: str, sigma: float, tasks: list[dict], rollouts) -> list[dict[str, Any]]:
    """One row per (task, stage); ``rollouts`` cover ``tasks`` in order, chunk by chunk."""
    out, offset = [], 0
    for ro in rollouts:
        for k, stage in enumerate(ro.stages):
            for t, result in enumerate(stage):
                batch = result.batch
                out.append(
                    {"pool": pool, "sigma": sigma, "task": offset + t}
                    | task_columns(tasks[offset + t])
                    | {
                        "stage": k,
                        "return": float(batch.episode_returns.mean()),
                        "length": float(batch.episode_lengths.mean()),
                        "episodes": len(batch.episode_returns),
                    }
                )
        offset += len(ro.stages[0])
    return out


def task_columns(task: dict) -> dict[str, float | str]:
    """A task's defining values as CSV columns: ``goal_x``, ``goal_y`` for a goal, the others
    (e.g. the pendulum's ``mass``, ``length``) by name; text values (Meta-World's task class,
    ``reach-v3``) as they are, and values that are neither numbers nor text (a Meta-World task's
    pickled state) left out."""
    import numpy as np

    out: dict[str, float | str] = {}
    for key, value in task.items():
        if key in ("index", "obs_noise_std"):
            continue
        if isinstance(value, str):
            out[key] = value
            continue
        try:
            flat = np.atleast_1d(np.asarray(value, dtype=np.float64)).ravel()
        except (TypeError, ValueError):
            continue
        if flat.size > 64:  # not a task's defining numbers
            continue
        if key == "goal" and len(flat) >= 2:
            out |= {"goal_x": float(flat[0]), "goal_y": float(flat[1])}
        elif len(flat) == 1:
            out[key] = float(flat[0])
        else:
            out |= {f"{key}_{i}": float(v) for i, v in enumerate(flat)}
    return out


def metadata(algo, checkpoint: Path, pools: list[str], task_seed: int) -> dict[str, Any]:
    """What an evaluation's JSON says about where its numbers come from."""
    return {
        "checkpoint": str(checkpoint),
        "algorithm": type(algo).__name__,
        "env": algo.config.env,
        "training_iteration": algo.iteration,
        "num_inner_steps": algo.num_adaptation_steps,
        "task_seed": task_seed if FRESH in pools else None,
    }


def write(
    checkpoint: Path,
    rows: list[dict],
    summary: dict,
    meta: dict,
    paths: dict | None = None,
    out: str | os.PathLike | None = None,
) -> tuple[Path, Path]:
    """Write ``CHECKPOINT-eval.csv`` (a row per task and stage) and ``.json`` (summary per pool)
    into ``out`` (default: the checkpoint's folder; elsewhere prefixed with the trial's folder
    name, so that several trials' evaluations can share one folder)."""
    folder = Path(out or checkpoint.parent)
    name = checkpoint.name if folder == checkpoint.parent else f"{checkpoint.parent.name}_{checkpoint.name}"
    stem = folder / f"{name}-eval"
    csv_path, json_path = stem.with_suffix(".csv"), stem.with_suffix(".json")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    data = meta | {"pools": summary} | ({"trajectories": paths} if paths else {})
    json_path.write_text(json.dumps(data, indent=2))
    return csv_path, json_path


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args = make_parser().parse_args(argv)
    try:
        checkpoint, pools = check_args(args)
        if pools is None:
            return run_single_policy(checkpoint, args)
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
            rows, summary, paths = evaluate(
                algo, pools, args.sigmas, args.pool_size, args.task_seed, inner_steps=args.inner_steps
            )
            meta = metadata(algo, checkpoint, pools, args.task_seed)
            if args.inner_steps is not None:
                meta["num_inner_steps"] = args.inner_steps
        finally:
            algo.stop()
        csv_path, json_path = write(checkpoint, rows, summary, meta, paths, args.out)
    except ConfigError as e:
        fail(str(e))
    finally:
        ray.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)
    for pool, by_sigma in summary.items():
        for sigma, values in by_sigma.items():
            line = f"{pool:<3} sigma {sigma:<5}: post-adaptation return {values['return_post']:.2f}"
            if "success_post" in values:  # sparse tasks: the share of tasks solved is what counts
                line += f", success rate {values['success_post']:.2f} (before adaptation {values.get('success_stage_0', float('nan')):.2f})"
            print(line)
    print(f"wrote {csv_path}\nwrote {json_path}")
    return 0


def run_single_policy(checkpoint: Path, args: argparse.Namespace) -> int:
    from tesp.commands.run_policy import evaluate_policy

    os.environ.setdefault("MUJOCO_GL", "egl")
    algo_cls, config = saved_config(checkpoint)
    out = evaluate_policy(
        algo_cls, checkpoint, config, args.episodes, args.seed, args.explore, args.record,
        env=args.env, env_options=parse_set(args.env_option),
    )  # fmt: skip
    means = ", ".join(f"{k} {v:.2f}" for k, v in out["mean"].items())
    print(f"{args.episodes} episodes of {out['env']}: mean {means}")
    for path in out["written"]:
        print(f"wrote {path}")
    return 0
