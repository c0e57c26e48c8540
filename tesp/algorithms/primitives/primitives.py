"""A meta-policy over pre-trained primitive skills, the primitives fine-tuned on transition states.

The method of the seed "Meta policy for selecting primitive skills in a complex environment":
primitive policies (walk forward, crawl, jump; each trained alone with ``--alg ppo``) are loaded
from their checkpoints; a meta-policy picks one of them every ``switch_period`` (N) env steps and
the chosen one acts; the meta-policy is trained with PPO on these macro steps (its reward: the sum
of the env's rewards over its N steps). The primitives stay frozen (``finetune="none"``), are
trained on every step they act (``"all"``), or only on the steps within ``transition_window`` of
a switch (``"transitions"``), where one skill hands over to another: the seed's proposal for
smooth transitions, in place of the separate transition policies of Lee et al. 2019 ("Composing
complex skills by learning transition policies", ICLR).

Everything is RLlib's multi-agent PPO (Schulman et al. 2017): the env is wrapped as turn-taking
agents (:mod:`~tesp.algorithms.primitives.primitives_env`), the meta-policy and each primitive
are modules of one ``MultiRLModule``, and the primitives' modules start from their checkpoints'
weights.

Metrics (``env_runners/``): the env's ``obstacles_passed`` and ``success`` per episode, the env
steps per episode, and ``choice/<primitive>``, the fraction of decisions that picked it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from tesp.algorithms.ppo import PPO, PPOConfig
from tesp.algorithms.ppo.mean_std_filter import MeanStdFilter
from tesp.algorithms.ppo.ppo import summary_line as ppo_summary
from tesp.algorithms.primitives.primitives_env import (
    FINETUNE,
    FROZEN,
    META,
    META_OBS_FILTERS,
    PrimitivesEnv,
    TerrainTracker,
    agent_ids,
)
from tesp.algorithms.primitives.primitives_learner import PrimitivesLearner
from tesp.checkpoints.policies import observation_normalizer, policy_checkpoint
from tesp.meta.setting import Setting, at_least, is_bool, one_of, positive_or_none


class PrimitivesMetrics(RLlibCallback):
    """Logs the meta-agent's end-of-episode info (success metrics, primitive choices)."""

    def on_episode_end(self, *, episode, metrics_logger=None, **kwargs) -> None:
        info = (episode.get_infos(-1) or {}).get(META, {})
        for key, value in info.items():
            if metrics_logger is not None:
                metrics_logger.log_value(key, float(value), reduce="mean", window=100)


