"""``main_train.py``'s command line: the common flags, every method's own (from its
description), the variant switches that name another method, and the resolution of ``--alg``
with those switches."""

from __future__ import annotations

import argparse
from typing import Any

from tesp.config_overrides import RUN_DEFAULTS
from tesp.errors import ConfigError, OneLineParser
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
)  # fmt: skip


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
