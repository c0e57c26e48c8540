"""What a method's settings are, for ``main_train.py --alg ALG --help`` and ``--print-config``.

Every setting is declared once, as a :class:`~tesp.meta.setting.Setting` in the ``SETTINGS`` of
the config class that introduces it (:class:`~tesp.meta.task_algorithm.TaskAlgorithmConfig`,
:class:`~tesp.meta.meta_gradient.MetaGradientConfig`, then each method's class); this module
reads them along the method's class hierarchy, and the defaults from a fresh config, so the
help cannot drift from the code. Groups: the method's own settings, the ones its engine
shares with other methods, RLlib's sampling settings tesp uses, the model's, the env's and the
run's.
"""

from __future__ import annotations

from typing import Any

from tesp.config_overrides import RUN_DEFAULTS, env_defaults

#: RLlib AlgorithmConfig settings tesp's runs commonly set (RLlib documents them).
RLLIB_SAMPLING = (
    "gamma",
    "lr",
    "num_env_runners",
    "num_envs_per_env_runner",
    "num_cpus_per_env_runner",
    "num_learners",
    "num_cpus_per_learner",
    "seed",
)


def documented(cls: type) -> dict[str, str]:
    """``{setting: one-line doc}`` of the settings ``cls`` itself declares (``SETTINGS``)."""
    from tesp.meta.setting import own

    return {s.name: s.doc for s in own(cls)}


# An attribute whose --set / YAML name is RLlib's dict key (config.to_dict()), not its own.
SET_NAMES = {"lambda_": "lambda"}  # a Python keyword


def setting_groups(alg: str, env: str | None = None) -> list[tuple[str, list[tuple[str, Any, str]]]]:
    """[(group title, [(key, default, doc)])] for ``--alg alg`` (and ``--env env``'s options)."""
    from tesp.envs import ENVS
    from tesp.registry import ALGS, canonical

    algo_class = ALGS[canonical(alg)]
    config = algo_class.get_default_config()
    # Each setting under the class that declares it last: the method's own classes, the
    # engine's (tesp.meta), or another method's that this one builds on (e.g. PPO's).
    own_module = type(config).__module__.rsplit(".", 1)[0]
    titled: dict[str, dict[str, str]] = {f"{canonical(alg)}'s settings (--set NAME=VALUE)": {}}
    for cls in reversed(type(config).__mro__):
        if not cls.__module__.startswith("tesp."):
            continue  # RLlib's own settings: RLLIB_SAMPLING below
        if cls.__module__.startswith(own_module):
            title = f"{canonical(alg)}'s settings (--set NAME=VALUE)"
        elif cls.__module__.startswith("tesp.meta."):
            title = "shared by the gradient methods' engine"
        else:
            title = f"from {cls.__name__} (--set NAME=VALUE)"
        for key, doc in documented(cls).items():
            for docs in titled.values():
                docs.pop(key, None)
            titled.setdefault(title, {})[key] = doc
    out = [
        (title, [(SET_NAMES.get(k, k), getattr(config, k), d) for k, d in docs.items() if hasattr(config, k)])
        for title, docs in titled.items()
    ]
    out.append(
        (
            "RLlib sampling and resources",
            [(k, getattr(config, k), "") for k in RLLIB_SAMPLING if hasattr(config, k)],
        )
    )
    module = config.get_default_rl_module_spec().module_class
    model = (
        getattr(config, "DEFAULT_MODEL_CONFIG", None) or getattr(module, "DEFAULT_MODEL_CONFIG", None) or {}
    )
    auto = set(getattr(config, "_model_config_auto_includes", {}) or {})
    out.append(
        ("model (--set model.NAME=VALUE)", [(f"model.{k}", v, "") for k, v in model.items() if k not in auto])
    )
    if env is not None and env in ENVS:
        out.append(
            (
                f"env {env} (--set env_config.NAME=VALUE)",
                [(f"env_config.{k}", v, "") for k, v in env_defaults(ENVS[env]).items()],
            )
        )
    out.append(("run (--set run.NAME=VALUE)", [(f"run.{k}", v, "") for k, v in RUN_DEFAULTS.items()]))
    return [(t, rows) for t, rows in out if rows]


def settings_help(alg: str, env: str | None = None) -> str:
    lines = [f"settings of --alg {alg} (defaults before the shipped configs/ENV/{alg}.yaml):"]
    for title, rows in setting_groups(alg, env):
        lines.append(f"\n  {title}:")
        for key, default, doc in rows:
            lines.append(f"    {key} = {default!r}" + (f"  {doc}" if doc else ""))
    return "\n".join(lines)


def resolved_settings(settings) -> str:
    """The fully resolved settings of a run (``--print-config``) as YAML that ``--config`` reads
    back: the documented algorithm settings, the model's, the env's and the run's."""
    import yaml

    config = settings.config
    keys = [k for _, rows in setting_groups(settings.alg) for k, _, _ in rows if "." not in k]
    attr = {v: k for k, v in SET_NAMES.items()}
    out: dict[str, Any] = {
        k: getattr(config, attr.get(k, k)) for k in keys if hasattr(config, attr.get(k, k))
    }
    out |= {k: v for k, v in settings.groups["algo"].items()}
    out["model"] = {k: v for k, v in (settings.config.model_config or {}).items()}
    out["env_config"] = dict(settings.config.env_config or {})
    out["run"] = dict(settings.run)
    header = f"# --env {settings.env} --alg {settings.alg}: every setting of this run, resolved\n"
    return header + yaml.safe_dump(_plain(out), sort_keys=False, default_flow_style=None)


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


REFERENCE = "docs/settings.md"  # written by `python -m tesp.commands.settings_doc`


def reference() -> str:
    """Every method's settings as Markdown tables (:data:`REFERENCE`), generated from the same
    docstrings and defaults as ``--help``; a test fails when the file is stale."""
    from tesp.registry import METHODS

    lines = [
        "# Settings",
        "",
        "Generated by `python -m tesp.commands.settings_doc` from the config classes' docstrings and",
        "defaults (the same source as `main_train.py --alg ALG --help`); do not edit by hand. Defaults",
        "are the classes' own, before an env's shipped `configs/ENV/ALG.yaml`. Env options:",
        "`main_train.py --alg ALG --env ENV --help`.",
    ]
    for alg in sorted(METHODS):
        lines += ["", f"## `--alg {alg}`"]
        for title, rows in setting_groups(alg):
            lines += ["", f"{title}:", "", "| setting | default | meaning |", "|---|---|---|"]
            for key, default, doc in rows:
                shown = repr(default).replace("|", "\\|")
                lines.append(f"| `{key}` | `{shown}` | {doc.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from pathlib import Path

    Path(__file__).resolve().parents[2].joinpath(REFERENCE).write_text(reference())
    print(f"wrote {REFERENCE}")
