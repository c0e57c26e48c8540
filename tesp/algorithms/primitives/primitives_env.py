"""The meta-policy's view of an env: one decision every ``switch_period`` steps, primitives act between.

:class:`PrimitivesEnv` wraps a single-agent env (the walker's obstacle course) as an RLlib
``MultiAgentEnv`` with turn-taking agents:

- ``"meta"`` observes the env and picks primitive ``k`` (``Discrete(K)``). Its choice does not
  step the env; the chosen primitive then acts for exactly ``switch_period`` env steps (fewer
  when the episode ends). The meta-agent's reward for a decision is the sum of the env's
  rewards over those steps, paid with its next observation.
- primitive ``p`` acts under one of two agent ids: ``p`` while its steps are trained, and
  ``p + FROZEN`` while they are not. With ``finetune="transitions"`` a step is trained when it is
  within ``transition_window`` steps of a *switch* (the meta-agent picking a primitive other than
  the one acting before; the first pick of an episode is not a switch): the states where one
  skill hands over to another, which the primitive never saw in its own training (the seed's
  assumption: states around a switch are similar to each other, so a primitive can be fine-tuned
  on them). ``"all"`` trains every step, ``"none"`` none. Both ids map to modules with the same
  weights (:class:`~tesp.algorithms.primitives.primitives_learner.PrimitivesLearner` copies the
  trained weights into the acting copy after every update), so which id acts never changes the
  behaviour, only which steps the loss sees.
- with ``switch_on_terrain``, the meta-agent also decides as soon as the env's
  ``terrain_state()`` changes (the walker: an obstacle comes into the height map's view, or one
  is passed), the period counting again from there: a skill then runs until the terrain calls
  for another, as the anchor's primitives run until their own sub-goal is done
  (youngwoon/transition's ``primitive_use_term``). With a fixed period alone, passing a ceiling
  needs the crawl picked at every decision under it (benchmarks/README.md).
- each primitive sees observations normalised with the running statistics it was trained with
  (its checkpoint's ``MeanStdFilter``), the inputs that never varied in its training held at
  their training value (a skill trained on flat ground does not see curbs:
  :func:`tesp.checkpoints.policies.observation_normalizer`); the meta-agent's observations leave the env
  as they are and are normalised by its own running filter
  (:class:`~tesp.algorithms.primitives.primitives.MetaObservationFilter`, ``meta_obs_filter =
  "running"``), or here with the first primitive's statistics, nothing held
  (``"first_primitive"``, the earlier default: with skills whose filters merged wrongly,
  ``skills/README.md``, a ceiling coming into view moved 2 of the walker's 81 inputs by 0.58).

Per episode, the meta-agent's last ``info`` holds the env's success metrics
(``obstacles_passed``, ``success``), the env's return and steps (``env_return``,
``env_steps``; RLlib's episode return adds every agent's rewards, so it counts the env's twice)
and how often each primitive was picked (``choice/<name>``, fractions of the decisions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

META = "meta"
FROZEN = "__frozen"  # suffix of the agent (and module) id a primitive acts under when not trained
FINETUNE = ("none", "transitions", "all")
META_OBS_FILTERS = ("running", "first_primitive")
ENV_METRICS = ("obstacles_passed", "success")


def from_checkpoint_filter(
    checkpoint: str, env: gym.Env, hold_unseen: bool = True
) -> Callable[[np.ndarray], np.ndarray]:
    """The observation normalisation a primitive was trained with (identity without a filter);
    ``hold_unseen``: the inputs that never varied in its training held at their training value
    (:func:`tesp.checkpoints.policies.observation_normalizer`)."""
    from tesp.checkpoints.policies import SavedPolicy, observation_normalizer, policy_checkpoint

    obs_filter = SavedPolicy.restore_filter(policy_checkpoint(checkpoint, what="primitives"), env)
    return observation_normalizer(obs_filter, hold_unseen)


def agent_ids(primitives: Sequence[str]) -> list[str]:
    """The env's agents: the meta-agent, then each primitive trained and frozen (module docstring)."""
    return [META, *primitives, *(p + FROZEN for p in primitives)]


class TerrainTracker:
    """Tells whether ``env.unwrapped.terrain_state()`` changed since the last call (the first
    call records it)."""

    def __init__(self, env: gym.Env) -> None:
        if not hasattr(env.unwrapped, "terrain_state"):
            raise ValueError(
                f"switch_on_terrain needs an env with terrain_state(); {env.unwrapped!r} has none"
            )
        self.env, self.state = env.unwrapped, None

    def changed(self) -> bool:
        state = self.env.terrain_state()
        changed, self.state = state != self.state, state
        return changed


