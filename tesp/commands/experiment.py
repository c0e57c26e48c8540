"""An experiment's record (``tesp_experiment.json``: the flags it was started with and its
length) and what ``--resume PATH`` makes of it: the recorded flags filled in, a flag that would
change the experiment refused, a larger ``--stop-iters`` accepted."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from tesp.commands.train_flags import dest, method_flags, variant_dest
from tesp.errors import ConfigError
from tesp.registry import VARIANT_SWITCHES, canonical, canonical_env

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
