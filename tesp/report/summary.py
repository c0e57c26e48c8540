"""A study's tables from its ``trials.csv`` files alone (``main_report.py A/trials.csv ...``).

A report writes ``trials.csv`` beside its figures: one row per trial with its final numbers
(:func:`tesp.report.tables.trial_rows`). Kept with a study's summary, it outlives Tune's result
folders; from one or several such files (e.g. a study and a later run of its missing trials)
this module rebuilds the tables a supplement quotes:

- per env, each method's post-adaptation return per pool: mean [95% bootstrap CI over seeds]
  (IQM over seeds), from ``main_test.py``'s evaluation without noise where every trial of the
  method has one, else from the validation at the last iteration (the table says which);
- per env, a reference method's return minus each other method's, the difference of the means
  with each side's seeds resampled independently (:func:`tesp.report.stats.difference_ci`);
- per env, the mechanism metrics' mean over seeds at the last iteration.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tesp.report.runs import ReportError
from tesp.report.stats import difference_ci, iqm
from tesp.report.tables import mean_ci

POOLS = ("D", "D'", "D''")
MECHANISM_COLUMNS = (
    "meta/adaptation_kl",
    "meta/context_kl",
    "meta/z_inner_shift_ratio",
    "meta/step_size_q50",
    "meta/step_size_q90",
    "meta/step_size_grad_below_eps",
)
EVALUATED, VALIDATED = "evaluation", "validation at the last iteration"


def load_trials(paths: Sequence[str | Path]) -> list[dict]:
    """Every row of the ``trials.csv`` files, numbers as floats (empty cells dropped). An (env,
    method, seed) listed twice counts once, the last file's row: a re-run of a trial (after its
    folder was lost, say) replaces it."""
    rows: dict[tuple[str, str, str], dict] = {}
    for path in map(Path, paths):
        try:
            with path.open(newline="") as f:
                for row in csv.DictReader(f):
                    parsed = {k: _number(v) for k, v in row.items() if k and v not in ("", None)}
                    seed = parsed.get("seed", f"row {len(rows)}")  # no seed: every row counts
                    key = (str(parsed.get("env")), str(parsed.get("method")), str(seed))
                    rows[key] = parsed
        except OSError as e:
            raise ReportError(f"{str(path)!r}: {e.strerror or e}") from None
    if not rows:
        raise ReportError(f"no trials in {', '.join(map(str, paths))}")
    return list(rows.values())


def markdown(rows: Sequence[dict], reference: str | None = None) -> str:
    """The results, differences and mechanism tables of ``rows``, per env, as Markdown."""
    groups: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        groups[str(row.get("env"))][str(row.get("method"))].append(row)
    if reference is not None and not any(reference in methods for methods in groups.values()):
        methods = sorted({m for ms in groups.values() for m in ms})
        raise ReportError(f"--reference {reference!r} has no trials here; choose from: {', '.join(methods)}")
    out = []
    for env, methods in sorted(groups.items()):
        out += [f"## {env}", ""]
        out += _results(methods)
        if reference in methods:
            out += _differences(methods, reference)
        out += _mechanism(methods)
    return "\n".join(out)


def returns(trials: Sequence[dict], pool: str) -> tuple[np.ndarray, str]:
    """The post-adaptation returns of ``trials`` on ``pool``, and where they come from: the
    evaluation without noise if every trial has one, else the last validation."""
    evaluated = [t.get(f"eval {pool} sigma 0.0 return_post") for t in trials]
    if all(isinstance(v, float) for v in evaluated):
        return np.array(evaluated), EVALUATED
    validated = [t.get(f"{pool} post") for t in trials]
    return np.array([v for v in validated if isinstance(v, float)]), VALIDATED


def _results(methods: dict[str, list[dict]]) -> list[str]:
    lines = ["| method | seeds | from | " + " | ".join(POOLS) + " |", "|---|---|---|" + "---|" * len(POOLS)]
    for method, trials in sorted(methods.items()):
        cells, sources = [], {}
        for pool in POOLS:
            values, source = returns(trials, pool)
            if len(values):
                sources[pool] = source
            cells.append(_estimate(values))
        if len(set(sources.values())) > 1:
            origin = "; ".join(f"{pool}: {source}" for pool, source in sources.items())
        else:
            origin = next(iter(sources.values()), "n/a")
        lines.append(f"| {method} | {len(trials)} | {origin} | " + " | ".join(cells) + " |")
    return [
        "Post-adaptation return: mean [95% bootstrap CI over seeds] (IQM over seeds).",
        "",
        *lines,
        "",
    ]


def _differences(methods: dict[str, list[dict]], reference: str) -> list[str]:
    lines = ["| | " + " | ".join(POOLS) + " |", "|---|" + "---|" * len(POOLS)]
    for method, trials in sorted(methods.items()):
        if method == reference:
            continue
        cells = []
        for pool in POOLS:
            (ref, ref_source), (other, source) = returns(methods[reference], pool), returns(trials, pool)
            if not len(ref) or not len(other):
                cells.append("n/a")
                continue
            point, low, high = difference_ci(ref, other)
            mixed = "" if ref_source == source else " (mixed sources)"
            cells.append(f"{point:+.1f} [{low:+.1f}, {high:+.1f}]{mixed}")
        lines.append(f"| {reference} - {method} | " + " | ".join(cells) + " |")
    return [
        f"{reference} minus each method (difference of the means over seeds [95% bootstrap CI, each "
        f"method's seeds resampled independently]; positive: {reference} ahead):",
        "",
        *lines,
        "",
    ]


def _mechanism(methods: dict[str, list[dict]]) -> list[str]:
    shown = [c for c in MECHANISM_COLUMNS if any(c in t for ts in methods.values() for t in ts)]
    if not shown:
        return []
    lines = [
        "| method | " + " | ".join(c.split("/", 1)[1] for c in shown) + " |",
        "|---|" + "---|" * len(shown),
    ]
    for method, trials in sorted(methods.items()):
        cells = []
        for column in shown:
            values = [t[column] for t in trials if isinstance(t.get(column), float)]
            cells.append(f"{np.mean(values):.2g}" if values else "")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return ["Mechanism at the last iteration, mean over seeds:", "", *lines, ""]


def _estimate(values: np.ndarray) -> str:
    if not len(values):
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.1f} (n = 1)"
    estimate = mean_ci(values)
    return f"{estimate.mean:.1f} [{estimate.low:.1f}, {estimate.high:.1f}] ({iqm(values):.1f})"


def _number(text: str):
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text
