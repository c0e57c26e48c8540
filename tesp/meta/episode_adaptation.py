"""What the methods whose adaptation is a run of episodes (RL²'s trial, PEARL's context
collection) share for ``main_test.py``, validation and the report: the evaluation one task at a
time on one EnvRunner, and a sampled stage as the evaluation's summaries read it."""

from __future__ import annotations


class EvaluatedStage:
    """What the evaluation's summaries read of a sampled stage: its batch."""

    def __init__(self, batch) -> None:
        self.batch = batch


class EpisodeAdaptation:
    """Algorithm mixin for a method with ``adapt_on_tasks(tasks, num_inner_steps)``."""

    def evaluate_adaptation(self, tasks: list, chunk=None, progress=None, num_inner_steps: int | None = None):
        """``adapt_on_tasks`` one task at a time (``progress(1)`` after each)."""
        out = []
        for task in tasks:
            out.append(self.adapt_on_tasks([task], num_inner_steps))
            if progress is not None:
                progress(1)
        return out

    def on_sampler(self, fn):
        """``fn(runner)`` on the first remote EnvRunner, or the local one without remote ones."""
        group = self.env_runner_group
        if group.num_remote_env_runners() > 0:
            return group.foreach_env_runner(fn, remote_worker_ids=[1], local_env_runner=False)[0]
        return fn(group.local_env_runner)
