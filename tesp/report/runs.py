"""Reading Tune experiment folders: one :class:`Run` per trial, and ``main_test.py`` outputs.

A trial folder is one that holds Tune's ``result.json`` (one JSON object per iteration) and
``params.json`` (the trial's config). The method is the trial's Algorithm class (Tune names the
folder after it), the env and seed come from the config. Nothing is read that tesp logs by
hand: these are Tune's own files.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class ReportError(ValueError):
    """Bad input to the report: one line for the user."""


@dataclass
class Run:
    path: Path
    method: str
    env: str
    seed: int | None
    config: dict[str, Any]
    rows: list[dict[str, Any]] = field(repr=False)

    def series(self, *keys: str) -> tuple[np.ndarray, np.ndarray]:
        """(training iterations, values) of the nested metric ``keys`` where it was logged."""
        its, values = [], []
        for row in self.rows:
            value = _get(row, keys)
            if isinstance(value, (int, float)) and np.isfinite(value):
                its.append(row["training_iteration"])
                values.append(float(value))
        return np.asarray(its), np.asarray(values)

    def at(self, iterations: np.ndarray, *keys: str) -> np.ndarray:
        """The metric ``keys`` at the given iterations (NaN where it was not logged)."""
        by_iter = {row["training_iteration"]: _get(row, keys) for row in self.rows}
        values = [by_iter.get(int(i)) for i in iterations]
        return np.array([float(v) if isinstance(v, (int, float)) else np.nan for v in values])

    def last(self, *keys: str) -> float:
        _, values = self.series(*keys)
        return float(values[-1]) if len(values) else float("nan")


@dataclass
class Evaluation:
    """One ``main_test.py`` output (``checkpoint_NNNNNN-eval.json``)."""

    path: Path
    method: str
    env: str
    iteration: int
    pools: dict[str, dict[str, dict[str, float]]]  # pool -> sigma -> summary
    trial: Path  # the trial folder the checkpoint belongs to
    trajectories: dict = field(default_factory=dict)  # walls, pool -> before/after episode paths (2D envs)


def load_runs(roots: list[str], names: Mapping[str, str] | None = None) -> list[Run]:
    """Every trial below ``roots``, each named by its method's ``--alg`` name (``names``: the
    Algorithm class name -> that name, from the registry; unnamed classes keep their class
    name); raises :class:`ReportError` when there is none."""
    runs = []
    for root in roots:
        base = Path(root).expanduser()
        if not base.is_dir():
            raise ReportError(f"results folder {root!r} does not exist")
        for result in sorted(base.rglob("result.json")):
            run = _load_trial(result.parent, names or {})
            if run is not None:
                runs.append(run)
    if not runs:
        raise ReportError(
            f"no Tune results (result.json with at least one iteration) below {', '.join(map(repr, roots))}"
        )
    return runs


def load_evaluations(roots: list[str], names: Mapping[str, str] | None = None) -> list[Evaluation]:
    """Every ``main_test.py`` evaluation below ``roots`` (methods named as in :func:`load_runs`)."""
    out = []
    for root in roots:
        for path in sorted(Path(root).expanduser().rglob("checkpoint_*-eval.json")):
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            out.append(
                Evaluation(
                    path=path,
                    method=_evaluated_method(path, data, names or {}),
                    env=data.get("env", "?"),
                    iteration=int(data.get("training_iteration", 0)),
                    pools=data.get("pools", {}),
                    trial=path.parent,
                    trajectories=data.get("trajectories", {}),
                )
            )
    return out


def _evaluated_method(path: Path, data: dict, names: Mapping[str, str]) -> str:
    """The method of an evaluation: as its trial's Run names it (from the trial folder, where a
    study's variant is named), else from the evaluated Algorithm class."""
    if (path.parent / "params.json").is_file():
        return method_name(path.parent.name.split("_", 1)[0], names)
    return method_name(data.get("algorithm", "?"), names)


def method_name(class_name: str, names: Mapping[str, str]) -> str:
    """The ``--alg`` name of an Algorithm class name (the class name if ``names`` lacks it)."""
    return names.get(class_name, class_name)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _load_trial(folder: Path, names: Mapping[str, str]) -> Run | None:
    """A trial's runs from its folder; a malformed ``params.json`` leaves the trial out and a
    malformed ``result.json`` line is skipped, each with a warning naming the file (and line). A
    resumed trial may have logged an iteration twice (before a fix of the logger, or when it was
    killed between two checkpoints): the last row of each iteration counts."""
    try:
        params = json.loads((folder / "params.json").read_text())
        if not isinstance(params, dict):
            raise ValueError("not a mapping")
    except (OSError, ValueError) as e:
        _warn(f"skipped {folder}: its params.json is unreadable ({type(e).__name__})")
        return None
    by_iteration: dict[int, dict] = {}
    try:
        text = (folder / "result.json").read_text(errors="replace")
    except OSError as e:
        _warn(f"skipped {folder}: its result.json is unreadable ({e.strerror or e})")
        return None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
            iteration = int(row["training_iteration"])
        except (ValueError, KeyError, TypeError):
            _warn(f"skipped line {number} of {folder / 'result.json'}: not a result")
            continue
        by_iteration[iteration] = row
    rows = [by_iteration[i] for i in sorted(by_iteration)]
    if not rows:
        return None
    # Tune names a trial's folder <Trainable>_<env>_<id>...; the Trainable is the Algorithm class.
    return Run(
        path=folder,
        method=method_name(folder.name.split("_", 1)[0], names),
        env=str(params.get("env")),
        seed=params.get("seed"),
        config=params,
        rows=rows,
    )


def _get(row: dict, keys: tuple[str, ...]):
    for key in keys:
        if not isinstance(row, dict) or key not in row:
            return None
        row = row[key]
    return row
