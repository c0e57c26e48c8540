"""``main_train.py``: meta-train one (env, alg) pair under Ray Tune.

Settings are applied in this order, later ones winning: the algorithm's defaults, the
shipped ``configs/<env>/<alg>.yaml`` (if any), each ``--config FILE``, each ``--set
key=value``, then the dedicated flags (``--seed``, ``--num-env-runners``, ...).
Bad input ends the program with one ``error:`` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from tesp.config_overrides import RUN_DEFAULTS, ConfigError, load_file, parse_set, split_overrides
from tesp.registry import ALGS, ALIASES, ENV_ALIASES, ENVS, canonical, canonical_env

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
EXIT_BAD_INPUT = 2

logger = logging.getLogger("tesp")


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see --help)")


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


# Flags the seed's MLSH command line used, with the config key each sets.
MLSH_FLAGS = [
    (("-W", "--warmup-iters"), "warmup_iters", "master-only iterations per task (W)"),
    (("-U", "--joint-iters"), "joint_iters", "master and sub-policy iterations per task (U)"),
    (("--num-subs",), "num_subs", "number of shared sub-policies"),
    (("--macro-duration",), "macro_duration", "steps between the master's choices"),
]


def make_parser() -> argparse.ArgumentParser:
    algs = ", ".join(sorted(ALGS) + [f"{a} (= {c})" for a, c in ALIASES.items()])
    envs = ", ".join(sorted(ENVS) + [f"{a} (= {c})" for a, c in ENV_ALIASES.items()])
    parser = OneLineParser(
        prog="main_train.py",
        description="Meta-train a meta-RL method on a family of tasks, with Ray Tune.",
        epilog=f"registered envs: {envs}\nregistered algorithms: {algs}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--env", required=True, help="task family (see the list below)")
    parser.add_argument("--alg", required=True, help="meta-learning method (see the list below)")
    parser.add_argument(
        "--address",
        default=None,
        help="join a running Ray cluster: 'auto' or HOST:PORT (default: start a local Ray)",
    )
    parser.add_argument(
        "--stop-iters",
        type=int,
        default=None,
        help=f"meta-iterations per trial (default: the config's run.stop_iters, else {RUN_DEFAULTS['stop_iters']})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="random seed for tasks, sampling and initialisation (default: the config's seed, 0): "
        "the same seed repeats a run exactly",
    )
    parser.add_argument(
        "--num-env-runners",
        type=int,
        default=None,
        help="remote EnvRunners sampling tasks (0: sample in the trial's own process)",
    )
    parser.add_argument(
        "--storage-path", default=None, help="where Tune writes results (default ~/ray_results)"
    )
    parser.add_argument("--name", default=None, help="experiment name (default ALG-ENV-TIMESTAMP)")
    parser.add_argument(
        "--resume",
        default=None,
        metavar="PATH",
        help="continue the interrupted experiment at PATH from its last checkpoints",
    )
    parser.add_argument(
        "--checkpoint-freq",
        type=int,
        default=None,
        help=f"checkpoint every N iterations, and at the end (default: run.checkpoint_freq, else {RUN_DEFAULTS['checkpoint_freq']})",
    )
    parser.add_argument(
        "--config", action="append", default=[], metavar="FILE", help="YAML file of settings (repeatable)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set inner_lr=0.05 --set env_config.horizon=50",
    )
    mlsh = parser.add_argument_group("MLSH (--alg mlsh)")
    for flags, key, text in MLSH_FLAGS:
        mlsh.add_argument(*flags, dest=key, type=int, default=None, metavar="N", help=text)
    parser.add_argument(
        "--tesp-adapt-policy",
        "--tesp_adapt_policy",
        action="store_true",
        help="with --alg tesp: adapt the shared policy too (the same as --alg tesp_adapt_policy)",
    )
    parser.add_argument("--dashboard", action="store_true", help="start the Ray dashboard with the local Ray")
    return parser


@dataclass
class Plan:
    algo_cls: type
    config: Any  # the algorithm config, possibly holding grid_search values
    run: dict[str, Any]
    name: str
    storage_path: str


def resolve_config(alg: str, env: str, overrides: dict[str, Any] | None = None, config_files: list[str] = ()):
    """The algorithm config and run settings for (alg, env): defaults, then the shipped
    ``configs/<env>/<alg>.yaml``, then ``config_files``, then ``overrides`` (dotted keys).

    Raises ConfigError for unknown names, keys or ill-typed values (not for invalid combinations:
    call ``config.validate()`` for those).
    """
    alg_name = canonical(alg)
    if alg_name not in ALGS:
        raise ConfigError(f"unknown --alg {alg!r}; choose from: {', '.join(sorted(ALGS) + sorted(ALIASES))}")
    env = canonical_env(env)
    if env not in ENVS:
        raise ConfigError(
            f"unknown --env {env!r}; choose from: {', '.join(sorted(ENVS) + sorted(ENV_ALIASES))}"
        )
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    config = ALGS[alg_name].get_default_config()
    algo_defaults = config.to_dict()
    featured = sorted(set(algo_defaults) - set(AlgorithmConfig().to_dict()))
    merged: dict[str, Any] = {}
    default_file = CONFIG_DIR / env / f"{alg_name}.yaml"
    for path in ([default_file] if default_file.is_file() else []) + list(config_files):
        merged.update(load_file(path))
    merged.update(overrides or {})
    groups = split_overrides(merged, algo_defaults, ENVS[env], featured)
    config.environment(env, env_config=groups["env_config"])
    config.rl_module(model_config={**config._model_config, **groups["model"]})
    config.update_from_dict(groups["algo"])
    return config, {**RUN_DEFAULTS, **groups["run"]}, groups


def build_plan(args: argparse.Namespace) -> Plan:
    """Resolve and check every setting; raises ConfigError. Ray is not needed here."""
    if args.tesp_adapt_policy:
        if canonical(args.alg) not in ("tesp", "tesp_adapt_policy"):
            raise ConfigError(f"--tesp-adapt-policy only applies to --alg tesp, not --alg {args.alg!r}")
        args.alg = "tesp_adapt_policy"
    overrides = parse_set(args.set)
    for flags, key, _ in MLSH_FLAGS:
        if getattr(args, key) is not None:
            if canonical(args.alg) != "mlsh":
                raise ConfigError(f"{'/'.join(flags)} only applies to --alg mlsh, not --alg {args.alg!r}")
            overrides[key] = getattr(args, key)
    for flag, key in (
        ("seed", "seed"),
        ("num_env_runners", "num_env_runners"),
        ("stop_iters", "run.stop_iters"),
        ("checkpoint_freq", "run.checkpoint_freq"),
    ):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    config, run, groups = resolve_config(args.alg, args.env, overrides, args.config)
    if run["stop_iters"] < 1 or run["checkpoint_freq"] < 0:
        raise ConfigError(
            f"stop_iters={run['stop_iters']} must be >= 1 and checkpoint_freq={run['checkpoint_freq']} >= 0"
        )
    if run["keep_checkpoints"] is not None and run["keep_checkpoints"] < 1:
        raise ConfigError(f"run.keep_checkpoints={run['keep_checkpoints']} must be >= 1, or null to keep all")
    for variant in grid_variants(config, groups):
        check_env_config(variant.env, variant.env_config)
        try:
            variant.validate()
        except ValueError as e:
            raise ConfigError(str(e).strip().splitlines()[0]) from None
    alg_name = canonical(args.alg)
    name = args.name or f"{alg_name}-{canonical_env(args.env)}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = os.path.abspath(os.path.expanduser(args.storage_path or "~/ray_results"))
    check_writable(storage, "--storage-path")
    return Plan(ALGS[alg_name], config, run, name, storage)


def grid_variants(config, groups: dict[str, dict[str, Any]]):
    """One config per combination of grid_search values (for validation)."""
    swept = [
        (g, k, v["grid_search"])
        for g, kv in groups.items()
        for k, v in kv.items()
        if isinstance(v, dict) and "grid_search" in v
    ]
    for combo in itertools.product(*[values for _, _, values in swept]) if swept else [()]:
        variant = config.copy(copy_frozen=False)
        for (group, key, _), value in zip(swept, combo, strict=True):
            if group == "algo":
                variant.update_from_dict({key: value})
            elif group == "env_config":
                variant.environment(env_config={**variant.env_config, key: value})
            elif group == "model":
                variant.rl_module(model_config={**variant._model_config, key: value})
        yield variant


def check_writable(path: str, flag: str) -> None:
    """``path`` exists as a writable folder, or can be created (its nearest existing parent is)."""
    existing = Path(path)
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path!r} cannot be written ({str(existing)!r} is not a writable folder)")


def check_env_config(env: str, env_config: dict[str, Any]) -> None:
    """Build the env once, so a bad env_config value fails here with one line (not in every EnvRunner)."""
    from tesp.envs import make_env

    try:
        make_env(env, env_config).close()
    except (ValueError, TypeError) as e:
        raise ConfigError(f"env_config for --env {env!r} is invalid: {str(e).splitlines()[0]}") from None


def check_address(address: str) -> None:
    """Fail fast with one line when a HOST:PORT cannot be reached (ray.init would retry for minutes)."""
    if address == "auto":
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--address {address!r} is not 'auto' or HOST:PORT")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
            pass
    except OSError as e:
        raise ConfigError(
            f"--address {address!r} is unreachable ({e.strerror or e}); start the cluster first or omit --address for a local Ray"
        ) from None


def connect_ray(address: str | None, dashboard: bool) -> None:
    import ray

    if address is not None:
        check_address(address)
        try:
            ray.init(address=address, log_to_driver=True)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ConfigError(
                f"--address {address!r}: could not join the Ray cluster ({str(e).splitlines()[0]})"
            ) from None
    else:
        ray.init(include_dashboard=dashboard)


def run_experiment(plan: Plan, resume: str | None) -> int:
    from ray import tune

    from tesp.envs import register_envs
    from tesp.progress import MetaProgress

    register_envs()
    if resume is not None:
        tuner = tune.Tuner.restore(
            resume, trainable=plan.algo_cls, resume_unfinished=True, resume_errored=True
        )
    else:
        run_config = tune.RunConfig(
            name=plan.name,
            storage_path=plan.storage_path,
            stop={"training_iteration": plan.run["stop_iters"]},
            checkpoint_config=tune.CheckpointConfig(
                checkpoint_frequency=plan.run["checkpoint_freq"],
                checkpoint_at_end=True,
                # Tune syncs its experiment state (which checkpoint to resume from, and the
                # result files) to storage every `num_to_keep` trial checkpoints, else only
                # every >= 10 s. Keeping 1 makes every checkpoint a consistent resume point.
                num_to_keep=plan.run["keep_checkpoints"],
            ),
            verbose=0,  # MetaProgress prints one line per iteration instead
            callbacks=[MetaProgress()],
        )
        tuner = tune.Tuner(plan.algo_cls, param_space=plan.config, run_config=run_config)
    results = tuner.fit()
    return report(results, resume or os.path.join(plan.storage_path, plan.name))


def report(results, experiment_path: str) -> int:
    failed = 0
    print(f"\nExperiment: {experiment_path}")
    for result in results:
        meta = (result.metrics or {}).get("meta", {})
        iters = (result.metrics or {}).get("training_iteration", 0)
        if result.error is not None:
            failed += 1
            print(f"  trial FAILED after {iters} iterations: {str(result.error).splitlines()[0]}")
        else:
            pre, post = meta.get("return_pre", float("nan")), meta.get("return_post", float("nan"))
            print(
                f"  trial finished {iters} iterations: return pre-adaptation {pre:.2f}, post-adaptation {post:.2f}"
            )
        print(f"    results (progress.csv, result.json, TensorBoard): {result.path}")
        if result.checkpoint is not None:
            print(f"    last checkpoint: {result.checkpoint.path}")
    print(f"Resume with: python main_train.py ... --resume {experiment_path}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args = make_parser().parse_args(argv)
    try:
        plan = build_plan(args)
        if args.resume is not None:
            from ray import tune

            if not tune.Tuner.can_restore(os.path.abspath(os.path.expanduser(args.resume))):
                raise ConfigError(
                    f"--resume {args.resume!r}: no Tune experiment there (expected a folder like ~/ray_results/NAME)"
                )
            args.resume = os.path.abspath(os.path.expanduser(args.resume))
        connect_ray(args.address, args.dashboard)
    except ConfigError as e:
        fail(str(e))
    try:
        return run_experiment(plan, args.resume)
    finally:
        import ray

        ray.shutdown()
