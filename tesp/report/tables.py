"""The report's tables, as Markdown: final results per (env, method), settings per (env, method),
and the versions the report was made with."""

from __future__ import annotations

import contextlib
import csv
import importlib.metadata
import json
import re
import subprocess
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tesp.report.figures import MECHANISM, TRAINING, pool_keys, pools_of, run_steps_key
from tesp.report.runs import Evaluation, Run
from tesp.report.stats import bootstrap_ci, difference_ci

PACKAGES = ("torch", "ray", "gymnasium", "mujoco", "numpy", "matplotlib")
# Settings left out of the settings table: bookkeeping that differs between every run.
IGNORED = {"seed", "logger_config", "callbacks", "env_runner_cls", "_tf_policy_handles_more_than_one_loss"}


MECHANISM_METRICS = (
    *(name for name, _, _ in MECHANISM),
    "step_size_q10",
    "step_size_q50",
)


class Estimate(NamedTuple):
    """A mean over ``n`` seeds and its 95% bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int


def mean_ci(values: np.ndarray) -> Estimate:
    """Mean over seeds and its 95% bootstrap interval (NaN-free values only)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    low, high = bootstrap_ci(values)
    return Estimate(float(values.mean()), float(low), float(high), len(values))


def results_rows(groups: Mapping[tuple[str, str], Sequence[Run]]) -> list[dict]:
    """Per (env, method): final return per pool and stage (mean and CI over seeds), the seeds,
    iterations, env steps, wall-clock and env steps per second (means over seeds)."""
    rows = []
    for (env, method), runs in sorted(groups.items()):
        row = {"env": env, "method": method, "seeds": len(runs)}
        row["iterations"] = float(np.mean([r.rows[-1]["training_iteration"] for r in runs]))
        for pool in pools_of(runs):
            for stage in ("pre", "post"):
                row[f"{pool} {stage}"] = mean_ci([r.last(*pool_keys(pool, stage)) for r in runs])
        steps = np.array([r.last(*run_steps_key(r)) for r in runs])
        if not np.isfinite(steps).any():  # RLlib's lifetime counter, where a method logs no own one
            steps = np.array([r.last("env_runners", "num_env_steps_sampled_lifetime") for r in runs])
        seconds = np.array([r.rows[-1].get("time_total_s", np.nan) for r in runs])
        row["env steps"] = float(np.nanmean(steps))
        row["wall-clock s"] = float(np.nanmean(seconds))
        row["steps/s"] = float(np.nanmean(steps / seconds))
        rows.append(row)
    return rows


def evaluation_rows(evaluations: Sequence[Evaluation]) -> list[dict]:
    """Per (env, method): each trial's last evaluated checkpoint (``main_test.py``), its
    post-adaptation return per pool without noise and at the largest noise level evaluated (and
    the success rate where the env has one), mean [95% bootstrap CI] over the trials."""
    rows = []
    for (env, method), evs in sorted(last_evaluations(evaluations).items()):
        row: dict = {"env": env, "method": method, "seeds": len(evs)}
        row["iteration"] = float(np.mean([e.iteration for e in evs]))
        for pool in sorted({p for e in evs for p in e.pools}, key=lambda p: (len(p), p)):
            sigmas = sorted({s for e in evs for s in e.pools.get(pool, {})}, key=float)
            for sigma in dict.fromkeys([sigmas[0], sigmas[-1]]):
                label = pool if float(sigma) == 0 else f"{pool} sigma {sigma}"
                row |= _pool_cells(evs, pool, sigma, label)
        rows.append(row)
    return rows


def last_evaluations(evaluations: Sequence[Evaluation]) -> dict[tuple[str, str], list[Evaluation]]:
    """(env, method) -> each of its trials' last evaluated checkpoint."""
    last: dict[Path, Evaluation] = {}
    for e in evaluations:
        if e.trial not in last or e.iteration > last[e.trial].iteration:
            last[e.trial] = e
    groups: dict[tuple[str, str], list[Evaluation]] = defaultdict(list)
    for e in last.values():
        groups[(e.env, e.method)].append(e)
    return groups


