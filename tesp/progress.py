"""One console line per meta-iteration, instead of Tune's full status tables."""

from __future__ import annotations

from ray import tune


class MetaProgress(tune.Callback):
    """Prints ``trial iteration: pre -> post return, env steps, seconds`` for every result."""

    def on_trial_start(self, iteration, trials, trial, **info):
        print(f"[{trial.trial_id}] started: {trial.path}", flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "mlsh" in result:
            m = result["mlsh"]
            print(
                f"[{trial.trial_id}] iter {result['training_iteration']:5d} | return {m['return']:.2f} | "
                f"after warm-up {m['return_post_warmup']:.2f}, after joint {m['return_post_joint']:.2f} "
                f"(last 10 tasks; {int(m['tasks_done'])} done) | {m['env_steps_per_s']:.0f} steps/s",
                flush=True,
            )
            return
        meta = result.get("meta", {})
        print(
            f"[{trial.trial_id}] iter {result['training_iteration']:4d} | return {stage_returns(meta)} | "
            f"{meta.get('env_steps', 0) / 1e3:.0f}k steps in {result.get('time_this_iter_s', 0):.1f}s",
            flush=True,
        )
        for pool, values in result.get("validation", {}).items():
            print(f"[{trial.trial_id}]   validation {pool:<3} | return {stage_returns(values)}", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        print(f"[{trial.trial_id}] FAILED; see {trial.path}/error.txt", flush=True)


def stage_returns(metrics: dict) -> str:
    """``"r0 -> r1 -> ..."`` from ``return_stage_<k>`` keys, in stage order."""
    stages = sorted(
        (int(k.rsplit("_", 1)[1]), v) for k, v in metrics.items() if k.startswith("return_stage_")
    )
    return " -> ".join(f"{v:.2f}" for _, v in stages)
