"""TESP: a task encoder adapted per task, a policy shared by all tasks (spec §1.4).

The policy reads ``[obs, z]``. The task embedding ``z`` is the task encoder's summary of the
task's episode buffer: a GRU over each buffered episode (per-step input: observation, the
sampling policy's mean and log-std, reward), its final state projected linearly to ``d``, and
the mean over episodes (:class:`~tesp.models.task_encoder.TaskEncoder`). Each task keeps its
``buffer_size`` (M = 16) highest-return episodes (:class:`~tesp.meta.episode_buffer.EpisodeBuffer`).

Per task (the engine's loop in :class:`~tesp.algorithms.maml.maml.MAML` with an episode buffer):

0. warm-up: sample with ``z = 0``; ``B_0`` = the best M of those episodes (no gradient);
1. for k = 0..K-1: sample ``S_k`` with ``z(B_k)`` under the adapted encoder; one inner step on
   the encoder only (learned per-element step sizes), with the gradient flowing through
   ``z(B_k)``; ``B_{k+1} = top_M(B_k u S_k)``;
2. sample the post-adaptation batch with ``z(B_K)``.

The meta-update's loss is PPO-clip on the post-adaptation batch plus ``eta * mean_j z_j^2``
(``embedding_reg_coeff``) with ``z = z(B_K)`` under the adapted encoder; it updates the shared
policy, the encoder's initial parameters and the step sizes. The learner computes every
``z`` and sends it to the EnvRunners as the module's ``latent``, so they sample with exactly the
learner's embedding. The reported stage-0 return is ``S_0`` (already conditioned on the warm-up
buffer), not the warm-up round.

``tesp_adapt_policy`` adapts the encoder and the policy together (the reference's
``--tesp_adapt_policy``).
"""

from __future__ import annotations

from ray.rllib.utils.annotations import override

from tesp.algorithms.maml.maml import MAML, MAMLConfig


class TESPConfig(MAMLConfig):
    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or TESP)
        self.adapted_params = ["encoder"]
        self.learn_step_sizes = True
        self.inner_lr = 0.001  # initial step size of every encoder element (spec §4.2)
        self.embedding_reg_coeff = 0.01  # eta (spec §4.2, wheeled and ant)
        # The reference's meta-gradient is first order (spec §1.2); second order through the
        # GRU is available (second_order=True) and costs a double backward through every step.
        self.second_order = False
        self._model_config = {
            **self._model_config,
            "latent_dim": 8,
            "latent_kind": "encoder",
            "encoder_units": 256,
        }

    def validate(self) -> None:
        # Method-specific checks first, so their messages name this method's valid choices.
        allowed = (["encoder"], ["encoder", "policy"], ["policy", "encoder"])
        if self.adapted_params not in allowed:
            self._value_error(
                f"adapted_params={self.adapted_params!r} is invalid for tesp: "
                "must be ['encoder'] or ['encoder', 'policy']"
            )
        if self.model_config.get("latent_kind") != "encoder":
            self._value_error(
                f"model.latent_kind={self.model_config.get('latent_kind')!r} is invalid for tesp: must be 'encoder'"
            )
        super().validate()


class TESP(MAML):
    @classmethod
    @override(MAML)
    def get_default_config(cls) -> TESPConfig:
        return TESPConfig()


class TESPAdaptPolicyConfig(TESPConfig):
    """TESP adapting the encoder and the shared policy in the inner loop (spec §1.4)."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or TESPAdaptPolicy)
        self.adapted_params = ["encoder", "policy"]


class TESPAdaptPolicy(TESP):
    @classmethod
    @override(TESP)
    def get_default_config(cls) -> TESPAdaptPolicyConfig:
        return TESPAdaptPolicyConfig()