def difference_rows(evaluations: Sequence[Evaluation], reference: str) -> list[dict]:
    """Per env where ``reference`` was evaluated, and per other method there: the reference's
    post-adaptation return minus the method's on each pool without noise (each trial's last
    evaluated checkpoint), difference of the means over seeds [95% bootstrap CI, each side's
    seeds resampled independently]. Positive: the reference is ahead."""
    groups = last_evaluations(evaluations)
    rows = []
    for (env, method), evs in sorted(groups.items()):
        ref = groups.get((env, reference))
        if method == reference or not ref:
            continue
        row: dict = {"env": env, "method": f"{reference} - {method}", "seeds": f"{len(ref)} vs {len(evs)}"}
        for pool in sorted({p for e in [*ref, *evs] for p in e.pools}, key=lambda p: (len(p), p)):
            sides = [_returns(side, pool) for side in (ref, evs)]
            if all(len(v) for v in sides):
                row[pool] = Estimate(*difference_ci(*sides), min(len(v) for v in sides))
        rows.append(row)
    return rows


def _returns(evs: Sequence[Evaluation], pool: str) -> np.ndarray:
    """The post-adaptation returns of ``evs`` on ``pool`` at its lowest noise level (finite ones)."""
    values = []
    for e in evs:
        by_sigma = e.pools.get(pool, {})
        if by_sigma:
            values.append(by_sigma[min(by_sigma, key=float)].get("return_post", np.nan))
    values = np.asarray(values, np.float64)
    return values[np.isfinite(values)]


def checkpoint_rows(evaluations: Sequence[Evaluation]) -> list[dict]:
    """Per (env, method, iteration) evaluated on more than one iteration: the post-adaptation
    return per pool without noise (and the success rate where the env has one), mean [95%
    bootstrap CI] over the trials evaluated at that iteration: how adaptation improves with
    meta-training."""
    groups: dict[tuple[str, str], dict[int, list[Evaluation]]] = defaultdict(lambda: defaultdict(list))
    for e in evaluations:
        groups[(e.env, e.method)][e.iteration].append(e)
    rows = []
    for (env, method), by_iteration in sorted(groups.items()):
        if len(by_iteration) < 2:
            continue
        for iteration, evs in sorted(by_iteration.items()):
            row: dict = {"env": env, "method": method, "iteration": iteration, "seeds": len(evs)}
            for pool in sorted({p for e in evs for p in e.pools}, key=lambda p: (len(p), p)):
                sigma = min((s for e in evs for s in e.pools.get(pool, {})), key=float)
                row |= _pool_cells(evs, pool, sigma, pool)
            rows.append(row)
    return rows


def _pool_cells(evs: Sequence[Evaluation], pool: str, sigma: str, label: str) -> dict:
    """The post-adaptation return (and success rate, where recorded) of ``evs`` on ``pool`` at
    noise ``sigma``, mean [95% CI], under ``label``."""
    cells = {}
    for key, suffix in (("return_post", ""), ("success_post", " success")):
        values = [e.pools.get(pool, {}).get(sigma, {}).get(key, np.nan) for e in evs]
        if np.isfinite(values).any():
            cells[label + suffix] = mean_ci(values)
    return cells


def trial_rows(runs: Sequence[Run], evaluations: Sequence[Evaluation]) -> list[dict]:
    """One row per trial, every number the report's tables are computed from: the env, method,
    seed, iterations, env steps and wall-clock; the last logged return per pool and stage; the last
    value of each mechanism metric; and the post-adaptation return (and success rate) of its last
    evaluated checkpoint per pool and noise level. Written as ``trials.csv``: kept beside a study's
    figures, it lets every interval be recomputed once Tune's result folders are gone."""
    last = {e.trial: e for es in last_evaluations(evaluations).values() for e in es}
    rows = []
    for run in sorted(runs, key=lambda r: (r.env, r.method, -1 if r.seed is None else r.seed, str(r.path))):
        row: dict = {"env": run.env, "method": run.method, "seed": run.seed, "trial": run.path.name}
        row["iterations"] = run.rows[-1]["training_iteration"]
        steps = run.last(*run_steps_key(run))
        row["env_steps"] = (
            steps if np.isfinite(steps) else run.last("env_runners", "num_env_steps_sampled_lifetime")
        )
        row["time_total_s"] = run.rows[-1].get("time_total_s")
        for pool in pools_of([run]):
            for stage in ("pre", "post"):
                row[f"{pool} {stage}"] = run.last(*pool_keys(pool, stage))
        for metric in MECHANISM_METRICS:
            value = run.last("meta", metric)
            if np.isfinite(value):
                row[f"meta/{metric}"] = value
        evaluation = last.get(run.path)
        if evaluation is not None:
            row["eval_iteration"] = evaluation.iteration
            for pool, by_sigma in sorted(evaluation.pools.items(), key=lambda kv: (len(kv[0]), kv[0])):
                for sigma, summary in sorted(by_sigma.items(), key=lambda kv: float(kv[0])):
                    for key in ("return_post", "success_post"):
                        if key in summary:
                            row[f"eval {pool} sigma {sigma} {key}"] = summary[key]
        rows.append(row)
    return rows