class PrimitivesEnv(MultiAgentEnv):
    """Built by RLlib from ``config``: ``env`` (a tesp env's name), ``env_config``, ``primitives``
    (``{name: checkpoint}``), ``switch_period``, ``finetune``, ``transition_window``. For tests,
    ``env`` may be an env object and ``normalizers`` a list of functions (one per primitive; the
    first is the meta-agent's too)."""

    def __init__(self, config: dict[str, Any]) -> None:
        from tesp.envs import make_env

        env = config["env"]
        if isinstance(env, str):
            env = make_env(env, config.get("env_config") or {})
        primitives = dict(config["primitives"])
        normalizers = config.get("normalizers")
        meta_filter = config.get("meta_obs_filter", "first_primitive")
        if meta_filter not in META_OBS_FILTERS:
            raise ValueError(
                f"meta_obs_filter={meta_filter!r} is invalid: choose from {', '.join(META_OBS_FILTERS)}"
            )
        if normalizers is None:
            paths = list(primitives.values())
            normalizers = [from_checkpoint_filter(path, env) for path in paths]
        if meta_filter == "running":  # normalised after the env, by the meta-agent's connector
            meta_normalizer = np.asarray
        elif config.get("normalizers") is None:
            meta_normalizer = from_checkpoint_filter(paths[0], env, hold_unseen=False)
        else:
            meta_normalizer = normalizers[0]
        self._setup(
            env,
            list(primitives),
            normalizers,
            meta_normalizer,
            config.get("switch_period", 30),
            config.get("finetune", "transitions"),
            config.get("transition_window", 10),
            config.get("switch_on_terrain", False),
        )

    def _setup(
        self,
        env: gym.Env,
        primitives: Sequence[str],
        normalizers: Sequence[Callable[[np.ndarray], np.ndarray]],
        meta_normalizer: Callable[[np.ndarray], np.ndarray],
        switch_period: int,
        finetune: str,
        transition_window: int,
        switch_on_terrain: bool = False,
    ) -> None:
        super().__init__()
        if finetune not in FINETUNE:
            raise ValueError(f"finetune={finetune!r} is invalid: choose from {', '.join(FINETUNE)}")
        if switch_period < 1 or transition_window < 1:
            raise ValueError(
                f"switch_period={switch_period} and transition_window={transition_window} must be >= 1"
            )
        self.env, self.primitives = env, list(primitives)
        self.normalizers, self.meta_normalizer = list(normalizers), meta_normalizer
        self.switch_period, self.finetune, self.window = int(switch_period), finetune, int(transition_window)
        self.terrain = TerrainTracker(env) if switch_on_terrain else None
        self.agents = self.possible_agents = agent_ids(self.primitives)
        self.observation_spaces = {a: env.observation_space for a in self.possible_agents}
        self.action_spaces = {a: env.action_space for a in self.possible_agents}
        self.action_spaces[META] = gym.spaces.Discrete(len(self.primitives))

    # -- the acting agent ---------------------------------------------------------------
    def acting_agent(self) -> str:
        """The id the current primitive acts under at this step (module docstring)."""
        p = self.primitives[self._choice]
        trained = self.finetune == "all" or (
            self.finetune == "transitions" and self._since_switch < self.window
        )
        return p if trained else p + FROZEN

    def _primitive_obs(self) -> dict[str, np.ndarray]:
        return {self.acting_agent(): self.normalizers[self._choice](self._obs).astype(np.float32)}

    def _meta_obs(self) -> np.ndarray:
        return self.meta_normalizer(self._obs).astype(np.float32)

    # -- gymnasium / RLlib API ----------------------------------------------------------
    def reset(self, *, seed=None, options=None):
        self._obs, _ = self.env.reset(seed=seed, options=options)
        self._choice, self._left, self._since_switch = None, 0, 0
        self._meta_reward, self._steps, self._return = 0.0, 0, 0.0
        self._picks = np.zeros(len(self.primitives), dtype=np.int64)
        if self.terrain is not None:
            self.terrain.changed()
        return {META: self._meta_obs()}, {}

    def step(self, action_dict: dict[str, Any]):
        if META in action_dict:
            k = int(action_dict[META])
            switched = self._choice is not None and k != self._choice
            self._since_switch = (
                0 if switched else (self.window if self._choice is None else self._since_switch)
            )
            self._choice, self._left = k, self.switch_period
            self._picks[k] += 1
            return self._primitive_obs(), {}, {"__all__": False}, {"__all__": False}, {}
        (agent,) = action_dict  # the acting primitive
        self._obs, reward, terminated, truncated, info = self.env.step(action_dict[agent])
        self._steps += 1
        self._left -= 1
        self._since_switch += 1
        self._meta_reward += float(reward)
        self._return += float(reward)
        rewards = {agent: float(reward)}
        if terminated or truncated:
            rewards[META] = self._meta_reward
            obs = {
                META: self._meta_obs(),
                agent: self.normalizers[self._choice](self._obs).astype(np.float32),
            }
            done = {"__all__": terminated, META: terminated, agent: terminated}
            cut = {"__all__": truncated, META: truncated, agent: truncated}
            return obs, rewards, done, cut, {META: self.episode_info(info)}
        terrain_changed = self.terrain is not None and self.terrain.changed()
        if self._left == 0 or terrain_changed:
            rewards[META], self._meta_reward = self._meta_reward, 0.0
            return {META: self._meta_obs()}, rewards, {"__all__": False}, {"__all__": False}, {}
        return self._primitive_obs(), rewards, {"__all__": False}, {"__all__": False}, {}

    def episode_info(self, info: dict[str, Any]) -> dict[str, Any]:
        out = {k: float(info[k]) for k in ENV_METRICS if k in info}
        picks = self._picks / max(1, self._picks.sum())
        out |= {f"choice/{p}": float(f) for p, f in zip(self.primitives, picks, strict=True)}
        return out | {"env_steps": self._steps, "env_return": self._return}

    def render(self):
        return self.env.render()

    def close(self):
        self.env.close()
