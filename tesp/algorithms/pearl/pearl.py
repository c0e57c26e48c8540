"""PEARL (Rakelly, Zhou, Quillen, Finn, Levine 2019, "Efficient Off-Policy Meta-Reinforcement
Learning via Probabilistic Context Variables"): SAC whose policy and critics read a latent task
variable z, inferred from the task's transitions by a probabilistic context encoder.

One iteration (the paper's Algorithm 1; the sizes are settings, defaults from the paper and the
authors' release):

1. (first iteration) ``num_initial_steps`` env steps on every training task with z from the prior;
2. data collection on ``num_tasks_sample`` training tasks: the task's encoder buffer is
   emptied, ``num_steps_prior`` steps with z from the prior go into its replay and encoder
   buffers, ``num_extra_rl_steps_posterior`` steps with z from the posterior of that context
   into its replay buffer only (the encoder sees only data collected with the prior, §4.2);
3. ``num_train_steps_per_itr`` gradient steps: per step ``meta_batch_size`` tasks, each with a
   context of ``embedding_batch_size`` transitions from its encoder buffer and ``batch_size``
   transitions from its replay buffer (the two kept apart as the paper does), one step of the
   actor, the twin critics, the temperature and the encoder
   (:class:`~tesp.algorithms.pearl.pearl_learner.PEARLLearner`), then the soft target update.

Sampling runs on RLlib EnvRunners (:class:`LatentEnvRunner`: the task env's observation followed
by z); the networks are RLlib's SAC module and Learner extended in this folder.

Adaptation (``main_test.py``, validation, the report): per task, stage 0 acts with z from the
prior; after each stage the posterior is updated from every transition collected so far, and
stage k acts with z drawn from it (the paper's posterior sampling, §4.3). ``context_episodes``
stages follow the prior one.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from ray.rllib.algorithms.sac.sac import SAC, SACConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

from tesp.algorithms.pearl.latent_env import LatentEnv
from tesp.algorithms.pearl.pearl_learner import PEARLLearner
from tesp.algorithms.pearl.pearl_rl_module import PEARLModule
from tesp.algorithms.pearl.task_replay import TaskReplay, context_array
from tesp.checkpoints.resume import CompleteCheckpoints
from tesp.meta import validation
from tesp.meta.episode_adaptation import EpisodeAdaptation, EvaluatedStage
from tesp.meta.setting import DeclaredSettings, Setting, above, at_least, is_bool
from tesp.meta.validation import PoolValidation
from tesp.meta.wrapped_env_runner import WrappedEnvRunner

META = "meta"  # the gradient methods' metric namespace


class LatentEnvRunner(WrappedEnvRunner):
    ENV_ID = "tesp-pearl-latent-v0"

    @classmethod
    def wrap_env(cls, config, name: str, env_config: dict) -> LatentEnv:
        from tesp.envs import make_env

        return LatentEnv(make_env(name, env_config), config.latent_size)


class PEARLConfig(DeclaredSettings, SACConfig):
    """PEARL's settings (``SETTINGS``) over RLlib's SAC (``tau``, ``gamma``, ``actor_lr``,
    ``critic_lr``, ``alpha_lr``, ``initial_alpha``, ``twin_q``)."""

    SETTINGS = (
        Setting("latent_size", 5, "dimension of z (the release's default).", "an integer >= 1", at_least(1)),
        Setting("kl_lambda", 0.1, "weight of KL(q(z|c) || N(0, I)) in the encoder's loss (Eq. 4).",
                "a number >= 0", at_least(0)),
        Setting("reward_scale", 5.0, "rewards are multiplied by this in SAC's losses (the release: 5; "
                "with a fixed temperature it sets the entropy's weight).", "a number > 0", above(0)),
        Setting("context_lr", 3e-4, "the encoder's Adam step size.", "a number > 0", above(0)),
        Setting("num_train_tasks", 100, "training tasks (PEARL trains on a fixed set; cheetah-vel: "
                "100): drawn once when the family has no pool D, else pool D, or that many evenly "
                "spaced tasks of it when it is larger (ML10's 500: 10 per class at 100).", "an integer >= 1", at_least(1)),
        Setting("meta_batch_size", 16, "tasks per gradient step.", "an integer >= 1", at_least(1)),
        Setting("num_initial_steps", 2000, "env steps per training task with z from the prior before "
                "the first iteration.", "an integer >= 0", at_least(0)),
        Setting("num_tasks_sample", 5, "tasks whose data is collected per iteration.", "an integer >= 1", at_least(1)),
        Setting("num_steps_prior", 400, "env steps per collected task with z from the prior (into both "
                "buffers).", "an integer >= 1", at_least(1)),
        Setting("num_extra_rl_steps_posterior", 600, "env steps per collected task with z from the "
                "posterior (into the replay buffer only).", "an integer >= 0", at_least(0)),
        Setting("num_train_steps_per_itr", 2000, "gradient steps per iteration.", "an integer >= 1", at_least(1)),
        Setting("batch_size", 256, "RL transitions per task and gradient step.", "an integer >= 1", at_least(1)),
        Setting("embedding_batch_size", 64, "context transitions per task and gradient step.",
                "an integer >= 1", at_least(1)),
        Setting("replay_capacity", 100_000, "transitions kept per task (replay buffer; the encoder "
                "buffer holds the same number).", "an integer >= 1", at_least(1)),
        Setting("next_obs_in_context", True, "the context transitions include s' (the issue's (s, a, "
                "r, s'); the release's default leaves it out).", "true or false", is_bool),
        Setting("reward_in_context", True, "the context transitions carry the reward; false gives the "
                "control of the learning test (r replaced by 0: on point, whose tasks differ only in "
                "their rewards, z then cannot tell the tasks apart).", "true or false", is_bool),
        Setting("dense_critic_reward", False, "the actor and critics learn from the env's dense reward "
                "(its step info's 'dense_reward') while the context, the adaptation and the reported "
                "returns use its own, sparse one: the release's setting for its sparse point robot "
                "(its actor-critic batches' rewards 'are always dense').", "true or false", is_bool),
        Setting("context_episodes", 2, "episodes of context gathered at test time, each followed by "
                "a posterior update (stages after the prior's).", "an integer >= 1", at_least(1)),
        *validation.SETTINGS,
    )  # fmt: skip

    #: the release's networks: 3 x 300 for the actor and critics, 3 x 200 for the encoder
    DEFAULT_MODEL_CONFIG: dict[str, Any] = {
        "fcnet_hiddens": [300, 300, 300],
        "fcnet_activation": "relu",
        "encoder_hiddens": [200, 200, 200],
    }

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or PEARL)
        self.set_declared_defaults()
        self.seed = 0  # as every tesp method: a run repeats unless --seed says otherwise
        # The release's SAC: networks 3 x 300, learning rates 3e-4, a fixed temperature of 1
        # (the reward scale sets the entropy's weight), soft target updates of 0.005.
        self.actor_lr = 3e-4
        self.critic_lr = 3e-4
        self.alpha_lr = 0.0
        self.initial_alpha = 1.0
        self.gamma = 0.99
        self.tau = 0.005
        # one training_step per iteration (RLlib's SAC repeats it for at least 1 s / 100 steps)
        self.min_time_s_per_iteration = None
        self.min_sample_timesteps_per_iteration = 0
        self.min_train_timesteps_per_iteration = 0
        self.num_env_runners = 1
        self.num_envs_per_env_runner = 4
        self.num_cpus_per_env_runner = 0.5
        self.replay_buffer_config = {"type": "EpisodeReplayBuffer", "capacity": 1}  # unused: TaskReplay
        self.rl_module(model_config=dict(self.DEFAULT_MODEL_CONFIG))
        self.env_runners(env_runner_cls=LatentEnvRunner)

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=PEARLModule)

    def get_default_learner_class(self):
        return PEARLLearner

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {
            "latent_size": self.latent_size,
            "next_obs_in_context": self.next_obs_in_context,
        }

    def validate(self) -> None:
        super().validate()
        self.check_declared()


class PEARL(EpisodeAdaptation, PoolValidation, CompleteCheckpoints, SAC):
    @classmethod
    def get_default_config(cls) -> PEARLConfig:
        return PEARLConfig(cls)

    def setup(self, config) -> None:
        super().setup(config)
        from tesp.envs import make_env

        cfg = self.config
        self.task_env = make_env(cfg.env, dict(cfg.env_config))
        self.task_env.reset(seed=cfg.seed)
        pools = self.task_env.task_pools()
        self.train_tasks = training_tasks(pools.get("D"), cfg.num_train_tasks) or self.task_env.sample_tasks(
            cfg.num_train_tasks
        )
        obs_dim = self.task_env.observation_space.shape[0]
        act_dim = self.task_env.action_space.shape[0]
        self.replay = [TaskReplay(cfg.replay_capacity, obs_dim, act_dim) for _ in self.train_tasks]
        self.encoder_replay = [TaskReplay(cfg.replay_capacity, obs_dim, act_dim) for _ in self.train_tasks]
        self.rng = np.random.default_rng(cfg.seed)
        self.env_steps_lifetime = 0

    # -- sampling ---------------------------------------------------------------------------
    def _sample(self, task: dict, latents: np.ndarray, episodes: int) -> list[dict]:
        """``episodes`` complete episodes of ``task``, sub-env j acting with ``latents[j]``; per
        episode its transitions (the task env's observations)."""
        obs_dim = self.task_env.observation_space.shape[0]

        def run(runner):
            envs = runner.sub_envs()
            for env, z in zip(envs, latents, strict=False):
                env.set_task(task)
                env.set_latent(z)
            try:
                sampled = runner.sample(num_episodes=episodes, explore=True, force_reset=True)
            finally:
                runner.get_metrics()  # the episodes are counted here, not in RLlib's metrics
            out = []
            for episode in sampled[:episodes]:
                obs = np.asarray(episode.get_observations())[:, :obs_dim]
                rewards = np.asarray(episode.get_rewards(), dtype=np.float32)
                terminated = np.zeros(len(rewards), dtype=np.float32)
                terminated[-1] = float(episode.is_terminated)
                infos = episode.get_infos()
                out.append({
                    "obs": obs[:-1], "next_obs": obs[1:], "actions": np.asarray(episode.get_actions()),
                    "rewards": rewards, "terminateds": terminated,
                    "success": any(bool(i.get("success", False)) for i in infos),
                    "reports_success": any("success" in i for i in infos),
                })  # fmt: skip
                if all(DENSE_REWARD in i for i in infos[1:]):  # the step infos (infos[0] is the reset's)
                    out[-1][DENSE_REWARD] = np.array([i[DENSE_REWARD] for i in infos[1:]], dtype=np.float32)
            return out

        return self.on_sampler(run)

    def _latents(self, context: np.ndarray | None) -> np.ndarray:
        n = max(1, self.config.num_envs_per_env_runner)
        return next(iter(self.learner_group.foreach_learner(lambda lr: lr.infer_latents(context, n)))).get()

    def _collect(self, index: int, steps: int, posterior: bool, to_encoder: bool) -> tuple[int, list[float]]:
        """At least ``steps`` env steps (whole episodes) on training task ``index``; returns how
        many, and the episodes' returns. Episodes are added until the count is reached, as the
        release's sampler does, so envs whose episodes end early (a fallen ant, a point at its
        goal) still give ``steps``."""
        context = None
        if posterior and self.encoder_replay[index].size:
            context = self._draw_context(index, self.config.embedding_batch_size)
        horizon = max(1, int(getattr(self.task_env, "horizon", 100)))
        latents = self._latents(context)
        episodes: list[dict] = []
        collected = 0
        while collected < steps:
            more = self._sample(self.train_tasks[index], latents, math.ceil((steps - collected) / horizon))
            if not more:
                raise RuntimeError(f"PEARL collection got no episode of training task {index}")
            episodes += more
            collected += sum(len(e["rewards"]) for e in more)
        data = {
            k: np.concatenate([e[k] for e in episodes])
            for k in ("obs", "actions", "rewards", "next_obs", "terminateds")
        }
        if self.config.dense_critic_reward:  # the actor-critic learns from the dense reward, z from the env's
            if any(DENSE_REWARD not in e for e in episodes):
                raise ValueError(
                    f"dense_critic_reward=True needs an env whose step info has {DENSE_REWARD!r} "
                    f"(point_robot_sparse); {self.config.env!r} has none"
                )
            self.replay[index].add(data | {"rewards": np.concatenate([e[DENSE_REWARD] for e in episodes])})
        else:
            self.replay[index].add(data)
        if to_encoder:
            self.encoder_replay[index].add(data)
        return len(data["rewards"]), [float(e["rewards"].sum()) for e in episodes]

    def _draw_context(self, index: int, n: int) -> np.ndarray:
        return self._context(self.encoder_replay[index].sample(n, self.rng))

    def _context(self, transitions: dict[str, np.ndarray]) -> np.ndarray:
        return context_array(transitions, self.config.next_obs_in_context, self.config.reward_in_context)

    # -- one iteration ----------------------------------------------------------------------
    def training_step(self) -> None:
        cfg = self.config
        steps = 0
        # the returns with z from the prior (stage 0) and from the posterior of that data (stage 1)
        returns: tuple[list[float], list[float]] = ([], [])
        start = time.perf_counter()
        if self.iteration == 0 and cfg.num_initial_steps:
            for i in range(len(self.train_tasks)):
                steps += self._collect(i, cfg.num_initial_steps, posterior=False, to_encoder=True)[0]
        for i in self.rng.choice(len(self.train_tasks), size=cfg.num_tasks_sample):
            self.encoder_replay[i].clear()
            n, prior = self._collect(i, cfg.num_steps_prior, posterior=False, to_encoder=True)
            steps += n
            returns[0].extend(prior)
            if cfg.num_extra_rl_steps_posterior:
                n, post = self._collect(i, cfg.num_extra_rl_steps_posterior, posterior=True, to_encoder=False)
                steps += n
                returns[1].extend(post)
        losses: dict[str, list[float]] = {}
        ready = [
            i for i in range(len(self.train_tasks)) if self.replay[i].size and self.encoder_replay[i].size
        ]
        sample_s, start = time.perf_counter() - start, time.perf_counter()
        for _ in range(cfg.num_train_steps_per_itr):
            tasks = self.rng.choice(ready, size=cfg.meta_batch_size)
            batch = self._meta_batch(tasks)
            out = next(iter(self.learner_group.foreach_learner(lambda lr, b=batch: lr.pearl_update(b)))).get()
            for key, value in out.items():
                losses.setdefault(key, []).append(value)
        self.env_runner_group.sync_weights(
            from_worker_or_learner_group=self.learner_group, inference_only=True
        )
        update_s = time.perf_counter() - start
        self.env_steps_lifetime += steps
        self.metrics.log_value((META, "env_steps"), float(steps), window=1)
        self.metrics.log_value((META, "env_steps_lifetime"), float(self.env_steps_lifetime), window=1)
        self.metrics.log_value(
            (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), steps, reduce="lifetime_sum"
        )
        for key, values in losses.items():
            self.metrics.log_value((META, f"loss_{key}"), float(np.mean(values)), window=1)
        # seconds of the iteration's collection and of its gradient steps (with the weight sync)
        self.metrics.log_value((META, "time_sample_s"), sample_s, window=1)
        self.metrics.log_value((META, "time_update_s"), update_s, window=1)
        for k, values in enumerate(r for r in returns if r):
            self.metrics.log_value((META, f"return_stage_{k}"), float(np.mean(values)), window=1)
        if returns[1]:
            self.metrics.log_value((META, "return_post"), float(np.mean(returns[1])), window=1)
        self.validate_if_due()

    def _meta_batch(self, tasks: np.ndarray) -> dict[str, np.ndarray]:
        cfg = self.config
        rl = [self.replay[i].sample(cfg.batch_size, self.rng) for i in tasks]
        batch = {k: np.concatenate([b[k] for b in rl]) for k in rl[0]}
        batch["task"] = np.repeat(np.arange(len(tasks)), cfg.batch_size)
        batch["context"] = np.stack([self._draw_context(i, cfg.embedding_batch_size) for i in tasks])
        return batch

    # -- adaptation (main_test.py, validation, the report) ---------------------------------
    @property
    def num_adaptation_steps(self) -> int:
        return self.config.context_episodes

    def adapt_on_tasks(self, tasks: list, num_inner_steps: int | None = None):
        """Per task: stage 0 with z from the prior, then ``context_episodes`` stages each with z
        from the posterior of all transitions collected before it (one episode per sub-env and
        stage)."""
        from tesp.meta.batch import episodes_batch
        from tesp.meta.rollout import Rollout

        stages_n = (self.config.context_episodes if num_inner_steps is None else num_inner_steps) + 1
        per_stage = max(1, self.config.num_envs_per_env_runner)
        stages: list[list] = [[] for _ in range(stages_n)]
        for task in tasks:
            context = None
            for k in range(stages_n):
                episodes = self._sample(task, self._latents(context), per_stage)
                success = [e["success"] for e in episodes] if episodes[0]["reports_success"] else None
                stages[k].append(EvaluatedStage(episodes_batch(episodes, success)))
                more = self._context(
                    {
                        f: np.concatenate([e[f] for e in episodes])
                        for f in episodes[0]
                        if f in ("obs", "actions", "rewards", "next_obs")
                    }
                )
                context = more if context is None else np.concatenate([context, more])
        return Rollout(index=[-1] * len(tasks), theta={}, stages=stages)

    # -- checkpoints: the buffers, the training tasks and the generator ------------------------
    def get_state(self, *args, **kwargs) -> dict:
        state = super().get_state(*args, **kwargs)
        state["pearl"] = {
            "train_tasks": self.train_tasks,
            "replay": [b.get_state() for b in self.replay],
            "encoder_replay": [b.get_state() for b in self.encoder_replay],
            "rng": self.rng.bit_generator.state,
            "env_steps_lifetime": self.env_steps_lifetime,
        }
        return state

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        saved = state.get("pearl")
        if saved is None:
            return
        self.train_tasks = saved["train_tasks"]
        for buffers, key in ((self.replay, "replay"), (self.encoder_replay, "encoder_replay")):
            for buffer, values in zip(buffers, saved[key], strict=True):
                buffer.set_state(values)
        self.rng.bit_generator.state = saved["rng"]
        self.env_steps_lifetime = saved["env_steps_lifetime"]


#: the step info's key of an env's dense reward (``dense_critic_reward``)
DENSE_REWARD = "dense_reward"


def training_tasks(pool: list | None, n: int) -> list | None:
    """Pool D, or ``n`` evenly spaced tasks of it when it holds more (a pool ordered by class
    keeps every class)."""
    if not pool or len(pool) <= n:
        return pool
    return [pool[i] for i in np.linspace(0, len(pool) - 1, n).round().astype(int)]
