"""One console line per meta-iteration, instead of Tune's full status tables."""

from __future__ import annotations

from ray import tune


class MetaProgress(tune.Callback):
    """Prints ``trial iteration: pre -> post return, env steps, seconds`` for every result."""

    def on_trial_start(self, iteration, trials, trial, **info):
        print(f"[{trial.trial_id}] started: {trial.path}", flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        meta = result.get("meta", {})
        stages = [meta[k] for k in sorted(meta) if k.startswith("return_stage_")]
        returns = " -> ".join(f"{r:.2f}" for r in stages)
        print(
            f"[{trial.trial_id}] iter {result['training_iteration']:4d} | return {returns} | "
            f"{meta.get('env_steps', 0) / 1e3:.0f}k steps in {result.get('time_this_iter_s', 0):.1f}s",
            flush=True,
        )

    def on_trial_error(self, iteration, trials, trial, **info):
        print(f"[{trial.trial_id}] FAILED; see {trial.path}/error.txt", flush=True)
