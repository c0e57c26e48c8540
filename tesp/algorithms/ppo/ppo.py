"""Single-task PPO (Schulman et al. 2017): RLlib's own PPO, with tesp's defaults and metrics.

``--alg ppo`` trains one policy on one env, e.g. each primitive skill of the walker's obstacle
course (Lee et al. 2019, "Composing complex skills by learning transition policies": PPO
primitives with 2 x 32 tanh networks and normalised observations) and the from-scratch baseline
on the course. The algorithm and its loss are RLlib's (``ray.rllib.algorithms.ppo``); this
module only sets

- defaults that fit 2 cores: one EnvRunner (half a CPU) with 8 sub-envs, 8000 env steps per
  iteration, minibatches of 512, 10 epochs;
- observation normalisation: RLlib's ``MeanStdFilter`` connector (running mean and std, shared
  by the runners and saved in the checkpoints), its merge of the runners' statistics corrected
  (:mod:`~tesp.algorithms.ppo.mean_std_filter`);
- ``reward_scale``: the rewards multiplied by a constant before GAE, in the Learner (the logged
  returns stay the env's): value targets of order 1 instead of hundreds, what reward
  normalisation does in PPO's usual MuJoCo setting (Engstrom et al. 2020, "Implementation matters
  in deep policy gradients"); a constant keeps runs reproducible and checkpoints stateless. On
  ``walker_forward`` (seed 0, first 400k steps) 0.01 raised the value function's explained
  variance from 0.80-0.89 to 0.91-0.96;
- ``model.initial_log_std``: the policy's initial action noise (``ppo_rl_module.py``);
- a seeded run by default (``seed`` 0), as every tesp method;
- ``init_from``: a policy's checkpoint (or an exported skill, ``skills/walker_*``) whose module
  weights and observation filter the run starts from, e.g. to train a shipped skill further (the
  optimiser starts afresh; ``--resume`` continues a run exactly instead);
- the episode metrics an env reports in its last ``info``: ``obstacles_passed`` and
  ``success`` (the walker envs' success count and goal), logged as episode means next to
  RLlib's returns.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.ppo import PPO as RLlibPPO
from ray.rllib.algorithms.ppo import PPOConfig as RLlibPPOConfig
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.connectors.learner import GeneralAdvantageEstimation
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

from tesp.algorithms.ppo.mean_std_filter import MeanStdFilter
from tesp.algorithms.ppo.ppo_rl_module import PPOModule
from tesp.checkpoints.resume import CompleteCheckpoints
from tesp.envs.base import EPISODE_METRICS
from tesp.meta.setting import DeclaredSettings, Setting, above, at_least, between


class EpisodeMetrics(RLlibCallback):
    """Logs :data:`EPISODE_METRICS` of every finished episode (mean over the iteration's episodes)."""

    def on_episode_end(self, *, episode, metrics_logger=None, **kwargs) -> None:
        info = episode.get_infos(-1) or {}
        for key in EPISODE_METRICS:
            if key in info and metrics_logger is not None:
                metrics_logger.log_value(key, float(info[key]), reduce="mean", window=100)


def mean_std_filter(env, spaces, device) -> MeanStdFilter:
    return MeanStdFilter()


class ScaleRewards(ConnectorV2):
    """Learner connector piece: multiplies the batch's rewards by ``scale`` (before GAE)."""

    def __init__(
        self, input_observation_space=None, input_action_space=None, *, scale: float = 1.0, **kwargs
    ):
        super().__init__(input_observation_space, input_action_space, **kwargs)
        self.scale = float(scale)

    def __call__(self, *, rl_module, batch, episodes, **kwargs):
        for module_batch in batch.values():
            module_batch[Columns.REWARDS] = module_batch[Columns.REWARDS] * self.scale
        return batch


class PPOLearner(PPOTorchLearner):
    """RLlib's PPO Learner with the rewards scaled by ``config.reward_scale`` before GAE."""

    def build(self) -> None:
        super().build()
        scale = self.config.reward_scale
        if self._learner_connector is not None and scale != 1.0:
            self._learner_connector.insert_before(GeneralAdvantageEstimation, ScaleRewards(scale=scale))


class PPOConfig(DeclaredSettings, RLlibPPOConfig):
    """RLlib's PPO with tesp's defaults (module docstring); ``model.*`` are RLlib's
    ``DefaultModelConfig`` keys. The settings below are RLlib's own (its PPO documents them)
    with tesp's defaults, and tesp's ``reward_scale`` and ``init_from``."""

    DEFAULT_MODEL_CONFIG: dict[str, Any] = {
        "fcnet_hiddens": [64, 64],
        "fcnet_activation": "tanh",
        "vf_share_layers": False,
        "initial_log_std": None,  # (ppo_rl_module.py) None: RLlib's initialisation
        "pi_last_layer_scale": 0.01,  # with initial_log_std: the policy's last layer scaled by this
    }

    SETTINGS = (
        Setting("train_batch_size", 8000, "env steps sampled per iteration (one local Learner).",
                "an integer >= 1", at_least(1)),
        Setting("minibatch_size", 512, "env steps per SGD minibatch.", "an integer >= 1", at_least(1)),
        Setting("num_epochs", 10, "passes over each iteration's batch.", "an integer >= 1", at_least(1)),
        Setting("lambda_", 0.95, "GAE's lambda (Schulman et al. 2016).", "a number in [0, 1]", between(0, 1)),
        Setting("clip_param", 0.3, "PPO's clip epsilon (RLlib's default).", "a number > 0", above(0)),
        Setting("vf_clip_param", 1e4,
                "clip of the value loss; large: the course's returns reach thousands, not clipped.",
                "a number > 0", above(0)),
        Setting("entropy_coeff", 0.0, "weight of the entropy bonus.", "a number >= 0", at_least(0)),
        Setting("reward_scale", 1.0,
                "rewards times this constant before GAE, in the Learner (logged returns stay the env's).",
                "a number > 0", above(0)),
        Setting("init_from", None,
                "a policy's checkpoint or an exported skill to start from (weights and observation filter).",
                "a checkpoint path or null", lambda v: v is None or isinstance(v, str)),
    )  # fmt: skip

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or PPO)
        self.seed = 0
        self.num_env_runners = 1
        self.num_envs_per_env_runner = 8
        self.num_cpus_per_env_runner = 0.5
        self.lr = 3e-4
        self.gamma = 0.99
        self.set_declared_defaults()
        self.callbacks(EpisodeMetrics)
        self.env_runners(env_to_module_connector=mean_std_filter)
        self.rl_module(model_config=dict(self.DEFAULT_MODEL_CONFIG))

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=PPOModule)

    def get_default_learner_class(self) -> type:
        return PPOLearner

    def validate(self) -> None:
        if self.init_from and isinstance(self.env, str):  # before RLlib's own checks print warnings
            self._check_init_from()
        self.check_declared()
        super().validate()
        log_std = self._model_config.get("initial_log_std")
        if log_std is not None and (isinstance(log_std, bool) or not isinstance(log_std, int | float)):
            self._value_error(f"model.initial_log_std={log_std!r} is invalid: must be a number or null")
        scale = self._model_config.get("pi_last_layer_scale", 0.01)
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
            self._value_error(f"model.pi_last_layer_scale={scale!r} is invalid: must be > 0")

    def _check_init_from(self) -> None:
        """``init_from`` is a policy's checkpoint for this env's spaces (one line if not)."""
        from tesp.checkpoints.policies import policy_checkpoint, restore_module
        from tesp.envs import make_env

        try:
            module = restore_module(policy_checkpoint(self.init_from, what="init_from"))
        except ValueError as e:
            self._value_error(str(e))
        env = make_env(self.env, dict(self.env_config))
        if (
            module.observation_space.shape != env.observation_space.shape
            or module.action_space != env.action_space
        ):
            self._value_error(
                f"init_from={self.init_from!r} is a policy for other observation or action spaces than env {self.env!r}"
            )


