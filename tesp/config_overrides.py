"""Config files and ``--set key=value`` overrides, checked against the defaults.

Keys are dotted paths:

- ``NAME`` : an algorithm setting (any key of the algorithm config, e.g. ``inner_lr``);
- ``env_config.NAME`` : a keyword argument of the env's constructor;
- ``model.NAME`` : an RLModule setting (the method's RLModule class lists them in ``DEFAULT_MODEL_CONFIG``);
- ``run.NAME`` : a run setting (``stop_iters``, ``checkpoint_freq``, ``keep_checkpoints``).

A value must have the type of the default it replaces (an int is accepted for a float), or
be ``{"grid_search": [...]}`` of such values for Tune to sweep.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tesp.errors import ConfigError  # noqa: F401 - re-exported: the settings' error

RUN_DEFAULTS: dict[str, Any] = {"stop_iters": 100, "checkpoint_freq": 10, "keep_checkpoints": 1}
# Settings where .inf means "no bound" (every other number must be finite).
UNBOUNDED_OK = {"step_size_bound", "inner_grad_clip", "max_grad_norm", "grad_clip"}
# Examples of the types of RLlib's settings whose default is None; a config class adds its own
# as ``NONE_DEFAULT_TYPES``.
TYPE_OF_NONE_DEFAULTS: dict[str, Any] = {"seed": 0}


class YAMLLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``3e-5`` as a float as YAML 1.2 does (YAML 1.1, PyYAML's
    grammar, needs a dot there: ``3.0e-5``), in config files and ``--set`` values alike."""


YAMLLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"), list("-+0123456789.")
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=YAMLLoader)  # noqa: S506 (a SafeLoader)


GROUPS = ("env_config", "model", "run")


def load_file(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML config file into flat dotted keys.

    A top-level ``base: OTHER.yaml`` (relative to this file) is read first, and this file's
    settings override it.
    """
    path = Path(path)
    if path.resolve() in _seen:
        raise ConfigError(f"config file {str(path)!r} includes itself through 'base'")
    data = read_mapping(path, "config file")
    if any(not isinstance(k, str) for k in data) or any(
        isinstance(v, Mapping) and any(not isinstance(k, str) for k in v) for v in data.values()
    ):
        raise ConfigError(f"config file {str(path)!r}: every setting's key must be a name (text)")
    data = dict(data)
    base = data.pop("base", None)
    merged = load_file(path.parent / str(base), (*_seen, path.resolve())) if base is not None else {}
    return merged | flatten(data)


MAX_TEXT_FILE = 1 << 20  # bytes: a settings file is text, never this large


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML (or JSON) file holding a mapping, or one ConfigError line saying what it is instead:
    missing, a folder, not a regular file (a device, a pipe, ``/proc``), too large, binary, not
    YAML, not a mapping."""
    shown = str(path)
    if not path.exists():
        raise ConfigError(f"{what} {shown!r} does not exist")
    if path.is_dir():
        raise ConfigError(f"{what} {shown!r} is a folder, not a file")
    resolved = path.resolve()
    if not path.is_file() or str(resolved).startswith(("/proc/", "/sys/", "/dev/")):
        raise ConfigError(f"{what} {shown!r} is not a regular file")
    try:
        if path.stat().st_size > MAX_TEXT_FILE:
            raise ConfigError(f"{what} {shown!r} is larger than {MAX_TEXT_FILE} bytes; not a settings file")
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {shown!r} is not text (UTF-8); not a settings file") from None
    except OSError as e:
        raise ConfigError(f"{what} {shown!r} cannot be read ({e.strerror or e})") from None
    if "\0" in text:
        raise ConfigError(f"{what} {shown!r} is binary, not a settings file")
    try:
        data = load_yaml(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {shown!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} {shown!r} must hold a mapping of settings")
    return dict(data)


def flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in GROUPS and isinstance(value, Mapping):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["a=1", "env_config.horizon=50"]`` -> ``{"a": 1, "env_config.horizon": 50}`` (values are YAML)."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r} is not of the form key=value")
        try:
            out[key.strip()] = load_yaml(raw)
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def env_defaults(env_cls: type) -> dict[str, Any]:
    """The options of ``env_cls`` and their defaults: its ``__init__``'s keyword defaults, and where
    that passes ``**kwargs`` on, its base classes' (the nearest class's default wins)."""
    out: dict[str, Any] = {}
    for cls in env_cls.__mro__:
        if "__init__" not in vars(cls):
            continue
        params = inspect.signature(cls.__init__).parameters
        for n, p in params.items():
            if n != "self" and p.default is not inspect.Parameter.empty:
                out.setdefault(n, p.default)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            break
    return out


def check_type(key: str, value: Any, default: Any) -> None:
    if isinstance(value, Mapping) and set(value) == {"grid_search"}:
        if not isinstance(value["grid_search"], list) or not value["grid_search"]:
            raise ConfigError(f"{key}: grid_search needs a non-empty list")
        for v in value["grid_search"]:
            check_type(key, v, default)
        return
    if (
        isinstance(value, float)
        and not math.isfinite(value)
        and not (value == math.inf and key in UNBOUNDED_OK)
    ):
        raise ConfigError(f"{key}={value!r} is not a finite number")
    if isinstance(value, list | tuple) and any(isinstance(v, float) and not math.isfinite(v) for v in value):
        raise ConfigError(f"{key}={value!r} holds a number that is not finite")
    if default is None or value is None:
        return
    if default == "auto":  # RLlib's "decide for me" defaults (e.g. num_cpus_per_learner) also take numbers
        ok = value == "auto" or (isinstance(value, int | float) and not isinstance(value, bool))
    elif isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif isinstance(default, list | tuple):
        ok = isinstance(value, list | tuple)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(
            f"{key}={value!r} has the wrong type: expected {type(default).__name__} like the default {default!r}"
        )


def split_overrides(
    overrides: Mapping[str, Any],
    algo_defaults: Mapping[str, Any],
    env_cls: type,
    model_defaults: Mapping[str, Any],
    featured: list[str] | None = None,
    none_types: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Check every key and value; return them grouped as algo / env_config / model / run.
    ``none_types``: for settings whose default is None, an example value of their type."""
    none_types = TYPE_OF_NONE_DEFAULTS | dict(none_types or {})
    valid = {
        "algo": dict(algo_defaults),
        "env_config": env_defaults(env_cls),
        "model": dict(model_defaults),
        "run": dict(RUN_DEFAULTS),
    }
    groups: dict[str, dict[str, Any]] = {g: {} for g in valid}
    for key, value in overrides.items():
        group, _, name = key.partition(".") if key.split(".")[0] in GROUPS else ("algo", "", key)
        choices = valid[group]
        if name not in choices:
            close = difflib.get_close_matches(name, list(choices), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            if group == "algo":
                shown = ", ".join(featured or []) + ", or any RLlib AlgorithmConfig key"
            else:
                shown = ", ".join(f"{group}.{c}" for c in sorted(choices))
            raise ConfigError(f"unknown setting {key!r}{hint}; valid keys: {shown}")
        if group == "algo" and name in ("env_config", "model_config", "env"):
            raise ConfigError(f"set {key!r} through 'env_config.NAME' / 'model.NAME' keys or --env")
        check_type(key, value, none_types.get(name) if choices[name] is None else choices[name])
        groups[group][name] = value
    return groups
