"""Every setting of a run, resolved in one place for ``main_train.py``, ``main_test.py``, the
tests and the benchmarks.

Later sources win: the method's config-class defaults < the shipped ``configs/<env>/<alg>.yaml``
(if any) < each ``--config FILE`` < each ``--set key=value`` < the dedicated flags (which the
command line turns into overrides). Keys are checked against the defaults (see
:mod:`tesp.config_overrides`), then :func:`check` validates every combination a grid search
spans, once, before Ray starts; each problem is one :class:`ConfigError` line.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tesp import limits
from tesp.config_overrides import RUN_DEFAULTS, ConfigError, load_file, split_overrides
from tesp.registry import ALGS, ALIASES, ENV_ALIASES, ENVS, METHODS, Method, canonical, canonical_env

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class Settings:
    alg: str  # canonical method name
    env: str  # canonical env name
    method: Method
    config: Any  # the algorithm config, possibly holding grid_search values
    run: dict[str, Any]  # stop_iters, checkpoint_freq, keep_checkpoints
    groups: dict[str, dict[str, Any]]  # the overrides by group: algo, env_config, model, run


def resolve_config(alg: str, env: str, overrides: dict[str, Any] | None = None, config_files=()):
    """The algorithm config and run settings for (alg, env): defaults, then the shipped
    ``configs/<env>/<alg>.yaml``, then ``config_files``, then ``overrides`` (dotted keys).

    Returns ``(config, run, groups)``. Raises ConfigError for unknown names, keys or ill-typed
    values (not for invalid combinations: :func:`check` or ``config.validate()`` find those).
    """
    s = resolve(alg, env, overrides, config_files)
    return s.config, s.run, s.groups


def resolve(alg: str, env: str, overrides: dict[str, Any] | None = None, config_files=()) -> Settings:
    alg_name = canonical(alg)
    if alg_name not in ALGS:
        raise ConfigError(f"unknown --alg {alg!r}; choose from: {', '.join(sorted(ALGS) + sorted(ALIASES))}")
    env_name = canonical_env(env)
    if env_name not in ENVS:
        raise ConfigError(
            f"unknown --env {env!r}; choose from: {', '.join(sorted(ENVS) + sorted(ENV_ALIASES))}"
        )
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    config = ALGS[alg_name].get_default_config()
    algo_defaults = config.to_dict()
    featured = sorted(set(algo_defaults) - set(AlgorithmConfig().to_dict()))
    # The RLModule's settings (tesp's modules), else the config's own (RLlib's default modules).
    module_class = config.get_default_rl_module_spec().module_class
    model_defaults = getattr(module_class, "DEFAULT_MODEL_CONFIG", None) or config.DEFAULT_MODEL_CONFIG
    merged: dict[str, Any] = {}
    default_file = CONFIG_DIR / env_name / f"{alg_name}.yaml"
    for path in ([default_file] if default_file.is_file() else []) + list(config_files):
        merged.update(load_file(path))
    merged.update(overrides or {})
    none_types = getattr(config, "NONE_DEFAULT_TYPES", {})
    groups = split_overrides(merged, algo_defaults, ENVS[env_name], model_defaults, featured, none_types)
    config.environment(env_name, env_config=groups["env_config"])
    config.update_model_config(**groups["model"])
    config.update_from_dict(groups["algo"])
    return Settings(alg_name, env_name, METHODS[alg_name], config, {**RUN_DEFAULTS, **groups["run"]}, groups)


def check(settings: Settings) -> None:
    """Validate the run settings, the env options and every grid variant of the config."""
    run = settings.run
    if run["stop_iters"] < 1 or run["checkpoint_freq"] < 0:
        raise ConfigError(
            f"stop_iters={run['stop_iters']} must be >= 1 and checkpoint_freq={run['checkpoint_freq']} >= 0"
        )
    if run["keep_checkpoints"] is not None and run["keep_checkpoints"] < 1:
        raise ConfigError(f"run.keep_checkpoints={run['keep_checkpoints']} must be >= 1, or null to keep all")
    for variant in grid_variants(settings.config, settings.groups):
        pool_size = variant.env_config.get("pool_size")
        if isinstance(pool_size, int):  # before the env draws its pools
            limits.check_size(f"env_config.pool_size={pool_size}", 3 * pool_size * limits.TASK_BYTES)
        env = check_env_config(variant.env, variant.env_config)
        check_sampling_size(variant, env)
        train = env.task_pools().get("D")
        tasks = getattr(variant, "meta_batch_size", 0)
        if train and tasks > len(train):
            raise ConfigError(
                f"meta_batch_size={tasks} is invalid: the training pool D of --env {variant.env!r} "
                f"holds {len(train)} tasks (env_config.pool_size); must be <= {len(train)}"
            )
        try:
            variant.validate()
        except ValueError as e:
            raise ConfigError(str(e).strip().splitlines()[0]) from None


def check_sampling_size(config, env) -> None:
    """One meta-iteration's sampled data must fit in memory (gradient methods' sizes; others
    are checked by RLlib's own batch settings)."""
    tasks = getattr(config, "meta_batch_size", None)
    episodes = getattr(config, "episodes_per_task", None)
    horizon = getattr(env, "horizon", None) or getattr(getattr(env, "spec", None), "max_episode_steps", None)
    if not all(isinstance(v, int) and v > 0 for v in (tasks, episodes, horizon)):
        return
    obs = int(np.prod(env.observation_space.shape or (1,)))
    act = int(np.prod(getattr(env.action_space, "shape", None) or (1,)))
    rounds = int(getattr(config, "num_inner_steps", 1)) + 2
    estimate = limits.sample_round_bytes(tasks, episodes, horizon, obs, act, rounds)
    limits.check_size(
        f"meta_batch_size={tasks} x episodes_per_task={episodes} (x {horizon} steps x {rounds} rounds)",
        estimate,
    )


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
                variant.update_model_config(**{key: value})
        yield variant


def check_env_config(env: str, env_config: dict[str, Any]):
    """Build the env once, so a bad env_config value fails here with one line (not in every
    EnvRunner); returns it (closed)."""
    from tesp.envs import make_env

    try:
        built = make_env(env, env_config)
        built.close()
        return built
    except (ValueError, TypeError) as e:
        raise ConfigError(f"env_config for --env {env!r} is invalid: {str(e).splitlines()[0]}") from None
