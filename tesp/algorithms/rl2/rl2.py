"""RL² (Duan et al. 2016, "RL²: Fast Reinforcement Learning via Slow Reinforcement Learning";
Wang et al. 2016, "Learning to reinforcement learn"): a recurrent policy meta-trained with PPO
over *trials*, each ``episodes_per_trial`` episodes of one task, the hidden state carried over
the episodes of a trial. Its adaptation is the trial: episode 1 acts before any experience of
the task, episode K after K - 1 episodes of it.

The algorithm and its loss are RLlib's PPO on the new API stack (``ray.rllib.algorithms.ppo``,
with tesp's PPO defaults, :mod:`tesp.algorithms.ppo`); this module adds

- the trial env (:class:`~tesp.algorithms.rl2.trial_env.TrialEnv`) around the ``--env`` task
  family, built by :class:`TrialEnvRunner` in each EnvRunner, so that RLlib's episode (whose
  start resets the recurrent state) is the trial;
- the GRU policy (:class:`~tesp.algorithms.rl2.rl2_rl_module.RL2Module`), trained by RLlib's
  Learner on sequences of ``model.max_seq_len`` steps;
- the per-episode returns of the iteration's trials under the gradient methods' names,
  ``meta/return_stage_<k>`` (episode k + 1 of the trial), ``meta/return_post`` (the last),
  ``meta/env_steps`` and ``meta/env_steps_lifetime``, so that the report and the studies put
  RL² beside MAML on one figure.

PPO's settings keep tesp's PPO defaults (``--alg ppo --help``) except those set below.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

from tesp.algorithms.ppo.ppo import PPO, PPOConfig
from tesp.algorithms.rl2.rl2_rl_module import RL2Module
from tesp.algorithms.rl2.trial_env import TrialEnv
from tesp.meta import validation
from tesp.meta.episode_adaptation import EpisodeAdaptation, EvaluatedStage
from tesp.meta.setting import Setting, at_least, is_bool
from tesp.meta.validation import PoolValidation
from tesp.meta.wrapped_env_runner import WrappedEnvRunner

META = "meta"  # the gradient methods' metric namespace (tesp.meta.meta_gradient)


def trial_env(name: str, env_config: dict, episodes_per_trial: int, reward_input: bool = True) -> TrialEnv:
    from tesp.envs import make_env

    return TrialEnv(make_env(name, env_config), episodes_per_trial, reward_input)


class TrialEnvRunner(WrappedEnvRunner):
    """RLlib's EnvRunner whose sub-envs are trials of the config's task family."""

    ENV_ID = "tesp-rl2-trial-v0"

    @classmethod
    def wrap_env(cls, config, name: str, env_config: dict) -> TrialEnv:
        return trial_env(name, env_config, config.episodes_per_trial, config.reward_input)


class TrialMetrics(RLlibCallback):
    """Per finished trial: each episode's return and (where the env reports it) success, under
    ``return_stage_<k>`` / ``success_stage_<k>``, averaged over the iteration's trials."""

    def on_episode_end(self, *, episode, metrics_logger=None, **kwargs) -> None:
        info = episode.get_infos(-1) or {}
        if metrics_logger is None or "episode_returns" not in info:
            return
        for k, value in enumerate(info["episode_returns"]):
            metrics_logger.log_value(f"return_stage_{k}", float(value), reduce="mean")
        for k, value in enumerate(info.get("success", [])):
            metrics_logger.log_value(f"success_stage_{k}", float(value), reduce="mean")


class RL2Config(PPOConfig):
    """RL² on tesp's PPO (module docstring). ``model.*``: the GRU policy's
    (:mod:`~tesp.algorithms.rl2.rl2_rl_module`) and RLlib's ``max_seq_len``."""

    DEFAULT_MODEL_CONFIG: dict[str, Any] = {
        "gru_size": 64,
        "hiddens": [],
        "initial_log_std": None,
        "max_seq_len": 50,
    }

    SETTINGS = (
        Setting("episodes_per_trial", 2,
                "episodes of one task per trial, the hidden state kept across them (garage's example: 4).",
                "an integer >= 1", at_least(1)),
        Setting("reward_input", True,
                "the previous reward in the policy's input; false: the control that cannot infer a task from its rewards.",
                "true or false", is_bool),
        *validation.SETTINGS,
    )  # fmt: skip

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or RL2)
        self.train_batch_size = 4000
        self.minibatch_size = 1000
        self.clip_param = 0.2
        self.env_runners(env_runner_cls=TrialEnvRunner)
        self.callbacks(TrialMetrics)

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=RL2Module)

    def validate(self) -> None:
        super().validate()
        for key in ("gru_size", "max_seq_len"):
            value = self._model_config.get(key, self.DEFAULT_MODEL_CONFIG[key])
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self._value_error(f"model.{key}={value!r} is invalid: must be an integer >= 1")


