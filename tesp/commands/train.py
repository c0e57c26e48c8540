"""``main_train.py``: meta-train one (env, alg) pair under Ray Tune.

The flags become settings overrides, resolved and validated by :mod:`tesp.settings` (the
method's defaults < the shipped config < ``--config`` < ``--set`` < flags) before Ray starts;
a method's own flags come from its registry entry. Bad input ends the program with one
``error:`` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
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
from tesp.commands.ray_connection import check_fits_locally, connect_ray, private_token  # noqa: F401
from tesp.config_overrides import RUN_DEFAULTS, ConfigError, parse_set
from tesp.errors import EXIT_BAD_INPUT, OneLineParser, check_writable, fail  # noqa: F401
from tesp.registry import (
    ALGS,
    ALIASES,
    ENV_ALIASES,
    ENVS,
    METHODS,
    VARIANT_BASES,
    VARIANT_SWITCHES,
    VARIANTS,
    Flag,
    canonical,
    canonical_env,
)  # fmt: skip

logger = logging.getLogger("tesp")


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
    parser.add_argument("--env", default=None, help="task family (see the list below)")
    parser.add_argument("--alg", default=None, help="meta-learning method (see the list below)")
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
        help="continue the experiment at PATH from its last complete checkpoints, with its own "
        "settings (--stop-iters may raise its length)",
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
    bases = " / ".join(VARIANT_BASES)
    group = parser.add_argument_group(
        f"{bases} variants (other methods' spellings as switches; --alg {bases})"
    )
    for switch, text in VARIANT_SWITCHES.items():
        group.add_argument(f"--{switch}", dest=variant_dest(switch), action="store_true", help=text)
    parser.add_argument(
        "--wandb",
        nargs="?",
        const="tesp",
        default=None,
        metavar="PROJECT",
        help="also log to Weights & Biases, project PROJECT (default tesp); offline into each trial's "
        "folder when no API key is found (upload later with `wandb sync`)",
    )
    parser.add_argument(
        "--mlflow",
        nargs="?",
        const="",
        default=None,
        metavar="URI",
        help="also log to MLflow at URI (default: the file store STORAGE_PATH/mlruns), one run per trial",
    )
    parser.add_argument("--dashboard", action="store_true", help="start the Ray dashboard with the local Ray")
    parser.add_argument(
        "--verbose", action="store_true", help="show Ray's and Tune's own log lines (hidden by default)"
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print every setting of the run, resolved (YAML that --config reads back), and exit",
    )
    return parser


def _flag_value(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def variant_dest(switch: str) -> str:
    return "variant_" + switch.replace("-", "_")


def resolve_variant(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The method and settings that ``--alg`` with the variant switches name."""
    on = frozenset(s for s in VARIANT_SWITCHES if getattr(args, variant_dest(s), False))
    if not on:
        return args.alg, {}
    spelled = " ".join(f"--{s}" for s in sorted(on))
    alg = canonical(args.alg)
    mine = [v for v in VARIANTS if v.base == alg]
    if not mine:
        raise ConfigError(
            f"{spelled} only applies to --alg {' / '.join(VARIANT_BASES)}, not --alg {args.alg!r}"
        )
    for variant in mine:
        if frozenset(variant.switches) == on:
            return variant.alg, dict(variant.settings)
    valid = " | ".join(" ".join(f"--{s}" for s in sorted(v.switches)) for v in mine)
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


#: The flags a resumed experiment keeps from its start (everything that shapes its settings).
KEPT_ON_RESUME = (
    "env",
    "alg",
    "set",
    "config",
    "seed",
    "num_env_runners",
    "checkpoint_freq",
    "wandb",
    "mlflow",
)


