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
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tesp import settings as tesp_settings
from tesp.commands.ending import (  # noqa: F401 - IterationStop: pickled in experiments' Tune state
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    IterationStop,
    catch_sigterm,
    cause_line,
    report,
    short_of,
)
from tesp.commands.experiment import (  # noqa: F401
    EXPERIMENT_FILE,
    KEPT_ON_RESUME,
    read_experiment,
    recorded_flags,
    resume_args,
    write_experiment,
)
from tesp.commands.ray_connection import check_fits_locally, connect_ray, private_token  # noqa: F401
from tesp.commands.train_flags import _flag_value, dest, make_parser, method_flags, resolve_variant  # noqa: F401
from tesp.config_overrides import ConfigError, parse_set
from tesp.errors import EXIT_BAD_INPUT, OneLineParser, check_writable, fail  # noqa: F401
from tesp.registry import ALGS, ALIASES, canonical, canonical_env

logger = logging.getLogger("tesp")


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
    if args.resume is None:
        check_name(name)
    storage = os.path.abspath(os.path.expanduser(args.storage_path or "~/ray_results"))
    check_writable(storage, "--storage-path")
    if args.resume is None and os.path.exists(os.path.join(storage, name)):
        path = os.path.join(storage, name)
        raise ConfigError(
            f"--name {name!r}: the experiment folder {path} already exists; continue it with "
            f"--resume {path}, or choose another --name"
        )
    return Plan(settings, name, storage)


def check_name(name: str) -> None:
    """An experiment name is one folder name under the storage path."""
    if not name or name in (".", "..") or "/" in name or os.sep in name or "\0" in name:
        raise ConfigError(f"--name {name!r} must be a single folder name (no '/', not '.' or '..')")


def check_trackers(args: argparse.Namespace) -> None:
    """``--wandb`` / ``--mlflow`` need their package; say which before Ray starts."""
    import importlib.util

    for flag, package, install in (("wandb", "wandb", "wandb"), ("mlflow", "mlflow", "mlflow-skinny")):
        if getattr(args, flag, None) is not None and importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"--{flag} needs the {package} package, which is not installed: pip install {install}"
            )


def trackers(flags: dict[str, Any], plan: Plan) -> list:
    """The W&B / MLflow callbacks the flags ask for (their Ray integrations load only then)."""
    if flags.get("wandb") is None and flags.get("mlflow") is None:
        return []
    from tesp.commands.trackers import tracker_callbacks

    return tracker_callbacks(flags, plan.storage_path, plan.name)


def run_experiment(plan: Plan, resume: str | None, recorded: dict | None, flags: dict[str, Any]) -> int:
    from tesp.commands.progress import Progress
    from tesp.envs import register_envs

    register_envs()
    s = plan.settings
    target = s.run["stop_iters"]
    path = resume or os.path.join(plan.storage_path, plan.name)
    if resume is not None:
        tuner = _restored_tuner(plan, resume, recorded, target)
    else:
        write_experiment(path, flags, target)
        tuner = _new_tuner(plan, flags, target)
    IterationStop.target = target
    Progress.stop_at = target
    signals = catch_sigterm()
    try:
        results = tuner.fit()
    except Exception as e:  # noqa: BLE001 - e.g. Tune's driver failing to write to a full disk
        from tesp import checkpoints

        print(f"\nExperiment: {path}")
        print(f"  the run stopped: {cause_line(e, path)}")
        for trial in sorted(p for p in Path(path).iterdir() if (p / "params.json").exists()):
            newest = checkpoints.newest_complete(trial)
            print(f"    results: {trial}" + (f"\n    last checkpoint: {newest}" if newest else ""))
        print(f"Resume with: python main_train.py --resume {path}")
        return 1
    code = report(results, path, s.method.summary, target)
    if code == EXIT_INTERRUPTED:
        code = EXIT_TERMINATED if signals.get("term") else EXIT_INTERRUPTED
    return code


def _new_tuner(plan: Plan, flags: dict[str, Any], target: int):
    from ray import tune

    from tesp.commands.progress import CsvLogger, JsonLogger, Progress, StateBackup, TensorBoardLogger

    s = plan.settings
    run_config = tune.RunConfig(
        name=plan.name,
        storage_path=plan.storage_path,
        stop=IterationStop(target),
        checkpoint_config=tune.CheckpointConfig(
            checkpoint_frequency=s.run["checkpoint_freq"],
            checkpoint_at_end=True,
            # Tune syncs its experiment state (which checkpoint to resume from, and the result
            # files) to storage every `num_to_keep` trial checkpoints, else only every >= 10 s.
            # Keeping 1 makes every checkpoint a consistent resume point.
            num_to_keep=s.run["keep_checkpoints"],
        ),
        verbose=0,  # Progress prints one line per iteration instead
        callbacks=[
            Progress(s.method.summary),
            JsonLogger(),
            CsvLogger(),
            TensorBoardLogger(),
            StateBackup(),
            *trackers(flags, plan),
        ],
    )
    return tune.Tuner(s.method.algo_class, param_space=s.config, run_config=run_config)


def _restored_tuner(plan: Plan, resume: str, recorded: dict | None, target: int):
    """The experiment ``resume`` restored, its state files repaired first; trials short of the
    target continue: Tune's state calls them paused (a run that ended on a failure of the driver,
    e.g. a full disk, can leave them marked finished), and finished ones when the target was
    raised."""
    from ray import tune
    from ray.tune import ResumeConfig

    from tesp.commands.progress import drop_stale_decisions, reopen_short_trials, repair_state

    if recorded is not None and target != recorded["stop_iters"]:
        write_experiment(resume, recorded["flags"], target)
    for note in repair_state(Path(resume)):
        print(f"warning: {note}", file=sys.stderr)
    reopen_short_trials(Path(resume), target)
    drop_stale_decisions(Path(resume))
    raised = recorded is not None and target > recorded["stop_iters"]
    return tune.Tuner.restore(
        resume,
        trainable=plan.settings.method.algo_class,
        _resume_config=ResumeConfig(
            finished=ResumeConfig.ResumeType.RESUME if raised else ResumeConfig.ResumeType.SKIP,
            unfinished=ResumeConfig.ResumeType.RESUME,
            errored=ResumeConfig.ResumeType.RESUME,
        ),
    )


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = make_parser()
    alg = _flag_value(argv, "--alg")
    if ("-h" in argv or "--help" in argv) and alg is not None:
        from tesp.commands.settings_doc import settings_help

        if canonical(alg) not in ALGS:
            fail(f"unknown --alg {alg!r}; choose from: {', '.join(sorted(ALGS) + sorted(ALIASES))}")
        env = _flag_value(argv, "--env")
        parser.epilog = settings_help(alg, canonical_env(env) if env else None) + "\n\n" + parser.epilog
    args = parser.parse_args(argv)
    recorded = None
    try:
        if args.resume is not None:
            args, recorded = resume_args(args)
        elif args.env is None or args.alg is None:
            missing = ", ".join(f for f, v in (("--env", args.env), ("--alg", args.alg)) if v is None)
            raise ConfigError(f"the following arguments are required: {missing} (or --resume PATH)")
        plan = build_plan(args)
        check_trackers(args)
        if args.print_config:
            from tesp.commands.settings_doc import resolved_settings

            print(resolved_settings(plan.settings), end="")
            return 0
        if args.address is None:
            check_fits_locally(plan.settings)
        connect_ray(args.address, args.dashboard)
    except ConfigError as e:
        fail(str(e))
    try:
        return run_experiment(plan, args.resume, recorded, recorded_flags(args))
    finally:
        import ray

        ray.shutdown()
