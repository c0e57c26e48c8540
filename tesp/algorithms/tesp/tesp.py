"""TESP (Lan et al. 2019): a task encoder adapted per task, a policy shared by all tasks.

The policy reads ``[obs, z]``. The task embedding ``z`` is the task encoder's summary of the
task's episode buffer: a GRU over each buffered episode (per-step input: observation, the
sampling policy's mean and log-std, reward, as in the authors' release;
``encoder_inputs="action"`` reads the sampled action instead of the distribution, as the paper's
text describes it), its final state projected linearly to ``d``, and the mean over episodes (:class:`~tesp.algorithms.tesp.task_encoder.TaskEncoder`). Each task
keeps its ``buffer_size`` (M = 16) highest-return episodes
(:class:`~tesp.algorithms.tesp.episode_buffer.EpisodeBuffer`).

Per task, on the engine's loop (:mod:`tesp.meta.meta_gradient`), with the episode buffer as the
context carried from stage to stage:

0. warm-up (:meth:`TESP.initial_contexts`): sample with ``z = 0``; ``B_0`` = the best M of
   those episodes (no gradient);
1. for k = 0..K-1: sample ``S_k`` with ``z(B_k)`` under the adapted encoder; one inner step on
   the encoder only (learned per-element step sizes), with the gradient flowing through
   ``z(B_k)``; ``B_{k+1} = top_M(B_k u S_k)`` (:meth:`TESP.next_contexts`);
2. sample the post-adaptation batch with ``z(B_K)``.

The meta-update's loss is PPO-clip on the post-adaptation batch plus ``eta * mean_j z_j^2``
(``embedding_reg_coeff``) with ``z = z(B_K)`` under the adapted encoder; it updates the shared
policy, the encoder's initial parameters and the step sizes. The learner computes every ``z``
and sends it to the EnvRunners as the module's ``latent``, so they sample with exactly the
learner's embedding. The reported stage-0 return is ``S_0`` (already conditioned on the warm-up
buffer), not the warm-up round.

``tesp_adapt_policy`` adapts the encoder and the policy together (the release's
``--tesp_adapt_policy``). ``tesp_context_only`` is the control without TESP's gradient
adaptation: the same rounds and buffers, the inner step sizes held at 0, so ``z`` comes from the
buffer alone (a context encoder meta-trained end to end, as in context-based meta-RL).
"""

from __future__ import annotations

import time

import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override

from tesp.algorithms.tesp.episode_buffer import ENCODER_INPUTS, EpisodeBuffer, encoder_input_dim
from tesp.algorithms.tesp.tesp_learner import TESPLearner
from tesp.algorithms.tesp.tesp_rl_module import TESPRLModule
from tesp.envs.base import Task
from tesp.meta.meta_gradient import MetaGradientAlgorithm, MetaGradientConfig
from tesp.meta.rollout import Rollout
from tesp.meta.sampler import SampleResult
from tesp.meta.setting import Setting, at_least


class TESPConfig(MetaGradientConfig):
    SETTINGS = (
        # eta (TESP supplement: 0.01 on wheeled and ant)
        Setting(
            "embedding_reg_coeff", 0.01, "eta, the weight of mean_j z_j^2 in the outer loss.",
            "a number >= 0", at_least(0),
        ),
        Setting(
            "buffer_size", 16, "M, the highest-return episodes each task's buffer keeps for the task encoder.",
            "an integer >= 1", at_least(1),
        ),
        Setting(
            "encoder_inputs", "distribution",
            "what the encoder reads per step besides observation and reward: \"distribution\" (the "
            "sampling policy's mean and log-std, the release) or \"action\" (the sampled action).",
            f"one of {list(ENCODER_INPUTS)}", lambda v: v in ENCODER_INPUTS,
        ),
    )  # fmt: skip

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class or TESP)
        self.adapted_params = ["encoder"]
        self.learn_step_sizes = True
        self.inner_lr = 0.001  # initial step size of every encoder element (TESP supplement, Table 1)
        # The release's meta-gradient is first order; second order through the GRU is available
        # (second_order=True) and costs a double backward through every step.
        self.second_order = False

    @override(AlgorithmConfig)
    def validate(self) -> None:
        # Method-specific checks first, so their messages name this method's valid choices.
        if self.adapted_params not in (["encoder"], ["encoder", "policy"], ["policy", "encoder"]):
            self.invalid(
                f"adapted_params={self.adapted_params!r} is invalid for tesp: "
                "must be ['encoder'] or ['encoder', 'policy']"
            )
        super().validate()

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=TESPRLModule)

    @property
    @override(MetaGradientConfig)
    def _model_config_auto_includes(self) -> dict:
        return super()._model_config_auto_includes | {"encoder_inputs": self.encoder_inputs}

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> type:
        return TESPLearner


class TESP(MetaGradientAlgorithm):
    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> TESPConfig:
        return TESPConfig()

    @override(MetaGradientAlgorithm)
    def initial_contexts(self, tasks: list[Task], rollout: Rollout, weights: list) -> list[EpisodeBuffer]:
        """The warm-up round (z = 0) fills each task's buffer; no gradient is taken from it."""
        t0 = time.perf_counter()
        rollout.warmup = self.sample_round(tasks, weights)
        rollout.timings["sample"] += time.perf_counter() - t0
        empty = [EpisodeBuffer.empty(self.encoder_input_dim)] * len(tasks)
        return self.next_contexts(empty, rollout.warmup)

    @override(MetaGradientAlgorithm)
    def next_contexts(
        self, contexts: list[EpisodeBuffer], results: list[SampleResult]
    ) -> list[EpisodeBuffer]:
        return [
            b.add(r.batch, self.config.buffer_size, self.config.encoder_inputs)
            for b, r in zip(contexts, results, strict=True)
        ]

    @property
    def encoder_input_dim(self) -> int:
        return encoder_input_dim(
            int(np.prod(self.task_env.observation_space.shape)),
            int(np.prod(self.task_env.action_space.shape)),
            self.config.encoder_inputs,
        )


class TESPAdaptPolicyConfig(TESPConfig):
    """TESP adapting the encoder and the shared policy in the inner loop."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class or TESPAdaptPolicy)
        self.adapted_params = ["encoder", "policy"]


class TESPAdaptPolicy(TESP):
    @classmethod
    @override(TESP)
    def get_default_config(cls) -> TESPAdaptPolicyConfig:
        return TESPAdaptPolicyConfig()


class TESPContextOnlyConfig(TESPConfig):
    """TESP with its inner gradient step switched off: step sizes fixed at 0, not learned."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class or TESPContextOnly)
        self.learn_step_sizes = False
        self.inner_lr = 0.0

    @override(TESPConfig)
    def validate(self) -> None:
        if self.learn_step_sizes or self.inner_lr != 0:
            self.invalid(
                f"tesp_context_only holds the inner step at 0: learn_step_sizes={self.learn_step_sizes!r}, "
                f"inner_lr={self.inner_lr!r} must be False and 0 (use --alg tesp to adapt)"
            )
        super().validate()


class TESPContextOnly(TESP):
    @classmethod
    @override(TESP)
    def get_default_config(cls) -> TESPContextOnlyConfig:
        return TESPContextOnlyConfig()