def recorded_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The flags :data:`KEPT_ON_RESUME`, the method flags and the variant switches of ``args``,
    as JSON values (written to the experiment's :data:`EXPERIMENT_FILE`)."""
    keys = [*KEPT_ON_RESUME, *(dest(f) for f, _ in method_flags().values())]
    keys += [variant_dest(s) for s in VARIANT_SWITCHES]
    out = {k: getattr(args, k, None) for k in keys}
    out["config"] = [os.path.abspath(os.path.expanduser(c)) for c in out["config"]]
    return json.loads(json.dumps(out, default=str))


def _given(value) -> bool:
    return value not in (None, [], False)


def resume_args(args: argparse.Namespace) -> tuple[argparse.Namespace, dict[str, Any] | None]:
    """``args`` for ``--resume PATH``: the experiment's recorded flags filled in; a flag given
    that differs from the recorded one, or --name, is refused (one line naming it). Returns the
    args and the recorded experiment (None for one from before tesp recorded it)."""
    path = os.path.abspath(os.path.expanduser(args.resume))
    if not os.path.exists(path):
        raise ConfigError(
            f"--resume {args.resume!r} does not exist (expected an experiment folder like ~/ray_results/NAME)"
        )
    if not os.path.isdir(path):
        raise ConfigError(f"--resume {args.resume!r} is a file, not an experiment folder")
    from ray import tune

    if not tune.Tuner.can_restore(path):
        raise ConfigError(
            f"--resume {args.resume!r}: no Tune experiment there (expected a folder like ~/ray_results/NAME)"
        )
    args.resume = path
    if args.name is not None:
        raise ConfigError(f"--name {args.name!r} does not go with --resume (the experiment keeps its folder)")
    recorded = read_experiment(path)
    if recorded is None:  # an experiment from before tesp recorded its flags
        if args.env is None or args.alg is None:
            raise ConfigError(
                f"--resume {args.resume!r}: the experiment does not record its --env and --alg "
                f"({EXPERIMENT_FILE} is missing; it was started by an older tesp): give them as it was started"
            )
        return args, None
    given_flags = recorded_flags(args)
    for key, value in recorded["flags"].items():
        given = getattr(args, key, None)
        if _given(given):
            same = given_flags.get(key) == value
            if key in ("env", "alg"):  # an alias names the same env or method
                normal = canonical if key == "alg" else canonical_env
                same = normal(str(given)) == normal(str(value))
            if not same:
                flag = "--" + key.removeprefix("flag_").removeprefix("variant_").replace("_", "-")
                raise ConfigError(
                    f"{flag} {given!r} differs from the resumed experiment's {value!r}; a resumed "
                    "experiment keeps its settings (only --stop-iters may raise its length): "
                    "start a new --name to change them"
                )
        setattr(args, key, value)
    target = recorded["stop_iters"]
    if args.stop_iters is not None and args.stop_iters < target:
        raise ConfigError(
            f"--stop-iters {args.stop_iters} is below the experiment's {target}; a resume can only raise it"
        )
    args.stop_iters = target if args.stop_iters is None else args.stop_iters
    return args, recorded


EXPERIMENT_FILE = "tesp_experiment.json"  # in the experiment folder: what --resume reads


def read_experiment(path: str) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path, EXPERIMENT_FILE).read_text())
        return data if isinstance(data, dict) and "flags" in data and "stop_iters" in data else None
    except (OSError, ValueError):
        return None


def write_experiment(path: str, flags: dict[str, Any], stop_iters: int) -> None:
    """Write (tmp, then rename) the experiment's record: its flags and its length."""
    from tesp.checkpoints import write_atomically

    os.makedirs(path, exist_ok=True)
    write_atomically(
        Path(path, EXPERIMENT_FILE), json.dumps({"flags": flags, "stop_iters": int(stop_iters)}, indent=1)
    )


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
    from ray import tune
    from ray.tune import ResumeConfig

    from tesp.commands.progress import (
        CsvLogger,
        JsonLogger,
        Progress,
        StateBackup,
        TensorBoardLogger,
        repair_state,
    )
    from tesp.envs import register_envs

    register_envs()
    s = plan.settings
    target = s.run["stop_iters"]
    path = resume or os.path.join(plan.storage_path, plan.name)
    if resume is not None:
        if recorded is not None and target != recorded["stop_iters"]:
            write_experiment(path, recorded["flags"], target)
        IterationStop.target = target
        note = repair_state(Path(resume))
        if note:
            print(f"warning: {note}", file=sys.stderr)
        # Finished trials continue when the target was raised, or when one stopped short of it
        # (a run that ended on a failure of the driver, e.g. a full disk, can leave its trials
        # marked finished in Tune's state).
        raised = recorded is not None and (target > recorded["stop_iters"] or short_of(resume, target))
        tuner = tune.Tuner.restore(
            resume,
            trainable=s.method.algo_class,
            _resume_config=ResumeConfig(
                finished=ResumeConfig.ResumeType.RESUME if raised else ResumeConfig.ResumeType.SKIP,
                unfinished=ResumeConfig.ResumeType.RESUME,
                errored=ResumeConfig.ResumeType.RESUME,
            ),
        )
    else:
        write_experiment(path, flags, target)
        IterationStop.target = target
        run_config = tune.RunConfig(
            name=plan.name,
            storage_path=plan.storage_path,
            stop=IterationStop(target),
            checkpoint_config=tune.CheckpointConfig(
                checkpoint_frequency=s.run["checkpoint_freq"],
                checkpoint_at_end=True,
                # Tune syncs its experiment state (which checkpoint to resume from, and the
                # result files) to storage every `num_to_keep` trial checkpoints, else only
                # every >= 10 s. Keeping 1 makes every checkpoint a consistent resume point.
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
        tuner = tune.Tuner(s.method.algo_class, param_space=s.config, run_config=run_config)
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
