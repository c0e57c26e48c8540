"""``main_train.py``: meta-train one (env, alg) pair under Ray Tune.

The flags become settings overrides, resolved and validated by :mod:`tesp.settings` (the
method's defaults < the shipped config < ``--config`` < ``--set`` < flags) before Ray starts;
a method's own flags come from its registry entry. Bad input ends the program with one
``error:`` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any, NoReturn

from tesp import settings as tesp_settings
from tesp.config_overrides import RUN_DEFAULTS, ConfigError, parse_set
from tesp.registry import (
    ALGS,
    ALIASES,
    ENV_ALIASES,
    ENVS,
    METHODS,
    VARIANT_BASE,
    VARIANT_SWITCHES,
    VARIANTS,
    Flag,
    canonical,
)  # fmt: skip
from tesp.settings import check_writable

EXIT_BAD_INPUT = 2

logger = logging.getLogger("tesp")


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see --help)")


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def method_flags() -> dict[tuple[str, ...], tuple[Flag, list[str]]]:
    """Every method's own flags, by their names, with the methods that take each."""
    out: dict[tuple[str, ...], tuple[Flag, list[str]]] = {}
    for name, method in METHODS.items():
        for flag in method.flags:
            out.setdefault(flag.names, (flag, []))[1].append(name)
    return out


def dest(flag: Flag) -> str:
    return "flag_" + flag.names[-1].lstrip("-").replace("-", "_")


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
    groups: dict[str, Any] = {}
    for flag, algs in method_flags().values():
        title = ", ".join(algs)
        group = groups.setdefault(title, parser.add_argument_group(f"{title} (--alg {' / '.join(algs)})"))
        if flag.type is None:
            group.add_argument(*flag.names, dest=dest(flag), action="store_true", help=flag.help)
        else:
            group.add_argument(
                *flag.names, dest=dest(flag), type=flag.type, default=None, metavar="N", help=flag.help
            )
    group = parser.add_argument_group(f"{VARIANT_BASE} variants (MIME's spellings; --alg {VARIANT_BASE})")
    for switch, text in VARIANT_SWITCHES.items():
        group.add_argument(f"--{switch}", dest=variant_dest(switch), action="store_true", help=text)
    parser.add_argument("--dashboard", action="store_true", help="start the Ray dashboard with the local Ray")
    return parser


def variant_dest(switch: str) -> str:
    return "variant_" + switch.replace("-", "_")


def resolve_variant(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The method and settings that ``--alg`` with the variant switches name."""
    on = frozenset(s for s in VARIANT_SWITCHES if getattr(args, variant_dest(s), False))
    if not on:
        return args.alg, {}
    spelled = " ".join(f"--{s}" for s in sorted(on))
    if canonical(args.alg) != VARIANT_BASE:
        raise ConfigError(f"{spelled} only applies to --alg {VARIANT_BASE}, not --alg {args.alg!r}")
    for variant in VARIANTS:
        if variant.switches == on:
            return variant.alg, dict(variant.settings)
    valid = " | ".join(" ".join(f"--{s}" for s in sorted(v.switches)) for v in VARIANTS)
    raise ConfigError(f"{spelled} is not a method; choose one of: {valid}")


@dataclass
class Plan:
    settings: tesp_settings.Settings
    name: str
    storage_path: str


def build_plan(args: argparse.Namespace) -> Plan:
    """Resolve and check every setting; raises ConfigError. Ray is not needed here."""
    overrides = parse_set(args.set)
    variant_alg, variant_settings = resolve_variant(args)
    overrides = variant_settings | overrides
    alg = canonical(variant_alg)
    for flag, algs in method_flags().values():
        value = getattr(args, dest(flag))
        if value is None or value is False:
            continue
        if alg not in algs:
            raise ConfigError(
                f"{'/'.join(flag.names)} only applies to --alg {', '.join(algs)}, not --alg {args.alg!r}"
            )
        overrides[flag.key] = flag.value if flag.type is None else value
    for flag, key in (
        ("seed", "seed"),
        ("num_env_runners", "num_env_runners"),
        ("stop_iters", "run.stop_iters"),
        ("checkpoint_freq", "run.checkpoint_freq"),
    ):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    settings = tesp_settings.resolve(variant_alg, args.env, overrides, args.config)
    tesp_settings.check(settings)
    name = args.name or f"{settings.alg}-{settings.env}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = os.path.abspath(os.path.expanduser(args.storage_path or "~/ray_results"))
    check_writable(storage, "--storage-path")
    return Plan(settings, name, storage)


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


def check_fits_locally(settings) -> None:
    """A trial that asks for more CPUs than the local Ray has would wait forever: refuse it."""
    from tesp.settings import grid_variants

    have = os.cpu_count() or 1
    for variant in grid_variants(settings.config, settings.groups):
        need = variant.algo_class.default_resource_request(variant).required_resources.get("CPU", 0)
        if need > have:
            parts = [
                f"main process {variant.num_cpus_for_main_process:g}",
                f"EnvRunners {variant.num_env_runners} x {variant.num_cpus_per_env_runner:g}",
            ]
            if variant.num_learners:
                per = variant.num_cpus_per_learner
                parts.append(f"Learners {variant.num_learners} x {1 if per == 'auto' else per:g}")
            raise ConfigError(
                f"a trial needs {need:g} CPUs ({', '.join(parts)}) but the local Ray has {have}; lower "
                "num_env_runners, num_cpus_per_env_runner, num_learners or num_cpus_per_learner, "
                "or join a cluster with --address"
            )


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
    from tesp.progress import JsonLogger, Progress

    register_envs()
    s = plan.settings
    if resume is not None:
        tuner = tune.Tuner.restore(
            resume, trainable=s.method.algo_class, resume_unfinished=True, resume_errored=True
        )
    else:
        run_config = tune.RunConfig(
            name=plan.name,
            storage_path=plan.storage_path,
            stop={"training_iteration": s.run["stop_iters"]},
            checkpoint_config=tune.CheckpointConfig(
                checkpoint_frequency=s.run["checkpoint_freq"],
                checkpoint_at_end=True,
                # Tune syncs its experiment state (which checkpoint to resume from, and the
                # result files) to storage every `num_to_keep` trial checkpoints, else only
                # every >= 10 s. Keeping 1 makes every checkpoint a consistent resume point.
                num_to_keep=s.run["keep_checkpoints"],
            ),
            verbose=0,  # Progress prints one line per iteration instead
            callbacks=[Progress(s.method.summary), JsonLogger()],
        )
        tuner = tune.Tuner(s.method.algo_class, param_space=s.config, run_config=run_config)
    results = tuner.fit()
    return report(results, resume or os.path.join(plan.storage_path, plan.name), s.method.summary)


def report(results, experiment_path: str, summary) -> int:
    failed = 0
    print(f"\nExperiment: {experiment_path}")
    for result in results:
        metrics = result.metrics or {}
        iters = metrics.get("training_iteration", 0)
        if result.error is not None:
            failed += 1
            print(f"  trial FAILED after {iters} iterations: {str(result.error).splitlines()[0]}")
        else:
            print(f"  trial finished {iters} iterations: {summary(metrics).splitlines()[0]}")
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
        if args.address is None:
            check_fits_locally(plan.settings)
        connect_ray(args.address, args.dashboard)
    except ConfigError as e:
        fail(str(e))
    try:
        return run_experiment(plan, args.resume)
    finally:
        import ray

        ray.shutdown()