def write_csv(path: Path, rows: Sequence[dict]) -> None:
    """``rows`` as a CSV file, one column per key any row has (empty where a row lacks it)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def results_table(rows: Sequence[dict]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def settings_table(groups: Mapping[tuple[str, str], Sequence[Run]]) -> str:
    """The settings that differ between the (env, method) groups (from each group's first
    trial's saved config), one column per group; settings every group shares are listed once
    below the table."""
    configs = {f"{env} {method}": _flat(runs[0].config) for (env, method), runs in sorted(groups.items())}
    keys = sorted({k for c in configs.values() for k in c} - IGNORED)
    differ = [k for k in keys if len({json.dumps(c.get(k), default=str) for c in configs.values()}) > 1]
    shared = [k for k in keys if k not in differ]
    names = list(configs)
    lines = ["| setting | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in differ:
        lines.append(f"| `{key}` | " + " | ".join(_value(configs[n].get(key)) for n in names) + " |")
    first = next(iter(configs.values()))
    common = ", ".join(f"`{k}`={_value(first.get(k))}" for k in shared if _interesting(k, first.get(k)))
    return "\n".join(lines) + (f"\n\nShared by all: {common}" if common else "")


def provenance(repo: Path) -> str:
    """The commit of ``repo`` and the package versions, as one Markdown line."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
        ).stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        commit += (
            " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
        )
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    versions = []
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{name} {importlib.metadata.version(name)}")
    return f"tesp commit {commit}; " + ", ".join(versions)


def _flat(config: Mapping, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and key in ("model_config", "env_config", "_model_config"):
            out |= _flat(value, f"{key}.")
        else:
            out[prefix + key] = value
    return out


def _interesting(key: str, value) -> bool:
    """A shared setting worth listing: not RLlib's private switches (``_...``), not empty."""
    return (
        not key.startswith("_")
        and isinstance(value, (int, float, str, bool, list))
        and value not in ("", [], None)
    )


def _named(obj) -> str:
    """A function or class as its dotted name (not ``<function f at 0x...>``), anything else as
    ``str`` gives it."""
    name = getattr(obj, "__qualname__", None)
    return f"{obj.__module__}.{name}" if name and hasattr(obj, "__module__") else str(obj)


def _value(value) -> str:
    text = json.dumps(value, default=_named) if not isinstance(value, str) else value
    # Tune saves a config's functions and classes as their repr: show their names.
    text = re.sub(r"<(?:function|class) '?([\w.]+)'?(?: at 0x[0-9a-f]+)?>", r"\1", text)
    return text if len(text) <= 40 else text[:37] + "..."


def _cell(value) -> str:
    if isinstance(value, Estimate):
        if not np.isfinite(value.mean):
            return "n/a"
        if value.n == 1:  # one seed: no interval to show
            return f"{value.mean:.2f} (n = 1)"
        return f"{value.mean:.2f} [{value.low:.2f}, {value.high:.2f}]"
    if isinstance(value, float):
        if abs(value) >= 1000 or value.is_integer():  # e.g. the iterations every seed reached
            return f"{value:,.0f}"
        return f"{value:.2f}"
    return str(value)


__all__ = [
    "TRAINING",
    "checkpoint_rows",
    "evaluation_rows",
    "provenance",
    "results_rows",
    "results_table",
    "settings_table",
    "trial_rows",
    "write_csv",
]