class PPO(CompleteCheckpoints, RLlibPPO):
    @classmethod
    def get_default_config(cls) -> PPOConfig:
        return PPOConfig(cls)

    def setup(self, config) -> None:
        super().setup(config)
        if self.config.init_from:  # a restored run (--resume) then loads its own state over this
            self._start_from(self.config.init_from)

    def _start_from(self, path: str) -> None:
        """Load a policy checkpoint's module weights (Learner and EnvRunners) and observation
        filter (every copy of the connector)."""
        from ray.rllib.core import DEFAULT_MODULE_ID

        from tesp.checkpoints.policies import FILTER_DIR, MODULE_DIR, policy_checkpoint

        checkpoint = policy_checkpoint(path, what="init_from")
        self.restore_from_path(
            checkpoint / MODULE_DIR / DEFAULT_MODULE_ID,
            component=f"learner_group/learner/rl_module/{DEFAULT_MODULE_ID}",
        )
        # Algorithm.restore_from_path sends the weights to the EnvRunners fire-and-forget; a run
        # once sampled its first round with the EnvRunner's initial weights. Wait for them here.
        self.env_runner_group.sync_weights(
            from_worker_or_learner_group=self.learner_group, inference_only=True, timeout_seconds=120.0
        )
        if not (checkpoint / FILTER_DIR).is_dir():
            return
        state = str(checkpoint / FILTER_DIR)
        name = FILTER_DIR.name
        if getattr(self, "env_to_module_connector", None) is not None:
            self.env_to_module_connector.restore_from_path(state, component=name)
        self.env_runner_group.foreach_env_runner(
            lambda runner: runner._env_to_module.restore_from_path(state, component=name),
            local_env_runner=True,
        )

    # -- main_test.py (tesp.checkpoints.policies) ---------------------------------------------------
    @staticmethod
    def policy_env(config: dict) -> tuple[str, dict]:
        """The env (name, options) the policy of a checkpoint with this ``config`` acts in."""
        return config["env"], dict(config.get("env_config") or {})

    @staticmethod
    def controller(checkpoint, config: dict, env):
        """The checkpoint's policy, acting in ``env``."""
        from tesp.checkpoints.policies import SavedPolicy

        return SavedPolicy.from_checkpoint(checkpoint, env)


def summary_line(result: dict) -> str:
    """The progress line: mean episode return and length, the env's episode metrics, env steps."""
    m = result.get(ENV_RUNNER_RESULTS, {})
    parts = [
        f"return {m.get('env_return', m.get('episode_return_mean', float('nan'))):.1f}",
        f"length {m.get('env_steps', m.get('episode_len_mean', float('nan'))):.0f}",
    ]
    parts += [f"{key} {m[key]:.2f}" for key in EPISODE_METRICS if key in m]
    parts.append(f"{int(m.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0)) // 1000}k steps")
    return " | ".join(parts)
