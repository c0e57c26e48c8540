"""One console line per iteration, instead of Tune's full status tables."""

from __future__ import annotations

from collections.abc import Callable

from ray import tune


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