class RL2(EpisodeAdaptation, PoolValidation, PPO):
    @classmethod
    def get_default_config(cls) -> RL2Config:
        return RL2Config(cls)

    def training_step(self) -> None:
        before = self._sampled_lifetime()
        super().training_step()
        runners = self.metrics.peek(ENV_RUNNER_RESULTS, default={}) or {}
        stages = sorted(
            (int(k.rsplit("_", 1)[1]), k)
            for k in runners
            if k.startswith(("return_stage_", "success_stage_"))
        )
        for _, key in stages:
            value = float(runners[key])
            if np.isfinite(value):
                self.metrics.log_value((META, key), value, window=1)
        last = self.config.episodes_per_trial - 1
        for name in ("return", "success"):
            if f"{name}_stage_{last}" in runners:
                self.metrics.log_value(
                    (META, f"{name}_post"), float(runners[f"{name}_stage_{last}"]), window=1
                )
        after = self._sampled_lifetime()
        self.metrics.log_value((META, "env_steps"), float(after - before), window=1)
        self.metrics.log_value((META, "env_steps_lifetime"), float(after), window=1)
        self.validate_if_due()  # trials on the pools D, D', D'' (tesp.meta.validation)

    def _sampled_lifetime(self) -> float:
        return float(self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0) or 0)

    # -- main_test.py: the trial is the adaptation ---------------------------------------------
    @property
    def num_adaptation_steps(self) -> int:
        """The episodes before the last of a trial (the gradient methods' inner steps)."""
        return self.config.episodes_per_trial - 1

    @property
    def task_env(self):
        if getattr(self, "_task_env", None) is None:
            from tesp.envs import make_env

            self._task_env = make_env(self.config.env, dict(self.config.env_config))
        return self._task_env

    def adapt_on_tasks(self, tasks: list, num_inner_steps: int | None = None):
        """Per task, one trial on each of the EnvRunner's sub-envs (``num_envs_per_env_runner``
        trials of ``num_inner_steps`` + 1 episodes, default the trained length), the policy
        sampling as in training; as the gradient methods'
        :class:`~tesp.meta.rollout.Rollout`, whose stage k holds, per task, every trial's
        episode k + 1."""
        from tesp.meta.rollout import Rollout

        episodes = self.config.episodes_per_trial if num_inner_steps is None else num_inner_steps + 1
        trials = max(1, self.config.num_envs_per_env_runner)
        obs_dim = self.task_env.observation_space.shape[0]
        sampled = [
            self.on_sampler(lambda runner, task=task: run_trials(runner, task, episodes, trials))
            for task in tasks
        ]
        stages = [[EvaluatedStage(task_batch(s, k, obs_dim)) for s in sampled] for k in range(episodes)]
        return Rollout(index=[-1] * len(tasks), theta={}, stages=stages)


def run_trials(runner, task: dict, episodes: int, trials: int) -> list[dict]:
    """On an EnvRunner: ``trials`` trials of ``task`` (``episodes`` episodes each); per trial the
    raw observations, actions, rewards and the episode index of each step, and each episode's
    success."""
    envs = runner.sub_envs()
    kept = [(env.episodes_per_trial, env._fixed) for env in envs]
    for env in envs:
        env.episodes_per_trial = episodes
        env.set_task(task)
    lifetime = runner.num_env_steps_sampled_lifetime
    try:
        sampled = runner.sample(num_episodes=trials, explore=True, force_reset=True)
    finally:
        for env, (n, fixed) in zip(envs, kept, strict=True):
            env.episodes_per_trial = n
            env.set_task(fixed)
        # An evaluation's trials are not training's: off the EnvRunner's metrics and step count
        # (the next training sample starts new trials: RLlib resets after sampling by episodes).
        runner.get_metrics()
        runner.num_env_steps_sampled_lifetime = lifetime
    out = []
    for episode in sampled[:trials]:
        obs = np.asarray(episode.get_observations())[:-1]
        flag = obs[:, -1]
        out.append(
            {
                "obs": obs,
                "actions": np.asarray(episode.get_actions()),
                "rewards": np.asarray(episode.get_rewards(), dtype=np.float64),
                "episode": np.cumsum(flag > 0.5) - 1,
                "success": list(episode.get_infos(-1).get("success", [])),
            }
        )
    return out


def task_batch(trials: list[dict], k: int, obs_dim: int):
    """Episode k of every trial as one :class:`~tesp.meta.batch.TaskBatch` (the task env's own
    observations; returns and advantages left at 0: nothing is trained on it)."""
    from tesp.meta.batch import episodes_batch

    parts = [
        {
            "obs": t["obs"][t["episode"] == k][:, :obs_dim],
            "actions": t["actions"][t["episode"] == k],
            "rewards": t["rewards"][t["episode"] == k],
        }
        for t in trials
    ]
    success = [float(t["success"][k]) for t in trials] if all(len(t["success"]) > k for t in trials) else None
    return episodes_batch(parts, success)
