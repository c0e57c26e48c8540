"""Multi-task sampling on RLlib EnvRunners.

Each sampling round gets a list of jobs, one per task: the task and the policy weights to
sample it with (the meta-parameters before adaptation, the task's adapted weights after).
Jobs are dealt dynamically: every healthy EnvRunner holds up to ``max_requests_in_flight_per_env_runner``
calls (the one it samples and the next, so it does not idle while its result travels back; one
once no more jobs wait than there are runners), and a runner that returns a result gets the
next jobs waiting, so a slow runner or node takes fewer jobs instead of stalling the round. A
call carries ``waiting / (2 x runners)`` jobs, at least one (guided self-scheduling): few round
trips while many jobs wait, single jobs at the end of the round. For a job, a runner switches all its vectorised sub-envs to the task (the env's
``set_task``), loads the weights into its RLModule, samples ``num_episodes`` complete episodes,
and turns them into a :class:`~tesp.meta.batch.TaskBatch` (baseline fit and GAE happen there,
in parallel). Jobs whose runner failed are dealt again to the runners that remain healthy,
after RLlib has restarted the failed ones where it can.

Each job carries a seed the driver drew; :meth:`tesp.meta.env_runner.TaskEnvRunner.sample_task`
derives every episode's reset seed and the action noise from it and keeps one complete episode
per sub-env, so a job gives the same batch on whichever runner samples it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import ray
from ray.rllib.env.env_runner_group import EnvRunnerGroup

from tesp.envs.base import Task
from tesp.meta.batch import TaskBatch

logger = logging.getLogger(__name__)

WeightDict = Mapping[str, np.ndarray]


@dataclass
class SampleJob:
    task_id: int
    task: Task
    weights: WeightDict  # inference-only RLModule state for this task
    seed: int | None = None  # set by the sampler from its generator; the episodes' seeds derive from it


@dataclass
class SampleResult:
    task_id: int
    batch: TaskBatch
    worker_index: int  # which EnvRunner sampled it (0 = the local one)
    num_env_steps: int
    node_id: str = ""  # the Ray node of that EnvRunner


def run_jobs(
    env_runner, jobs: Sequence[SampleJob], num_episodes: int, gamma: float, lam: float
) -> list[SampleResult]:
    """Executed on an EnvRunner: sample every job in turn with its own task and weights."""
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    results = []
    for job in jobs:
        batch = env_runner.sample_task(job.task, job.weights, num_episodes, job.seed, gamma, lam)
        results.append(SampleResult(job.task_id, batch, env_runner.worker_index, batch.num_steps, node))
    return results


class MultiTaskSampler:
    """Samples a set of (task, weights) jobs over an ``EnvRunnerGroup``."""

    def __init__(
        self,
        env_runner_group: EnvRunnerGroup,
        num_episodes: int,
        gamma: float,
        lam: float,
        seed: int | None = None,
        max_attempts: int = 3,
        calls_per_runner: int = 2,
    ) -> None:
        self.group = env_runner_group
        self.calls_per_runner = calls_per_runner  # calls (of one or more jobs) a runner holds at once
        # Draws every job's seed; part of the algorithm's checkpoint (see `get_state`).
        self.rng = np.random.default_rng(seed)
        self.num_episodes = num_episodes
        self.gamma = gamma
        self.lam = lam
        self.max_attempts = max_attempts
        self.last_resampled = 0  # jobs re-sampled after a runner failure in the last call

    def sample(self, jobs: Sequence[SampleJob]) -> dict[int, SampleResult]:
        """Run ``jobs``; returns ``{task_id: result}`` with every job's result.

        Jobs without a seed get one from the sampler's generator, in job order.
        """
        seeds = self.rng.integers(0, 2**63, size=len(jobs))
        pending = [
            j if j.seed is not None else replace(j, seed=int(s)) for j, s in zip(jobs, seeds, strict=True)
        ]
        results: dict[int, SampleResult] = {}
        self.last_resampled = 0
        for attempt in range(self.max_attempts):
            for res in self._sample_once(pending):
                results[res.task_id] = res
            pending = [j for j in pending if j.task_id not in results]
            if not pending:
                return results
            logger.warning(
                "%d task(s) lost with a failed EnvRunner (attempt %d); re-sampling them",
                len(pending),
                attempt + 1,
            )
            self.last_resampled += len(pending)
            self.group.probe_unhealthy_env_runners()
            time.sleep(0.5 * (attempt + 1))
        raise RuntimeError(f"could not sample tasks {[j.task_id for j in pending]}: EnvRunners keep failing")

    def get_state(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]

    def _sample_once(self, jobs: Sequence[SampleJob]) -> list[SampleResult]:
        """One pass over ``jobs``: the results of those whose runner did not fail."""
        run = partial(run_jobs, num_episodes=self.num_episodes, gamma=self.gamma, lam=self.lam)
        if not self.group.healthy_worker_ids():
            if self.group.num_remote_workers() > 0:
                return []  # all remote runners are down; caller retries after probing
            return run(self.group.local_env_runner, jobs)
        waiting = list(jobs)
        held: dict[int, list[list[SampleJob]]] = {}  # runner id -> its calls not yet returned
        results: list[SampleResult] = []
        while waiting or any(held.values()):
            healthy = self.group.healthy_worker_ids()
            for runner in [r for r in held if r not in healthy]:
                del held[runner]  # lost with their runner; `sample` deals them again
            # Near the end of the round a runner gets a call only when it has none: a job queued
            # behind a slow runner's would wait there while a fast runner idles.
            limit = self.calls_per_runner if len(waiting) > len(healthy) else 1
            for runner in healthy:
                while waiting and len(held.setdefault(runner, [])) < limit:
                    # Guided self-scheduling: early calls carry several jobs (fewer round trips
                    # on cheap envs), the last ones one job each (a short tail on a slow runner).
                    chunk = waiting[: max(1, len(waiting) // (2 * len(healthy)))]
                    sent = self.group.foreach_env_runner_async(
                        partial(run, jobs=chunk), tag=_TAG, remote_worker_ids=[runner]
                    )
                    if not sent:
                        break
                    held[runner].append(chunk)
                    del waiting[: len(chunk)]
            if not any(held.values()):
                break  # no runner could take a job
            for runner, out in self.group.fetch_ready_async_reqs(tags=_TAG, timeout_seconds=_POLL_S):
                done = {r.task_id for r in out}
                held[runner] = [c for c in held.get(runner, []) if not {j.task_id for j in c} <= done]
                results.extend(out)
        return results


# Tag of the sampler's remote calls, and how long one poll for finished jobs waits.
_TAG = "tesp_sample_task"
_POLL_S = 0.005