class MetaObservationFilter(MeanStdFilter):
    """The meta-agent's running observation filter: tesp's ``MeanStdFilter`` (RLlib's, with the
    EnvRunners' statistics merged correctly; saved in checkpoints, synced every iteration) on the
    meta-agent's observations only. The primitives' observations arrive normalised by the
    filters they were trained with and pass unchanged."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["multi_agent"] = True
        super().__init__(*args, **kwargs)

    def recompute_output_observation_space(self, input_observation_space, input_action_space):
        return input_observation_space  # no module's input space changes

    def __call__(self, *, rl_module, batch, episodes, explore=None, persistent_data=None, **kwargs):
        if self._filters is None:
            self._init_new_filters()
        for episode in self.single_agent_episode_iterator(episodes):
            if episode.agent_id == META:
                obs = episode.get_observations(indices=-1)
                normalised = self._filters[META](obs, update=self._update_stats)
                episode.set_observations(at_indices=-1, new_data=normalised.astype(np.float32))
        return batch

    @staticmethod
    def restore(checkpoint: Path, agents, space):
        """``obs -> normalised obs`` with the meta-agent's filter saved in ``checkpoint`` (frozen),
        for an env of ``agents`` observing ``space``."""
        from gymnasium.spaces import Dict

        connector = MetaObservationFilter()
        connector.input_observation_space = Dict(dict.fromkeys(agents, space))
        connector.restore_from_path(checkpoint / META_FILTER_DIR)
        return observation_normalizer(connector._filters[META], hold_unseen=False)


META_FILTER_DIR = Path("env_runner/env_to_module_connector") / MetaObservationFilter.__name__


def meta_observation_filter(env, spaces, device) -> MetaObservationFilter:
    return MetaObservationFilter()


class PrimitivesConfig(PPOConfig):
    """PPO settings for the meta-policy (and the fine-tuned primitives), plus the skills, when
    the meta-policy decides and what is fine-tuned (module docstring)."""

    NONE_DEFAULT_TYPES = {"finetune_lr": 0.0}  # settings whose default is None: an example value

    SETTINGS = (
        Setting("primitives", {}, "{name: checkpoint}, the skills in the meta-policy's action order (--primitives).",
                "at least one NAME=CHECKPOINT (--primitives)", bool),
        Setting("switch_period", 30,
                "N, env steps between the meta-policy's decisions (youngwoon/transition's fixed --meta_duration).",
                "an integer >= 1", at_least(1)),
        Setting("finetune", "transitions",
                "fine-tune the primitives: none, transitions (the steps after a switch) or all.",
                f"one of {', '.join(FINETUNE)}", one_of(*FINETUNE)),
        Setting("transition_window", 10, "env steps after a switch that fine-tune the new primitive.",
                "an integer >= 1", at_least(1)),
        Setting("switch_on_terrain", False, "also decide whenever the env's terrain_state() changes.",
                "true or false", is_bool),
        Setting("meta_obs_filter", "running",
                "the meta-agent's observation statistics: its own running mean/std (running) or the "
                "first primitive's frozen ones (first_primitive).",
                f"one of {', '.join(META_OBS_FILTERS)}", one_of(*META_OBS_FILTERS)),
        Setting("meta_entropy_coeff", 0.0,
                "the meta-policy's entropy bonus (entropy_coeff stays the fine-tuned primitives').",
                "a number >= 0", at_least(0)),
        Setting("finetune_lr", None, "the fine-tuned primitives' learning rate (null: lr, the meta-policy's).",
                "a number > 0 or null", positive_or_none),
    )  # fmt: skip

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or Primitives)
        self._learner_class = PrimitivesLearner
        self.callbacks(PrimitivesMetrics)

    def validate(self) -> None:
        self.check_declared()
        checkpoints = {
            name: policy_checkpoint(path, what="primitives") for name, path in self.primitives.items()
        }
        if isinstance(self.env, str):  # the user's env, wrapped for the meta-policy (once)
            self.env_config = {
                "env": self.env,
                "env_config": dict(self.env_config),
                "primitives": {name: str(path) for name, path in checkpoints.items()},
                "switch_period": self.switch_period,
                "finetune": self.finetune,
                "transition_window": self.transition_window,
                "switch_on_terrain": self.switch_on_terrain,
                "meta_obs_filter": self.meta_obs_filter,
            }
            self.env = PrimitivesEnv
        # The env normalises each primitive's observations; the meta-agent's, the connector.
        running = self.meta_obs_filter == "running"
        self.env_runners(env_to_module_connector=meta_observation_filter if running else None)
        self._set_modules(checkpoints)
        super().validate()

    def _set_modules(self, checkpoints: dict[str, Path]) -> None:
        """One module for the meta-policy and two per primitive (trained, acting) from its checkpoint."""
        from ray.rllib.core import DEFAULT_MODULE_ID

        from tesp.checkpoints.policies import MODULE_DIR, restore_module

        specs: dict[str, RLModuleSpec] = {META: RLModuleSpec(model_config=dict(self._model_config))}
        for name, checkpoint in checkpoints.items():
            path = checkpoint / MODULE_DIR / DEFAULT_MODULE_ID
            module = restore_module(checkpoint)
            for module_id in (name, name + FROZEN):
                specs[module_id] = RLModuleSpec(
                    module_class=type(module),
                    observation_space=module.observation_space,
                    action_space=module.action_space,
                    model_config=module.model_config,
                    load_state_path=str(path),
                )
        trained = [META] + ([] if self.finetune == "none" else list(checkpoints))
        overrides = {META: {"entropy_coeff": self.meta_entropy_coeff}}
        if self.finetune_lr is not None:
            overrides |= {name: {"lr": self.finetune_lr} for name in checkpoints}
        self.multi_agent(
            policies=set(specs),
            policy_mapping_fn=lambda agent_id, episode, **kwargs: agent_id,
            policies_to_train=trained,
            algorithm_config_overrides_per_module=overrides,
        )
        self.rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs=specs))


class PrimitivesController:
    """The trained meta-policy and primitives driving the plain env (``main_test.py``): the
    meta-policy picks when ``switch_period`` steps have passed since its last pick (and, given a
    ``terrain`` tracker, when the terrain changed), as in training; the picked primitive acts."""

    def __init__(
        self,
        meta,
        primitives: dict[str, Any],
        normalizers: list,
        meta_normalizer,
        switch_period: int,
        terrain: TerrainTracker | None = None,
    ) -> None:
        self.meta, self.names = meta, list(primitives)
        self.modules, self.normalizers = list(primitives.values()), normalizers
        self.meta_normalizer = meta_normalizer
        self.switch_period, self.terrain = switch_period, terrain
        self.picks = np.zeros(len(self.names))

    def reset(self) -> None:
        self.left, self.choice = 0, 0
        self.picks = np.zeros(len(self.names))

    def act(self, obs: np.ndarray, explore: bool = False) -> np.ndarray:
        from tesp.checkpoints.policies import module_action

        terrain_changed = self.terrain is not None and self.terrain.changed()
        if self.left == 0 or terrain_changed:
            self.choice = int(module_action(self.meta, self.meta_normalizer(obs).astype(np.float32), explore))
            self.picks[self.choice] += 1
            self.left = self.switch_period
        self.left -= 1
        k = self.choice
        return module_action(self.modules[k], self.normalizers[k](obs).astype(np.float32), explore)

    def caption(self) -> str:
        """What a recorded frame is captioned with: the primitive acting."""
        return f"primitive: {self.names[self.choice]}"

    def episode_metrics(self) -> dict[str, float]:
        fractions = self.picks / max(1.0, self.picks.sum())
        return {f"choice/{n}": float(f) for n, f in zip(self.names, fractions, strict=True)}


class Primitives(PPO):
    @classmethod
    def get_default_config(cls) -> PrimitivesConfig:
        return PrimitivesConfig(cls)

    # -- main_test.py (tesp.checkpoints.policies) ---------------------------------------------------
    @staticmethod
    def policy_env(config: dict) -> tuple[str, dict]:
        wrapped = config["env_config"]
        return wrapped["env"], dict(wrapped.get("env_config") or {})

    @staticmethod
    def controller(checkpoint, config: dict, env) -> PrimitivesController:
        from tesp.algorithms.primitives.primitives_env import from_checkpoint_filter
        from tesp.checkpoints.policies import restore_module

        wrapped = config["env_config"]

        def module(module_id: str):
            return restore_module(checkpoint, module_id)

        names, paths = list(wrapped["primitives"]), list(wrapped["primitives"].values())
        norms = [from_checkpoint_filter(path, env) for path in paths]
        if wrapped.get("meta_obs_filter", "first_primitive") == "running":
            meta_norm = MetaObservationFilter.restore(
                Path(checkpoint), agent_ids(names), env.observation_space
            )
        else:
            meta_norm = from_checkpoint_filter(paths[0], env, hold_unseen=False)  # as PrimitivesEnv
        terrain = TerrainTracker(env) if wrapped.get("switch_on_terrain") else None
        return PrimitivesController(
            module(META), {n: module(n) for n in names}, norms, meta_norm, wrapped["switch_period"], terrain
        )


def summary_line(result: dict) -> str:
    """PPO's progress line plus how often each primitive was picked."""
    m = result.get("env_runners", {})
    picks = ", ".join(
        f"{k.split('/', 1)[1]} {v:.2f}" for k, v in sorted(m.items()) if k.startswith("choice/")
    )
    return ppo_summary(result) + (f" | picks {picks}" if picks else "")
