"""What a run prints and logs through Tune: one console line per iteration (instead of Tune's
status tables) and ``result.json`` without images (they go to TensorBoard only)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from ray import tune
from ray.tune.logger import JsonLoggerCallback


class Progress(tune.Callback):
    """Prints ``[trial] iter N | <the method's summary line> | seconds`` for every result."""

    def __init__(self, summary: Callable[[dict], str]) -> None:
        self.summary = summary

    def on_trial_start(self, iteration, trials, trial, **info):
        print(f"[{trial.trial_id}] started: {trial.path}", flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        first, *details = self.summary(result).splitlines()
        seconds = result.get("time_this_iter_s", 0)
        print(
            f"[{trial.trial_id}] iter {result['training_iteration']:4d} | {first} | {seconds:.1f}s",
            flush=True,
        )
        for line in details:
            print(f"[{trial.trial_id}] {line}", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        print(f"[{trial.trial_id}] FAILED; see {trial.path}/error.txt", flush=True)


def without_images(result: dict) -> dict:
    """``result`` without its image arrays (``ndim >= 3``, e.g. validation trajectory plots) at
    any depth."""
    out = {}
    for key, value in result.items():
        if isinstance(value, dict) and value:
            value = without_images(value)
            if not value:  # held only images
                continue
        elif isinstance(value, np.ndarray) and value.ndim >= 3:
            continue
        out[key] = value
    return out


class JsonLogger(JsonLoggerCallback):
    """Tune's ``result.json`` writer, minus the images: a trajectory plot would otherwise add
    ~0.4 MB of JSON numbers per validation. Passing it replaces Tune's default JSON logger."""

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        super().log_trial_result(iteration, trial, without_images(result))
