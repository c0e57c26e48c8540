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
from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

from tesp.meta.batch import TaskBatch, make_batch

# Module outputs that TaskBatch holds as fields of its own.
_FIELDS = (Columns.ACTIONS, Columns.ACTION_DIST_INPUTS, Columns.ACTION_LOGP)


class _Episode:
    """The part of RLlib's episode API that tesp's connectors read: the newest observation,
    the number of steps taken (``len``) and a per-episode ``custom_data`` dict."""

    __slots__ = ("obs", "actions", "dist_inputs", "rewards", "extras", "custom_data", "done")

    def __init__(self, first_obs: np.ndarray) -> None:
        self.obs = [first_obs]
        self.actions: list[Any] = []
        self.dist_inputs: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.extras: dict[str, list[Any]] = {}
        self.custom_data: dict[str, Any] = {}
        self.done = False

    def get_observations(self, index: int) -> np.ndarray:
        return self.obs[index]

    def __len__(self) -> int:
        return len(self.rewards)


def episode_seeds(seed: int, num_episodes: int) -> tuple[list[int], int]:
    """Per-episode reset seeds and the action-noise seed of a job, all derived from ``seed``."""
    children = np.random.SeedSequence(seed).spawn(num_episodes + 1)
    ints = [int(c.generate_state(1, np.uint32)[0]) for c in children]
    return ints[:-1], ints[-1]


def _pad(seqs: list[list[Any]], length: int) -> np.ndarray:
    first = np.asarray(seqs[0][0])
    out = np.zeros((len(seqs), length, *first.shape), dtype=np.float32)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = np.asarray(s, dtype=np.float32)
    return out


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
        episodes: list[_Episode] = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(action_seed)
            for start in range(0, num_episodes, len(envs)):
                seeds = reset_seeds[start : start + len(envs)]
                episodes += self._run_round(envs[: len(seeds)], seeds)
        return self._to_batch(episodes, gamma, lam)

    def _run_round(self, envs: list, seeds: list[int]) -> list[_Episode]:
        """One complete episode on each of ``envs``, stepped side by side."""
        episodes = [_Episode(env.reset(seed=s)[0]) for env, s in zip(envs, seeds, strict=True)]
        active = list(range(len(envs)))
        shared: dict[str, Any] = {}
        while active:
            live = [episodes[i] for i in active]
            batch = self._env_to_module(
                rl_module=self.module, batch={}, episodes=live, explore=True, shared_data=shared
            )
            out = self._module_to_env(
                rl_module=self.module,
                batch=self.module.forward_exploration(batch),
                episodes=live,
                explore=True,
                shared_data=shared,
            )
            actions = out[Columns.ACTIONS]
            extras = {k: v for k, v in out.items() if k not in _FIELDS}
            for j, i in enumerate(active):
                ep = episodes[i]
                obs, reward, terminated, truncated, _ = envs[i].step(actions[j])
                ep.actions.append(actions[j])
                ep.dist_inputs.append(out[Columns.ACTION_DIST_INPUTS][j])
                ep.rewards.append(float(reward))
                for key, value in extras.items():
                    ep.extras.setdefault(key, []).append(value[j])
                ep.obs.append(obs)
                ep.done = bool(terminated or truncated)
            active = [i for i in active if not episodes[i].done]
        return episodes

    @staticmethod
    def _to_batch(episodes: list[_Episode], gamma: float, lam: float) -> TaskBatch:
        length = max(len(ep) for ep in episodes)
        mask = np.zeros((len(episodes), length), dtype=np.float32)
        for i, ep in enumerate(episodes):
            mask[i, : len(ep)] = 1.0
        extras = {key: _pad([ep.extras[key] for ep in episodes], length) for key in episodes[0].extras}
        return make_batch(
            obs=_pad([ep.obs[:-1] for ep in episodes], length),
            actions=_pad([ep.actions for ep in episodes], length),
            dist_inputs=_pad([ep.dist_inputs for ep in episodes], length),
            rewards=_pad([ep.rewards for ep in episodes], length),
            mask=mask,
            gamma=gamma,
            lam=lam,
            extras=extras,
        )
