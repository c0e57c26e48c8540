"""The EnvRunner that samples one task's episodes for the meta-learning loop.

:class:`TaskEnvRunner` is RLlib's ``SingleAgentEnvRunner`` (same env creation, RLModule, connector
pipelines, weight loading, fault tolerance) with one more entry point, :meth:`sample_task`, that
collects exactly what the methods assume of a sampling round (Lan et al. 2019; Finn et al.
2017): ``num_episodes`` complete episodes of one task, **one complete episode per sub-env**,
every episode kept to its end whatever its length. RLlib's ``sample(num_episodes=n)`` instead
returns the first ``n`` episodes to finish, which over-represents short (usually successful)
episodes, and re-seeds every sub-env with the same seed at every call, which replays the same env
randomness (goal layouts, observation noise) in every round.

Randomness: every sampling job carries a seed that the driver draws from its own checkpointed
generator. From it the runner derives one seed per episode (for that episode's ``reset``) and one
for the action noise (torch, in a forked generator state, so the trial process's own torch
stream is untouched when it samples locally). So consecutive rounds differ, a run repeats
exactly with the same ``--seed``, a resumed run continues the same streams, and a job gives the
same episodes on whichever EnvRunner samples it (after a runner failure too).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

from tesp.meta.batch import TaskBatch, make_batch


class _Episode:
    """The part of RLlib's episode API that tesp's connectors read: the newest observation,
    the number of steps taken (``len``) and a per-episode ``custom_data`` dict. The steps
    themselves are recorded per round, as arrays over the live episodes (:class:`_Round`)."""

    __slots__ = ("last_obs", "length", "custom_data", "done")

    def __init__(self, first_obs: np.ndarray) -> None:
        self.last_obs = first_obs
        self.length = 0
        self.custom_data: dict[str, Any] = {}
        self.done = False

    def get_observations(self, index: int) -> np.ndarray:
        if index != -1:
            raise IndexError("a sampling episode keeps its newest observation only")
        return self.last_obs

    def __len__(self) -> int:
        return self.length


@dataclass
class _Round:
    """One round's episodes, and per step the indices of the live ones with their arrays."""

    episodes: list[_Episode]
    steps: list[tuple[np.ndarray, dict[str, np.ndarray]]] = field(default_factory=list)


def episode_seeds(seed: int, num_episodes: int) -> tuple[list[int], int]:
    """Per-episode reset seeds and the action-noise seed of a job, all derived from ``seed``."""
    children = np.random.SeedSequence(seed).spawn(num_episodes + 1)
    ints = [int(c.generate_state(1, np.uint32)[0]) for c in children]
    return ints[:-1], ints[-1]


class TaskEnvRunner(SingleAgentEnvRunner):
    """A ``SingleAgentEnvRunner`` that also samples whole episodes of one task (see module doc)."""

    def sample_task(
        self,
        task: Mapping[str, Any],
        weights: Mapping[str, np.ndarray],
        num_episodes: int,
        seed: int,
        gamma: float,
        lam: float,
    ) -> TaskBatch:
        """``num_episodes`` complete episodes of ``task`` with the RLModule state ``weights``.

        Episode ``e`` runs on sub-env ``e mod num_envs``, in rounds of at most ``num_envs``
        episodes that step side by side; each is reset with its own seed and kept whole.
        """
        envs = self.env.unwrapped.envs
        for env in envs:
            env.unwrapped.set_task(dict(task))
        self.module.set_state(dict(weights))
        reset_seeds, action_seed = episode_seeds(seed, num_episodes)
        rounds = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(action_seed)
            for start in range(0, num_episodes, len(envs)):
                seeds = reset_seeds[start : start + len(envs)]
                rounds.append(self._run_round(envs[: len(seeds)], seeds))
        return self._to_batch(rounds, gamma, lam)

    def _run_round(self, envs: list, seeds: list[int]) -> _Round:
        """One complete episode on each of ``envs``, stepped side by side."""
        envs = [env.unwrapped for env in envs]  # tesp's own envs: no wrapper does anything here
        step_batch = type(envs[0]).step_batch
        record = _Round([_Episode(env.reset(seed=s)[0]) for env, s in zip(envs, seeds, strict=True)])
        active = list(range(len(envs)))
        shared: dict[str, Any] = {}
        while active:
            live = [record.episodes[i] for i in active]
            batch = self._env_to_module(
                rl_module=self.module, batch={}, episodes=live, explore=True, shared_data=shared
            )
            obs = batch[Columns.OBS].numpy()
            out = self._module_to_env(
                rl_module=self.module,
                batch=self.module.forward_exploration(batch),
                episodes=live,
                explore=True,
                shared_data=shared,
            )
            step = step_batch([envs[i] for i in active], out[Columns.ACTIONS])
            arrays = {k: v for k, v in out.items() if k != Columns.ACTION_LOGP}
            if step.success is not None:  # the env's info["success"], kept as an extra
                arrays["success"] = step.success
            record.steps.append((np.array(active), arrays | {"obs": obs, "rewards": step.rewards}))
            for j, ep in enumerate(live):
                ep.last_obs = step.obs[j]
                ep.length += 1
                ep.done = bool(step.terminated[j] or step.truncated[j])
            active = [i for i in active if not record.episodes[i].done]
        return record

    @staticmethod
    def _to_batch(rounds: list[_Round], gamma: float, lam: float) -> TaskBatch:
        """The rounds' episodes as one padded :class:`TaskBatch` (float32), in round order."""
        lengths = [ep.length for r in rounds for ep in r.episodes]
        num, length = len(lengths), max(lengths)
        mask = (np.arange(length)[None, :] < np.array(lengths)[:, None]).astype(np.float32)
        first = rounds[0].steps[0][1]
        arrays = {k: np.zeros((num, length, *v.shape[1:]), np.float32) for k, v in first.items()}
        offset = 0
        for r in rounds:
            for t, (rows, values) in enumerate(r.steps):
                for key, value in values.items():
                    arrays[key][offset + rows, t] = value
            offset += len(r.episodes)
        return make_batch(
            obs=arrays.pop("obs"),
            actions=arrays.pop(Columns.ACTIONS),
            dist_inputs=arrays.pop(Columns.ACTION_DIST_INPUTS),
            rewards=arrays.pop("rewards"),
            mask=mask,
            gamma=gamma,
            lam=lam,
            extras=arrays,  # what else the module recorded: MAESN's noise, MLSH's sub-policy, ...
        )
