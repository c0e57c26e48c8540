"""AdaptSV: adapt a latent vector, share the policy (spec §1.4, "MAESN with a latent variable").

The policy sees ``[obs, z']``, with ``z`` in R^d a meta-learned vector. Only ``z`` changes in
the inner loop, with learned per-element step sizes clamped to +-``step_size_bound``:
``z' = z - alpha (.) sum_k g_k``. The MLP, ``z`` and ``alpha`` change in the meta-update, whose
loss adds ``eta * mean_j z'_j^2`` (``embedding_reg_coeff``; equal to ``(eta/d) ||z'||^2``, the
supplement's "eta <- eta/d").

This is the baseline the original TESP release meant to train as ``--alg maesn`` (its
``main_train.py`` overrode the latent model, so it trained Meta-SGD instead, spec §1.4). It is
the same inner loop as MAML with ``adapted_params=["latent"]``.
"""

from __future__ import annotations

from ray.rllib.utils.annotations import override

from tesp.algorithms.maml.maml import MAML, MAMLConfig


class AdaptSVConfig(MAMLConfig):
    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or AdaptSV)
        self.adapted_params = ["latent"]
        self.learn_step_sizes = True
        self.inner_lr = 0.001  # initial step size of every latent element (spec §4.2)
        self.embedding_reg_coeff = 0.01  # eta (spec §4.2, wheeled and ant)
        self._model_config = {**self._model_config, "latent_dim": 8}

    def validate(self) -> None:
        # Method-specific checks first, so their messages name this method's valid choices.
        if self.adapted_params != ["latent"]:
            self._value_error(
                f"adapted_params={self.adapted_params!r} is invalid for adaptsv: it adapts ['latent'] only"
            )
        super().validate()


class AdaptSV(MAML):
    @classmethod
    @override(MAML)
    def get_default_config(cls) -> AdaptSVConfig:
        return AdaptSVConfig()
